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

from autods.db.models import Batch, Chunk, Job, utcnow
from autods.db.session import session_scope
from autods.pipeline.runtime import Runtime


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
            .where(Job.status.in_(("pending", "running")), Batch.committed_at.is_(None),
                   Batch.dispatched_at < cutoff)
            .order_by(Batch.job_id, Batch.batch_no)
            .with_for_update(of=Batch, skip_locked=True)
        ).all()
        for batch, params in candidates:
            chunks = db.execute(
                select(_final_stage(params), _last_stage())
                .where(Chunk.job_id == batch.job_id, Chunk.batch_no == batch.batch_no)
            ).all()
            moved = [_aware(t) for t in (batch.resolved_at, *(last for _, last in chunks)) if t]
            if any(t >= cutoff for t in moved):
                continue
            header_done = all(done is not None for done, _ in chunks)
            if header_done and batch.resolved_at is None and batch.batch_no > 0:
                previous = db.scalar(select(Batch.resolved_at).where(
                    Batch.job_id == batch.job_id, Batch.batch_no == batch.batch_no - 1))
                if previous is None:
                    continue
            batch.dispatched_at = now
            stalled.append(batch)
    return [(b.job_id, b.batch_no) for b in stalled]


def _final_stage(params: dict):
    """The chunk column that says a chunk's chain is done, for this job's stages."""
    if params.get("lfs"):
        return Chunk.labelled_at
    return Chunk.embedded_at if params.get("embed") else Chunk.preprocessed_at


def _last_stage():
    """When the chunk last finished a stage (stages run in order)."""
    return func.coalesce(Chunk.labelled_at, Chunk.embedded_at, Chunk.preprocessed_at,
                         Chunk.ingested_at)


def _aware(t: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone-aware columns; they are UTC."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)
