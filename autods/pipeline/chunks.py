"""The chunk-stage skeleton: load the chunk, skip it when the stage is done, run, record.

Every stage of the stage table plugs into ``run_stage``: a stage function receives the
runtime and a ``ChunkWork`` and returns small counts. It must be idempotent, because a
chunk is delivered at least once: a worker can die after the stage's own writes and
before the completion row, and the stage then runs again over what it already did.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, select

from autods.db.models import Chunk, ChunkStage, Job, utcnow
from autods.db.session import session_scope
from autods.db.upsert import insert_ignore
from autods.pipeline.options import JobOptions
from autods.pipeline.runtime import Runtime
from autods.pipeline.stagetable import stage as stage_named


@dataclass(frozen=True, slots=True)
class ChunkWork:
    """One chunk of a job, as a stage function sees it."""

    job_id: int
    chunk_no: int
    chunk_id: int
    dataset_id: int
    n_items: int
    options: JobOptions


def in_chunk(model, work: ChunkWork):
    """The filter that selects a model's rows (items) of this chunk."""
    return and_(model.job_id == work.job_id, model.chunk_no == work.chunk_no)


def batch_chunks(job_id: int, batch_no: int):
    """The numbers of a batch's chunks, as a subquery: a batch's items are found by them
    through the job's chunk index (``ix_items_job_chunk``)."""
    return select(Chunk.chunk_no).where(Chunk.job_id == job_id, Chunk.batch_no == batch_no)


def run_stage(rt: Runtime, name: str, job_id: int, chunk_no: int) -> dict[str, int]:
    """Run stage ``name`` over one chunk unless it is done; record that it is."""
    with session_scope(rt.engine) as db:
        row = db.execute(
            select(Chunk.id, Chunk.n_items, Job.dataset_id, Job.params, ChunkStage.done_at)
            .join(Job, Job.id == Chunk.job_id)
            .outerjoin(ChunkStage, (ChunkStage.chunk_id == Chunk.id) & (ChunkStage.stage == name))
            .where(Chunk.job_id == job_id, Chunk.chunk_no == chunk_no)
        ).one()
    if row.done_at is not None:
        return {"skipped": row.n_items}
    work = ChunkWork(job_id, chunk_no, row.id, row.dataset_id, row.n_items,
                     JobOptions.from_params(row.params))
    started_at = utcnow()
    counts = stage_named(name).load()(rt, work)
    with session_scope(rt.engine) as db:
        insert_ignore(db, ChunkStage, [{"chunk_id": work.chunk_id, "stage": name,
                                        "started_at": started_at, "done_at": utcnow()}],
                      conflict=("chunk_id", "stage"))
    return counts
