"""Watching a job: the cheap end check between progress reads."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from autods.pipeline.status import JobStatus
from autods.progress import watch


def _status(state: str, done: int) -> JobStatus:
    return JobStatus(job_id=1, dataset="d", status=state, n_items=4,
                     stages={"ingest": done, "dedup": 0, "shard": 0}, statuses={}, reasons={},
                     labelled=0, shards=0, shard_bytes=0, output_url="file:///d")


@pytest.mark.parametrize(("show", "reads"), [(False, 1), (True, 2)])
def test_the_end_is_seen_by_the_cheap_check_without_reading_progress_each_tick(show, reads):
    """Progress is read at the start (when drawn), once per interval and at the end; the
    job's state alone is asked in between, so a job that ends inside an interval is seen
    then. Nothing drawn, progress is read at the end only."""
    checks, polls = [], []

    def finished() -> bool:
        checks.append(1)
        return len(checks) >= 5

    def poll() -> JobStatus:
        polls.append(1)
        return _status("succeeded" if len(checks) >= 5 else "running", len(polls))

    status = watch(poll, interval=3600, tick=0.001, show=show, finished=finished,
                   console=Console(file=io.StringIO()))
    assert status.done and status.stages["ingest"] == reads
    assert (len(checks), len(polls)) == (5, reads)


def test_without_a_cheap_check_every_interval_reads_progress():
    polls = []

    def poll() -> JobStatus:
        polls.append(1)
        return _status("succeeded" if len(polls) == 3 else "running", len(polls))

    assert watch(poll, interval=0.001, show=False).done and len(polls) == 3
