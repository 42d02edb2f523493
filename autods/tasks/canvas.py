"""The canvas of a job: per chunk a chain of stages, per batch a chord.

A batch's header is its chunk chains and its callback publishes the batch; no header grows
with the job (a 1M-item job is 100 chords of ~40 chains). Every batch is dispatched at
once; callbacks resolve in batch order by waiting on their predecessor, and the last one
to commit sends the job's final callback.
"""

from __future__ import annotations

from celery import chain, chord
from sqlalchemy import select, update

from autods.db.models import Batch, Chunk, Job, utcnow
from autods.db.session import session_scope
from autods.pipeline.runtime import Runtime
from autods.tasks import stages


def chunk_chain(job_id: int, chunk_no: int, embed: bool, lfs: str | None):
    steps = [stages.ingest_chunk.si(job_id, chunk_no), stages.preprocess_chunk.si(job_id, chunk_no)]
    if embed:
        steps.append(stages.embed_chunk.si(job_id, chunk_no))
    if lfs:
        steps.append(stages.label_chunk.si(job_id, chunk_no, lfs))
    return chain(*steps)


def batch_chord(job_id: int, batch_no: int, chunk_nos: list[int], embed: bool, lfs: str | None):
    header = [chunk_chain(job_id, c, embed, lfs) for c in chunk_nos]
    callback = stages.publish_batch.s(job_id=job_id, batch_no=batch_no).on_error(
        stages.fail_job.s(job_id=job_id))
    return chord(header, callback)


def shard_chord(job_id: int, batch_no: int, shard_ids: list[int]):
    """The shards of one batch written in parallel; the callback commits the batch."""
    header = [stages.write_shard.si(s) for s in shard_ids]
    callback = stages.commit_batch.s(job_id=job_id, batch_no=batch_no).on_error(
        stages.fail_job.s(job_id=job_id))
    return chord(header, callback)


def dispatch(rt: Runtime, job_id: int) -> int:
    """Send every uncommitted batch of the job; returns how many were sent.

    Safe to call again on a resumed job: finished chunks return at once and committed
    batches are not sent.
    """
    with session_scope(rt.engine) as db:
        n_items = db.scalar(select(Job.n_items).where(Job.id == job_id))
        open_batches = list(db.scalars(select(Batch.batch_no).where(
            Batch.job_id == job_id, Batch.committed_at.is_(None)).order_by(Batch.batch_no)))
        db.execute(update(Batch).where(Batch.job_id == job_id, Batch.batch_no.in_(open_batches))
                   .values(dispatched_at=utcnow()))
    if n_items == 0 or not open_batches:
        stages.finalize_job.delay(job_id)
        return 0
    for b in open_batches:
        send_batch(rt, job_id, b)
    return len(open_batches)


def send_batch(rt: Runtime, job_id: int, batch_no: int) -> None:
    """Send one batch's chord; finished chunks of a batch sent again return at once."""
    with session_scope(rt.engine) as db:
        params = db.scalar(select(Job.params).where(Job.id == job_id))
        chunk_nos = list(db.scalars(select(Chunk.chunk_no).where(
            Chunk.job_id == job_id, Chunk.batch_no == batch_no).order_by(Chunk.chunk_no)))
    batch_chord(job_id, batch_no, chunk_nos, params["embed"], params.get("lfs")).apply_async()
