"""A job's end: batches committed one by one, the last one closes the job; or it fails."""

from __future__ import annotations

from sqlalchemy import func, select, update

from autods.core.manifest import write_index
from autods.core.records import JobState, ShardInfo
from autods.db.models import Batch, Dataset, Job, Shard, utcnow
from autods.db.session import session_scope
from autods.pipeline.runtime import Runtime


def commit_batch(rt: Runtime, job_id: int, batch_no: int) -> bool:
    """Mark the batch committed; True when it was the job's last outstanding batch."""
    with session_scope(rt.engine) as db:
        # Commits of one job take turns, so exactly one of them sees nothing left.
        db.execute(select(Job.id).where(Job.id == job_id).with_for_update())
        db.execute(update(Batch).where(Batch.job_id == job_id, Batch.batch_no == batch_no,
                                       Batch.committed_at.is_(None))
                   .values(committed_at=utcnow()))
        left = db.scalar(select(func.count()).select_from(Batch).where(
            Batch.job_id == job_id, Batch.committed_at.is_(None)))
    return left == 0


def finalize_job(rt: Runtime, job_id: int) -> str:
    """Rewrite the dataset index from every complete shard and close the job."""
    with session_scope(rt.engine) as db:
        job = db.get(Job, job_id)
        dataset = db.get(Dataset, job.dataset_id)
        shards = list(db.scalars(select(Shard).where(
            Shard.dataset_id == dataset.id, Shard.complete.is_(True)).order_by(Shard.name)))
        infos = [
            ShardInfo(name=s.name, count=s.count, nbytes=s.nbytes or 0, sha256=s.sha256 or "",
                      tar_key=s.info["tar"], manifest_json_key=s.info["manifest"],
                      manifest_parquet_key=s.info["manifest_parquet"], modality=s.modality,
                      extensions=s.info.get("extensions", []))
            for s in shards
        ]
        key = write_index(rt.store(dataset.output_url), infos, dataset.name)
        if job.status != JobState.SUCCEEDED:
            job.status = JobState.SUCCEEDED
            job.finished_at = utcnow()
    return key


def job_failed(rt: Runtime, job_id: int) -> bool:
    with session_scope(rt.engine) as db:
        return db.scalar(select(Job.status).where(Job.id == job_id)) == JobState.FAILED


def fail_job(rt: Runtime, job_id: int, error: str) -> None:
    """Record a job's failure (a bug, not bad input); a finished job keeps its state."""
    with session_scope(rt.engine) as db:
        job = db.get(Job, job_id)
        if not JobState(job.status).final:
            job.status, job.error, job.finished_at = JobState.FAILED, error[:4000], utcnow()
