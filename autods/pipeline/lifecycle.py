"""A job's end: batches committed one by one, the last one publishes a dataset version and
closes the job; or it fails."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from autods.core.records import JobState, ShardInfo
from autods.core.storage import ObjectStore
from autods.core.versions import (
    INDEX_KEY,
    DatasetNotFound,
    Version,
    read_version,
    write_latest_index,
    write_version,
)
from autods.db.models import Batch, Dataset, Job, Shard, Tombstone, utcnow
from autods.db.session import session_scope
from autods.pipeline.mapjobs import delete_forgotten
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
    """Publish the job as the dataset's next version, then close it.

    The dataset's row is locked while the version is written, so two jobs finishing
    together write versions one after the other. A job delivered again after it published
    (or after its version file was written and before the database heard of it) publishes
    nothing new.
    """
    with session_scope(rt.engine) as db:
        db.execute(update(Dataset).where(Dataset.id == Job.dataset_id, Job.id == job_id)
                   .values(next_shard_no=Dataset.next_shard_no))  # the lock, on every database
        job = db.get(Job, job_id)
        dataset = db.get(Dataset, job.dataset_id)
        store = rt.store(dataset.output_url)
        latest = _latest(store)
        if job.version is None and latest is not None and latest.doc.get("job") == job_id:
            job.version = latest.number
        if job.version is None:
            shards = _next_shards(db, job, dataset, latest)
            tombstones = list(db.scalars(select(Tombstone.key).where(Tombstone.job_id == job_id)))
            job.version = write_version(store, dataset.name, shards, latest, job=job_id,
                                        kind=job.kind, tombstones=tombstones).number
        elif latest is not None:
            write_latest_index(store, latest)
        forgets = job.kind == "map" and job.params.get("map") == "forget"
    # The job is done only once a forget's objects are gone: whoever waits on its state
    # (the embedded runner stops its worker then) must not see it succeed before.
    if forgets:
        delete_forgotten(rt, job_id)
    with session_scope(rt.engine) as db:
        db.execute(update(Job).where(Job.id == job_id, Job.status != JobState.SUCCEEDED)
                   .values(status=JobState.SUCCEEDED, finished_at=utcnow()))
    return INDEX_KEY


def _latest(store: ObjectStore) -> Version | None:
    """The latest version, or the index a dataset had before versions existed."""
    try:
        return read_version(store)
    except DatasetNotFound:
        return None


def _info(s: Shard) -> ShardInfo:
    return ShardInfo(name=s.name, count=s.count, nbytes=s.nbytes or 0, sha256=s.sha256 or "",
                     tar_key=s.info["tar"], manifest_json_key=s.info["manifest"],
                     manifest_parquet_key=s.info["manifest_parquet"], modality=s.modality,
                     extensions=s.info.get("extensions", []))


def _next_shards(db: Session, job: Job, dataset: Dataset, latest: Version | None
                 ) -> list[ShardInfo]:
    """The shards of the version this job makes: the latest version's, and every complete
    shard of a finished build that no version lists and no rewrite replaced (a failed
    job's published batches, shards written before versions existed), with this job's
    rewrites in place of their parents; an emptied shard replaces its parent with nothing.
    """
    base = {s.name: s for s in latest.shards} if latest is not None else {}
    rewrites = select(Shard).join(Job, Job.id == Shard.job_id).where(
        Shard.dataset_id == dataset.id, Job.kind == "map")
    replaced = {s.info.get("parent") for s in db.scalars(rewrites)}
    builds = select(Job.id).where(
        Job.dataset_id == dataset.id, Job.kind == "build",
        ~Job.status.in_([JobState.PENDING, JobState.RUNNING]) | (Job.id == job.id))
    for s in db.scalars(select(Shard).where(
            Shard.dataset_id == dataset.id, Shard.complete.is_(True), Shard.count > 0,
            Shard.job_id.in_(builds))):
        if s.name not in base and s.name not in replaced:
            base[s.name] = _info(s)
    for s in db.scalars(select(Shard).where(Shard.job_id == job.id,
                                            Shard.complete.is_(True))):
        parent = s.info.get("parent")
        if parent is None:
            continue
        if parent not in base:
            raise RuntimeError(f"shard {parent} is no longer in the latest version of "
                               f"{dataset.name}: another change replaced it first")
        del base[parent]
        if s.count > 0:
            base[s.name] = _info(s)
    return list(base.values())


def job_failed(rt: Runtime, job_id: int) -> bool:
    with session_scope(rt.engine) as db:
        return db.scalar(select(Job.status).where(Job.id == job_id)) == JobState.FAILED


def fail_job(rt: Runtime, job_id: int, error: str) -> None:
    """Record a job's failure (a bug, not bad input); a finished job keeps its state."""
    with session_scope(rt.engine) as db:
        job = db.get(Job, job_id)
        if not JobState(job.status).final:
            job.status, job.error, job.finished_at = JobState.FAILED, error[:4000], utcnow()
