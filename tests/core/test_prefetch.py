"""The prefetcher: every item once, as many threads as the consumer waits for, no more.

Growth is driven by fetches that can only finish together (a barrier), so a test passes
only if the pool reached that many threads, whatever the machine's speed; a pool that
does not grow breaks the barrier after its timeout and fails the test instead of hanging.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from autods.config import FetchSettings
from autods.core.fetch import Fetcher
from autods.core.prefetch import Prefetcher

WAIT_S = 60  # a barrier's bound: reached only when the pool failed to grow


def together(n: int, first_alone: bool = True):
    """A fetch that returns item 0 at once and every later item only when ``n`` fetches
    are in progress at the same time; it records the threads it ran on."""
    barrier = threading.Barrier(n, timeout=WAIT_S)
    seen: set[str] = set()
    lock = threading.Lock()

    def fetch(item: int) -> int:
        with lock:
            seen.add(threading.current_thread().name)
        if item or not first_alone:
            barrier.wait()
        return item * 10

    return fetch, seen


def test_every_item_once_with_its_index():
    pre = Prefetcher(max_threads=4, patience_s=0)
    fetch, _ = together(4)
    got = dict(pre.imap(fetch, list(range(9))))  # item 0, then two rounds of four
    assert got == {i: i * 10 for i in range(9)}


def test_a_starved_consumer_grows_the_pool_to_what_the_fetches_need():
    pre = Prefetcher(max_threads=16, patience_s=0)
    fetch, seen = together(5)
    assert sorted(i for i, _ in pre.imap(fetch, list(range(11)))) == list(range(11))
    assert 5 <= len(seen) <= 16  # four could never finish a round of five
    assert pre.level == len(seen) - 1  # the next run starts one below


def test_the_pool_never_exceeds_its_limit():
    pre = Prefetcher(max_threads=3, patience_s=0)
    fetch, seen = together(3)
    assert len(list(pre.imap(fetch, list(range(13))))) == 13
    assert len(seen) == 3
    assert pre.level == 2


def test_runs_that_never_wait_give_threads_back():
    pre = Prefetcher(max_threads=8, patience_s=0)
    fetch, _ = together(6)
    list(pre.imap(fetch, list(range(7))))
    levels = [pre.level]
    pre.patience_s = WAIT_S  # from now on the consumer never gives up waiting
    for _ in range(7):
        # Each run's fetches finish in rounds of the threads it starts with.
        fetch, seen = together(pre.level, first_alone=False)
        list(pre.imap(fetch, list(range(3 * pre.level))))
        assert len(seen) == levels[-1]
        levels.append(pre.level)
    assert levels[0] >= 5
    assert levels == [max(1, levels[0] - k) for k in range(8)]


def test_nothing_grows_before_the_first_result():
    """Before the first result, waiting is only the first fetch's own time: a pool of one
    whose first fetch needs a second beside it stays one, and that fetch gives up."""
    pre = Prefetcher(max_threads=4, patience_s=0)
    company = threading.Barrier(2, timeout=1)

    def fetch(item: int) -> int:
        company.wait()
        return item

    with pytest.raises(threading.BrokenBarrierError):
        list(pre.imap(fetch, [0, 1]))
    assert pre.level == 1


def test_an_exception_reaches_the_consumer_and_no_thread_is_left():
    pre = Prefetcher(max_threads=4, patience_s=0)

    def fetch(item: int) -> int:
        if item == 3:
            raise ValueError("bad item 3")
        return item

    with pytest.raises(ValueError, match="bad item 3"):
        list(pre.imap(fetch, list(range(40))))
    assert not [t for t in threading.enumerate() if t.name.startswith("prefetch-")]


def test_no_more_than_max_threads_inputs_wait_in_memory():
    """A consumer that stops at its first result: the threads may not fetch on past the
    places it has not freed (they would, within the half second, without the bound)."""
    pre = Prefetcher(max_threads=3, patience_s=0)
    pre.level = 3
    calls = 0
    lock = threading.Lock()
    past_bound = threading.Event()

    def fetch(item: int) -> int:
        nonlocal calls
        with lock:
            calls += 1
            if calls > 4:  # the first result taken, and three places
                past_bound.set()
        return item

    for consumed, _ in enumerate(pre.imap(fetch, list(range(100))), start=1):
        if consumed == 1:
            assert not past_bound.wait(0.5)
        with lock:
            assert calls <= consumed + 3
    assert calls == 100


def test_no_items_no_threads():
    pre = Prefetcher(max_threads=4)
    pre.level = 3
    assert list(pre.imap(lambda i: i, [])) == []



# Over a real HTTP server whose answers wait for company: latency a single thread cannot
# hide, as a slow network's is.


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        if self.path != "/0":
            self.server.barrier.wait()  # type: ignore[attr-defined]
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def slow_server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.barrier = threading.Barrier(4, timeout=WAIT_S)  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_fetches_from_a_server_that_answers_four_at_a_time(slow_server):
    pre = Prefetcher(max_threads=16, patience_s=0)
    urls = [f"{slow_server}/{i}" for i in range(13)]
    with Fetcher(FetchSettings(timeout_s=WAIT_S), allow_private_networks=True) as fetcher:
        got = dict(pre.imap(lambda u: fetcher.fetch(u).data, urls))
    assert got == {i: f"/{i}".encode() for i in range(13)}

