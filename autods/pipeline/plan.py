"""Turning sources into a job: items in input order, cut into chunks and batches."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy import delete, exists, select

from autods.core import bandindex
from autods.core.nearimage import band_radius
from autods.core.records import ItemStatus, JobState, OutputConflict, SourceItem
from autods.core.sources import iter_source
from autods.core.validate import LONE_SURROGATE, clean_caption
from autods.db.models import Batch, Chunk, Dataset, Item, Job, utcnow
from autods.db.session import session_scope
from autods.pipeline.options import JobOptions
from autods.pipeline.runtime import Runtime

log = logging.getLogger(__name__)


def normalise_source(spec: str) -> str:
    """Local paths become absolute, so a worker elsewhere on the machine finds them."""
    if "://" in spec:
        return spec
    return str(Path(spec).resolve())


def fingerprint(sources: list[str], dataset: str, options: JobOptions) -> str:
    payload = json.dumps([sources, dataset, options.as_params()], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def find_resumable(rt: Runtime, sources: list[str], dataset: str, options: JobOptions
                   ) -> int | None:
    """The newest planned, unfinished job with the same sources, dataset and options.

    A job still ``pending`` was never fully planned (its planner died while listing): it
    is discarded, so the caller plans the job again instead of resuming half a list.
    """
    fp = fingerprint([normalise_source(s) for s in sources], dataset, options)
    with session_scope(rt.engine) as db:
        unplanned = list(db.scalars(select(Job.id).where(
            Job.fingerprint == fp, Job.status == JobState.PENDING)))
        for job_id in unplanned:
            log.info("job %d was never fully planned; planning it again", job_id)
            _discard(db, job_id)
        return db.scalar(
            select(Job.id).where(Job.fingerprint == fp, Job.status == JobState.RUNNING)
            .order_by(Job.id.desc()).limit(1)
        )


def _discard(db, job_id: int) -> None:
    """Remove a job that was never planned completely, with its items (nothing else of it
    exists yet: chunks and batches are written once listing is done)."""
    db.execute(delete(Item).where(Item.job_id == job_id))
    db.execute(delete(Job).where(Job.id == job_id))


def create_job(rt: Runtime, sources: list[str], dataset: str, options: JobOptions,
               output_url: str | None = None, items: Iterable[SourceItem] | None = None) -> int:
    """Record a job and all its items; returns the job id.

    Items are listed here, in the submitting process, because only it can read a local URL
    list; workers receive chunk numbers and read items from the database. ``items`` gives
    the inputs directly (S3 events); ``sources`` then only describes them.
    """
    sources = [normalise_source(s) for s in sources]
    with session_scope(rt.engine) as db:
        ds = db.scalar(select(Dataset).where(Dataset.name == dataset))
        created = ds is None
        if created:
            out = output_url or f"{rt.settings.storage.url.rstrip('/')}/datasets/{dataset}"
            ds = Dataset(name=dataset, output_url=out, near_k=options.near_k,
                         band_k=band_radius(options.near_k),
                         band_size=bandindex.MIN_PLAN_SIZE)
            db.add(ds)
            db.flush()
        elif output_url is not None and output_url != ds.output_url:
            raise OutputConflict(f"dataset {dataset!r} writes to {ds.output_url}, "
                                 f"not {output_url}")
        job = Job(dataset_id=ds.id, status=JobState.PENDING, sources=sources,
                  params=options.as_params(),
                  fingerprint=fingerprint(sources, dataset, options))
        db.add(job)
        db.flush()
        job_id = job.id
        if options.near_k != ds.near_k:
            log.warning("dataset %s indexes pHash bands for k=%d; using it instead of k=%d",
                        dataset, ds.near_k, options.near_k)

    try:
        n_items = _insert_items(rt, job_id,
                                items if items is not None else _listed(rt, sources),
                                options.chunk_size)
    except BaseException:
        # A source that cannot be listed (or an interrupt while listing) leaves nothing
        # behind: no pending job, and no dataset that this job alone created.
        with session_scope(rt.engine) as db:
            _discard(db, job_id)
            if created:
                db.execute(delete(Dataset).where(
                    Dataset.id == ds.id, ~exists().where(Job.dataset_id == ds.id)))
        raise
    n_chunks = -(-n_items // options.chunk_size)
    chunks_per_batch = max(1, options.batch_size // options.chunk_size)
    n_batches = -(-n_chunks // chunks_per_batch)
    with session_scope(rt.engine) as db:
        for chunk_no in range(n_chunks):
            first = chunk_no * options.chunk_size
            db.add(Chunk(job_id=job_id, chunk_no=chunk_no, batch_no=chunk_no // chunks_per_batch,
                         first_ordinal=first, n_items=min(options.chunk_size, n_items - first)))
        for batch_no in range(n_batches):
            size = min(chunks_per_batch, n_chunks - batch_no * chunks_per_batch)
            db.add(Batch(job_id=job_id, batch_no=batch_no, n_chunks=size))
        job = db.get(Job, job_id)
        job.n_items, job.n_chunks, job.n_batches = n_items, n_chunks, n_batches
        job.status = JobState.RUNNING
        job.started_at = utcnow()
    log.info("job %d: %d items, %d chunks, %d batches", job_id, n_items, n_chunks, n_batches)
    return job_id


def _listed(rt: Runtime, sources: list[str]) -> Iterator[SourceItem]:
    """Every source's items in order, ordinals continuing from one source to the next."""
    ordinal = 0
    for spec in sources:
        client = rt.s3 if spec.startswith("s3://") else None
        for item in iter_source(spec, start_ordinal=ordinal, s3_client=client):
            ordinal = item.ordinal + 1
            yield item


