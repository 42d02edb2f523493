"""Job progress from the database: it survives broker restarts and needs no Flower."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import case, func, select

from autods.core.dedup import RULES
from autods.core.records import BatchState, ItemStatus, JobState
from autods.db.models import Batch, Chunk, ChunkStage, Dataset, Item, Job, Label, Shard
from autods.db.session import session_scope
from autods.pipeline.options import JobOptions
from autods.pipeline.runtime import Runtime
from autods.pipeline.stagetable import stages_for


@dataclass(slots=True)
class JobStatus:
    """One snapshot: items done per stage (the job's chunk stages in table order, then
    ``dedup`` and ``shard``), batches by state, per-status counts, reasons, shards."""

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
    batches: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    elapsed_s: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # Dropped duplicates by rule (``autods.core.dedup.RULES``).
    rules: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return JobState(self.status).final

    @property
    def options(self) -> JobOptions:
        return JobOptions.from_params(self.params)

    @property
    def published(self) -> int:
        return self.statuses.get(ItemStatus.PUBLISHED, 0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def job_finished(rt: Runtime, job_id: int) -> bool:
    """Whether the job has ended, from its row alone: what a watcher asks between reads of
    its progress."""
    with rt.engine.connect() as conn:
        state = conn.scalar(select(Job.status).where(Job.id == job_id))
    return state is not None and JobState(state).final


def job_status(rt: Runtime, job_id: int, outcomes: bool = True) -> JobStatus:
    """The job's snapshot. ``outcomes=False`` is a progress poll: it leaves out the counts
    that group the job's items (statuses, reasons, rules, labels), which cost a scan of
    the items each time, and counts as published the items the resolved batches planned
    into shards."""
    with session_scope(rt.engine) as db:
        job = db.get(Job, job_id)
        if job is None:
            raise KeyError(f"no job {job_id}")
        options = JobOptions.from_params(job.params)
        dataset = db.get(Dataset, job.dataset_id)
        stages = {s.name: 0 for s in stages_for(options)}
        stages.update({name: int(n) for name, n in db.execute(
            select(ChunkStage.stage, func.sum(Chunk.n_items))
            .join(Chunk, Chunk.id == ChunkStage.chunk_id)
            .where(Chunk.job_id == job_id).group_by(ChunkStage.stage)).all()})
        resolved = db.scalar(select(func.coalesce(func.sum(Chunk.n_items), 0))
                             .join(Batch, (Batch.job_id == Chunk.job_id)
                                   & (Batch.batch_no == Chunk.batch_no))
                             .where(Chunk.job_id == job_id, Batch.resolved_at.is_not(None)))
        stages["dedup"] = int(resolved)
        batches = Counter(b.state.value for b in db.scalars(
            select(Batch).where(Batch.job_id == job_id)))
        if outcomes:
            statuses, reasons, rules, labelled = _outcomes(db, job_id)
        else:
            planned = db.scalar(select(func.coalesce(func.sum(Shard.count), 0))
                                .where(Shard.job_id == job_id))
            statuses, reasons, rules, labelled = {ItemStatus.PUBLISHED: int(planned)}, {}, {}, 0
        shards, nbytes = db.execute(select(func.count(), func.coalesce(func.sum(Shard.nbytes), 0))
                                    .where(Shard.job_id == job_id, Shard.complete.is_(True))).one()
        stages["shard"] = int(db.scalar(select(func.coalesce(func.sum(Shard.count), 0)).where(
            Shard.job_id == job_id, Shard.complete.is_(True))))
        end = job.finished_at
        elapsed = ((end - job.started_at).total_seconds()
                   if end is not None and job.started_at is not None else None)
        return JobStatus(
            job_id=job.id, dataset=dataset.name, status=job.status, n_items=job.n_items,
            stages=stages, statuses=statuses, reasons=reasons, labelled=labelled,
            shards=int(shards), shard_bytes=int(nbytes), output_url=dataset.output_url,
            batches={s.value: batches[s.value] for s in BatchState if batches[s.value]},
            error=job.error, elapsed_s=elapsed, params=dict(job.params), rules=rules,
        )


def _outcomes(db, job_id: int) -> tuple[dict[str, int], dict[str, int], dict[str, int], int]:
    """The job's items by status, by reason, its dropped duplicates by rule family, and
    how many items have a label."""
    statuses = dict(db.execute(select(Item.status, func.count()).where(
        Item.job_id == job_id).group_by(Item.status)).all())
    reasons = dict(db.execute(select(Item.reason, func.count()).where(
        Item.job_id == job_id, Item.reason.is_not(None)).group_by(Item.reason)).all())
    family = case(*((Item.dedup_rule.like(f"{name}%"), name) for name in RULES),
                  else_="other")
    rules = dict(db.execute(select(family, func.count()).where(
        Item.job_id == job_id, Item.dedup_rule.is_not(None)).group_by(family)).all())
    labelled = db.scalar(select(func.count()).select_from(Label).join(
        Item, Item.id == Label.item_id).where(Item.job_id == job_id, Label.label >= 0))
    return statuses, reasons, rules, int(labelled)
