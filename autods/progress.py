"""What a person watching a job sees: a progress bar per stage and a closing summary."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autods.core.filters import REASON_PREFIX
from autods.core.records import ItemStatus
from autods.pipeline.status import JobStatus


def watch(poll: Callable[[], JobStatus], interval: float = 0.5, show: bool = True,
          timeout: float | None = None, console: Console | None = None,
          finished: Callable[[], bool] | None = None, tick: float = 0.1) -> JobStatus:
    """Poll until the job is done (or ``timeout`` passes), drawing bars when ``show``.

    With ``finished`` (a cheap check, such as the job's state alone), it is asked every
    ``tick`` and the whole ``poll`` runs only every ``interval`` and at the end: the end is
    seen at once, while the progress counts, which read several tables, are read a few
    times a second instead of ten; with nothing drawn, only at the end.
    """
    deadline = None if timeout is None else time.monotonic() + timeout

    def over() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def wait() -> None:
        until = time.monotonic() + interval
        if finished is None:
            time.sleep(interval)
            return
        while time.monotonic() < until and not over() and not finished():
            time.sleep(tick)

    if not show and finished is not None:
        # Nothing is drawn, so no progress is read: the end is asked each tick, and the
        # whole status read once, then.
        while not over() and not finished():
            time.sleep(tick)
        return poll()
    status = poll()
    if not show:
        while not status.done and not over():
            wait()
            status = poll()
        return status
    columns = (TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console or Console(stderr=True)) as bars:
        # One bar per stage the job runs, in order: its chunk stages, dedup, shard.
        tasks = {name: bars.add_task(name, total=status.n_items) for name in status.stages}
        while True:
            for name, task in tasks.items():
                total = status.published if name == "shard" and \
                    status.stages["dedup"] >= status.n_items else status.n_items
                bars.update(task, completed=status.stages.get(name, 0), total=total)
            if status.done or over():
                return status
            wait()
            status = poll()


def summary_table(status: JobStatus) -> Table:
    """The end-of-job table: counts by outcome, reasons, shards and throughput."""
    table = Table(title=f"job {status.job_id} · dataset {status.dataset} · {status.status}")
    table.add_column("what")
    table.add_column("count", justify="right")
    s = status.statuses
    dropped = (ItemStatus.EXACT_DUPLICATE, ItemStatus.NEAR_DUPLICATE,
               ItemStatus.SEMANTIC_DUPLICATE)
    rows = [
        ("inputs", status.n_items),
        ("published samples", status.published),
        ("exact duplicates", s.get(ItemStatus.EXACT_DUPLICATE, 0)),
        ("near duplicates", s.get(ItemStatus.NEAR_DUPLICATE, 0)),
    ]
    if s.get(ItemStatus.SEMANTIC_DUPLICATE):
        rows.append(("semantic duplicates", s[ItemStatus.SEMANTIC_DUPLICATE]))
    rows += [(f"  by {rule}", n) for rule, n in sorted(status.rules.items())]
    if s.get(ItemStatus.FILTERED):
        rows.append(("filtered", s[ItemStatus.FILTERED]))
        rows += [(f"  {reason}", n) for reason, n in sorted(status.reasons.items())
                 if reason.startswith(REASON_PREFIX)]
    rows.append(("rejected", s.get(ItemStatus.FAILED, 0)))
    rows += [(f"  {reason}", n) for reason, n in sorted(status.reasons.items())
             if reason not in dropped and not reason.startswith(REASON_PREFIX)]
    if status.options.lfs:
        rows.append(("labelled", status.labelled))
    rows += [("shards written", status.shards), ("shard bytes", status.shard_bytes)]
    if status.elapsed_s:
        rows.append(("inputs / second", f"{status.n_items / status.elapsed_s:.1f}"))
        rows.append(("elapsed (s)", f"{status.elapsed_s:.1f}"))
    for name, value in rows:
        table.add_row(name, str(value))
    return table