def _insert_items(rt: Runtime, job_id: int, items: Iterable[SourceItem], chunk_size: int) -> int:
    """Stream items into the database in bulk; returns how many there were. PostgreSQL
    takes them through one ``COPY`` (several times faster than batched inserts, and
    psycopg flushes as it goes, so memory does not grow with the list)."""
    rows = (_item_row(job_id, item, chunk_size) for item in items)
    with session_scope(rt.engine) as db:
        if db.get_bind().dialect.name == "postgresql":
            return _copy_rows(db, rows)
        count = 0
        batch: list[dict] = []
        for row in rows:
            batch.append(row)
            count = row["ordinal"] + 1
            if len(batch) >= 5000:
                db.execute(Item.__table__.insert(), batch)
                batch.clear()
        if batch:
            db.execute(Item.__table__.insert(), batch)
    return count


#: The columns a listed item fills, in the order ``_copy_rows`` writes them.
_ITEM_COLUMNS = ("job_id", "ordinal", "chunk_no", "modality", "uri", "caption", "caption_uri",
                 "text", "license", "source", "meta", "status", "reason")


def _item_row(job_id: int, item: SourceItem, chunk_size: int) -> dict:
    clean = _without_nul
    return {
        "job_id": job_id, "ordinal": item.ordinal, "chunk_no": item.ordinal // chunk_size,
        "modality": item.modality.value, "uri": clean(item.uri),
        "caption": clean(clean_caption(item.caption)), "caption_uri": clean(item.caption_uri),
        "text": clean(item.text), "license": clean(item.license),
        "source": clean(item.source), "meta": clean(item.meta) if item.meta else item.meta,
        "status": _PENDING, "reason": item.error,
    }


_PENDING = ItemStatus.PENDING.value


def _copy_rows(db, rows: Iterable[dict]) -> int:
    """``COPY items FROM STDIN`` in the session's transaction; returns the item count."""
    count = 0
    cursor = db.connection().connection.driver_connection.cursor()
    with cursor, cursor.copy(f"COPY items ({', '.join(_ITEM_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            meta = row["meta"]
            row["meta"] = json.dumps(meta) if meta else ("{}" if meta == {} else "null")
            copy.write_row([row[c] for c in _ITEM_COLUMNS])
            count = row["ordinal"] + 1
    return count


def _without_nul(value):
    """PostgreSQL text cannot hold NUL and no database can hold a lone surrogate (a JSON
    ``\udcff`` escape); inputs may. NUL is dropped and a surrogate becomes U+FFFD
    everywhere before storing (a text record with one is rejected by its reader)."""
    if isinstance(value, str):
        if value.isascii():  # no surrogate: only a NUL to drop, and rarely that
            return value.replace("\x00", "") if "\x00" in value else value
        return LONE_SURROGATE.sub("\ufffd", value.replace("\x00", ""))
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value
