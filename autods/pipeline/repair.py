"""The stall watchdog: find batches of running jobs that stopped moving.

Late acknowledgement and the visibility timeout bring back every message a worker took
and never finished. One loss they cannot cover: Redis dying between handing a message to
a worker and recording it as unacknowledged. The chunk is then never run and its batch's
chord never completes. Every task is idempotent, so the cure is to send a batch that has
not moved for ``stall_timeout_s`` again: finished chunks return at once, the lost one
runs, and the new chord's callback publishes the batch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from autods.core.records import JobState
from autods.db.models import Batch, Chunk, ChunkStage, Job, utcnow
from autods.db.session import session_scope
from autods.pipeline.options import JobOptions
from autods.pipeline.runtime import Runtime
from autods.pipeline.stagetable import stages_for


def claim_stalled_batches(rt: Runtime, stall_s: float, now: datetime | None = None
                          ) -> list[tuple[int, int]]:
    """(job id, batch no) of every open batch of a running job that stopped moving.

    Stopped: sent, no chunk stage finished and no resolve for ``stall_s`` since. A batch
    whose chunks are all done and whose predecessor has not resolved is waiting its turn,
    not stalled. Claimed batches get a fresh ``dispatched_at`` while their rows are locked,
    so two watchdogs never send the same batch and a batch is sent again at most once per
    ``stall_s``.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=stall_s)
    stalled: list[Batch] = []
    with session_scope(rt.engine) as db:
        candidates = db.execute(
            select(Batch, Job.params).join(Job, Job.id == Batch.job_id)
            .where(Job.status.in_((JobState.PENDING, JobState.RUNNING)),
                   Batch.committed_at.is_(None), Batch.dispatched_at < cutoff)
            .order_by(Batch.job_id, Batch.batch_no)
            .with_for_update(of=Batch, skip_locked=True)
        ).all()
        for batch, params in candidates:
            final = stages_for(JobOptions.from_params(params))[-1].name
            done, last = db.execute(
                select(func.count(ChunkStage.chunk_id).filter(ChunkStage.stage == final),
                       func.max(ChunkStage.done_at))
                .select_from(Chunk).outerjoin(ChunkStage, ChunkStage.chunk_id == Chunk.id)
                .where(Chunk.job_id == batch.job_id, Chunk.batch_no == batch.batch_no)
            ).one()
            moved = [_aware(t) for t in (batch.resolved_at, last) if t]
            if any(t >= cutoff for t in moved):
                continue
            header_done = done == batch.n_chunks
            if header_done and batch.resolved_at is None and batch.batch_no > 0:
                previous = db.scalar(select(Batch.resolved_at).where(
                    Batch.job_id == batch.job_id, Batch.batch_no == batch.batch_no - 1))
                if previous is None:
                    continue
            batch.dispatched_at = now
            stalled.append(batch)
    return [(b.job_id, b.batch_no) for b in stalled]


def _aware(t: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone-aware columns; they are UTC."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)
