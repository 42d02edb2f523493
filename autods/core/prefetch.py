"""Fetch ahead of one consumer on as many threads as the network's latency needs, no more.

Threads hide the time a fetch waits on the network. Past that they only add work: on a fast
network, sixteen threads sharing one interpreter lock and one connection pool built a
5,000-URL dataset in 8.2-9.0 s where one thread took 7.2 s. How many are needed depends on
the servers, not on a setting, so the count is found while fetching: the consumer (the
thread that validates and hashes) asks for one more fetch thread each time it has waited
``patience_s`` with nothing fetched to work on, up to ``max_threads``; no more than
``max_threads`` fetched inputs wait for it in memory. A ``Prefetcher`` lives as long as its
worker process and starts each run from the count the previous run ended with, less one, so
a slow network keeps its threads and a fast one gives them back.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Run(Generic[T, R]):
    """One ``imap`` call: a shared cursor over the items, results as they complete.

    A fetch claims one of ``ahead`` places before it claims an item, and the consumer frees
    a place with each result it takes: however fast the network, no more than ``ahead``
    inputs wait in memory, as many as the threads would hold if each handled its own.
    """

    def __init__(self, fetch: Callable[[T], R], items: Sequence[T], ahead: int) -> None:
        self.fetch, self.items = fetch, items
        self.done: queue.SimpleQueue[tuple[int, R | None, BaseException | None]] = (
            queue.SimpleQueue())
        self.places = threading.Semaphore(ahead)
        self._next = 0
        self._lock = threading.Lock()
        self.stopped = False
        self.threads: list[threading.Thread] = []

    def _take(self) -> int | None:
        with self._lock:
            if self.stopped or self._next >= len(self.items):
                return None
            self._next += 1
            return self._next - 1

    def _claim(self, wait: bool = True) -> int | None:
        """The next item, with a place for its result; None when there is none to take."""
        if not self.places.acquire(blocking=wait):
            return None
        i = self._take()
        if i is None:
            self.places.release()
        return i

    @property
    def unclaimed(self) -> int:
        with self._lock:
            return len(self.items) - self._next

    def work(self, i: int | None) -> None:
        while i is not None:
            try:
                self.done.put((i, self.fetch(self.items[i]), None))
            except BaseException as exc:  # handed to the consumer, which raises it
                self.done.put((i, None, exc))
            i = self._claim()

    def start_thread(self) -> None:
        """A new thread, given its first item here so that none starts with nothing to do."""
        first = self._claim(wait=False)
        if first is None:
            return
        thread = threading.Thread(target=self.work, args=(first,),
                                  name=f"prefetch-{len(self.threads)}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def stop(self) -> None:
        """Let every thread end after its current fetch, waiting for a place or not."""
        self.stopped = True
        self.places.release(len(self.threads))
        for thread in self.threads:
            thread.join()


class Prefetcher:
    """Runs ``fetch`` over items on a growing set of threads; see the module docstring."""

    def __init__(self, max_threads: int, patience_s: float | None = None) -> None:
        self.max_threads = max(1, max_threads)
        self.level = 1  # threads the next run starts with
        # Shorter waits are the interpreter lock passing between threads, not the network.
        self.patience_s = 2 * sys.getswitchinterval() if patience_s is None else patience_s

    def imap(self, fetch: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        """``(index, fetch(item))`` in the order fetches complete. An exception from
        ``fetch`` is raised here, in the consumer; the remaining fetches are abandoned."""
        if not items:
            return
        run: _Run[T, R] = _Run(fetch, items, ahead=self.max_threads)
        limit = min(self.max_threads, len(items))
        for _ in range(min(self.level, limit)):
            run.start_thread()
        try:
            for received in range(len(items)):
                i, result, error = self._next(run, growing=received > 0, limit=limit)
                run.places.release()
                if error is not None:
                    raise error
                yield i, result  # type: ignore[misc]
        finally:
            run.stop()
            self.level = max(1, len(run.threads) - 1)

    def _next(self, run: _Run[T, R], growing: bool, limit: int
              ) -> tuple[int, R | None, BaseException | None]:
        """The next completed fetch. Each ``patience_s`` the consumer waits for one, it
        starts another thread, once past the first result (before it, waiting is only the
        first fetch's own time)."""
        while growing and len(run.threads) < limit and run.unclaimed:
            try:
                return run.done.get(timeout=self.patience_s)
            except queue.Empty:
                run.start_thread()
        return run.done.get()
