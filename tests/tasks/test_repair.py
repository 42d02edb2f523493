"""The stall watchdog: which batches it sends again, and that a re-sent batch completes."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import select, update

from autods.db.models import Batch, Chunk, ChunkStage, Job, utcnow
from autods.db.session import session_scope
from autods.pipeline.plan import JobOptions, create_job
from autods.pipeline.repair import claim_stalled_batches
from autods.pipeline.status import job_status
from tests.datagen import image_folder
from tests.promtext import value


def _job_of_two_batches(rt, tmp_path) -> int:
    image_folder(tmp_path / "in", n_unique=12)
    job = create_job(rt, [str(tmp_path / "in")], "d",
                     JobOptions(chunk_size=4, batch_size=8, embed=False),
                     output_url=(tmp_path / "out").as_uri())
    long_ago = utcnow() - timedelta(hours=2)
    with session_scope(rt.engine) as db:
        db.execute(update(Job).where(Job.id == job).values(status="running"))
        db.execute(update(Batch).where(Batch.job_id == job).values(dispatched_at=long_ago))
    return job


def _finish(rt, job: int, batch_no: int, at, *stages: str) -> None:
    """Record ``stages`` as done at ``at`` for every chunk of the batch."""
    with session_scope(rt.engine) as db:
        ids = db.scalars(select(Chunk.id).where(Chunk.job_id == job, Chunk.batch_no == batch_no))
        db.add_all([ChunkStage(chunk_id=i, stage=s, done_at=at) for i in ids for s in stages])


def test_batches_without_progress_are_claimed_once_per_stall_timeout(runtime, tmp_path):
    job = _job_of_two_batches(runtime, tmp_path)

    assert claim_stalled_batches(runtime, 60) == [(job, 0), (job, 1)]
    assert claim_stalled_batches(runtime, 60) == []  # just sent again
    later = utcnow() + timedelta(seconds=61)
    assert claim_stalled_batches(runtime, 60, now=later) == [(job, 0), (job, 1)]


def test_a_batch_with_recent_progress_is_not_stalled(runtime, tmp_path):
    job = _job_of_two_batches(runtime, tmp_path)
    _finish(runtime, job, 0, utcnow(), "ingest")

    assert claim_stalled_batches(runtime, 60) == [(job, 1)]


def test_a_finished_batch_waiting_for_its_predecessor_is_not_stalled(runtime, tmp_path):
    job = _job_of_two_batches(runtime, tmp_path)
    old = utcnow() - timedelta(hours=1)
    _finish(runtime, job, 1, old, "ingest", "preprocess")

    assert claim_stalled_batches(runtime, 60) == [(job, 0)]
    with session_scope(runtime.engine) as db:
        db.execute(update(Batch).where(Batch.job_id == job, Batch.batch_no == 0)
                   .values(resolved_at=old, committed_at=old))
    later = utcnow() + timedelta(seconds=61)
    assert claim_stalled_batches(runtime, 60, now=later) == [(job, 1)]


def test_finished_jobs_are_left_alone(runtime, tmp_path):
    job = _job_of_two_batches(runtime, tmp_path)
    with session_scope(runtime.engine) as db:
        db.execute(update(Job).where(Job.id == job).values(status="succeeded"))

    assert claim_stalled_batches(runtime, 60) == []


def test_the_repair_task_completes_a_batch_whose_messages_were_lost(runtime, memory_worker,
                                                                    metrics_on, tmp_path):
    from autods.tasks import stages

    runtime.settings.pipeline.stall_timeout_s = 60
    job = _job_of_two_batches(runtime, tmp_path)  # planned, never sent: every message lost

    assert stages.repair_stalled.delay().get(timeout=30) == [[job, 0], [job, 1]]
    assert value(metrics_on(), "autods_batches_repaired_total") == 2

    status = job_status(runtime, job)
    deadline = time.monotonic() + 60
    while not status.done and time.monotonic() < deadline:
        time.sleep(0.1)
        status = job_status(runtime, job)
    assert status.status == "succeeded" and status.statuses == {"published": 12}
    with session_scope(runtime.engine) as db:
        assert db.scalar(select(Job.status).where(Job.id == job)) == "succeeded"
