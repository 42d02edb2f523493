"""Job progress from the database: it survives broker restarts and needs no Flower."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select

from autods.db.models import Batch, Chunk, Dataset, Item, Job, Label, Shard
from autods.db.session import session_scope
from autods.pipeline.runtime import Runtime


@dataclass(slots=True)
class JobStatus:
    """One snapshot: per-stage items done, per-status counts, reasons, shards."""

    job_id: int
    dataset: str
    status: str
    n_items: int
    stages: dict[str, int]
    statuses: dict[str, int]
    reasons: dict[str, int]
    labelled: int
    shards: int
    shard_bytes: int
    output_url: str
    error: str | None = None
    elapsed_s: float | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def job_status(rt: Runtime, job_id: int) -> JobStatus:
    with session_scope(rt.engine) as db:
        job = db.get(Job, job_id)
        if job is None:
            raise KeyError(f"no job {job_id}")
        dataset = db.get(Dataset, job.dataset_id)
        stage_cols = {"ingest": Chunk.ingested_at, "preprocess": Chunk.preprocessed_at,
                      "embed": Chunk.embedded_at, "label": Chunk.labelled_at}
        stages = {
            name: int(db.scalar(select(func.coalesce(func.sum(Chunk.n_items), 0)).where(
                Chunk.job_id == job_id, col.is_not(None))))
            for name, col in stage_cols.items()
        }
        resolved = db.scalar(select(func.coalesce(func.sum(Chunk.n_items), 0))
                             .join(Batch, (Batch.job_id == Chunk.job_id)
                                   & (Batch.batch_no == Chunk.batch_no))
                             .where(Chunk.job_id == job_id, Batch.resolved_at.is_not(None)))
        stages["dedup"] = int(resolved)
        statuses = dict(db.execute(select(Item.status, func.count()).where(
            Item.job_id == job_id).group_by(Item.status)).all())
        reasons = dict(db.execute(select(Item.reason, func.count()).where(
            Item.job_id == job_id, Item.reason.is_not(None)).group_by(Item.reason)).all())
        labelled = db.scalar(select(func.count()).select_from(Label).join(
            Item, Item.id == Label.item_id).where(Item.job_id == job_id, Label.label >= 0))
        shards, nbytes = db.execute(select(func.count(), func.coalesce(func.sum(Shard.nbytes), 0))
                                    .where(Shard.job_id == job_id, Shard.complete.is_(True))).one()
        stages["shard"] = int(db.scalar(select(func.coalesce(func.sum(Shard.count), 0)).where(
            Shard.job_id == job_id, Shard.complete.is_(True))))
        end = job.finished_at
        elapsed = ((end - job.started_at).total_seconds()
                   if end is not None and job.started_at is not None else None)
        return JobStatus(
            job_id=job.id, dataset=dataset.name, status=job.status, n_items=job.n_items,
            stages=stages, statuses=statuses, reasons=reasons, labelled=int(labelled),
            shards=int(shards), shard_bytes=int(nbytes), output_url=dataset.output_url,
            error=job.error, elapsed_s=elapsed, params=dict(job.params),
        )
