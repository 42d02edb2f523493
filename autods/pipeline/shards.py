"""Write a resolved batch's shards: each shard on its own, idempotent, complete only once
its tar and manifests are in place (same names, same bytes when written again)."""

from __future__ import annotations

import io

import numpy as np
from sqlalchemy import select, update

from autods.core.packs import StoredRef, iter_bytes
from autods.core.records import ShardInfo
from autods.core.sample import SampleRecord, build_sample
from autods.core.shard import write_shard
from autods.db.models import Asset, Dataset, Feature, Item, Job, Label, Shard
from autods.db.session import session_scope
from autods.pipeline.chunks import batch_chunks
from autods.pipeline.options import JobOptions
from autods.pipeline.runtime import Runtime
from autods.version import PIPELINE_VERSION


def pending_shards(rt: Runtime, job_id: int, batch_no: int) -> dict[int, str]:
    """Id -> name of the batch's shards not yet complete (all of them on a first run)."""
    with session_scope(rt.engine) as db:
        return dict(db.execute(select(Shard.id, Shard.name).where(
            Shard.job_id == job_id, Shard.batch_no == batch_no, Shard.complete.is_(False))
            .order_by(Shard.name)).all())


def write_planned_shard(rt: Runtime, shard_id: int) -> str:
    """Write one planned shard and mark it complete; a complete one is left as it is.

    One session: the reads, then the objects written outside any transaction, then the
    shard's row.
    """
    with session_scope(rt.engine) as db:
        shard = db.get(Shard, shard_id)
        if shard.complete:
            return shard.name
        job = db.get(Job, shard.job_id)
        dataset = db.get(Dataset, job.dataset_id)
        records = _records(db, job.id, shard.batch_no, shard.name)
        db.commit()
        info = _write(rt, job, dataset, shard, records)
        db.execute(update(Shard).where(Shard.id == shard_id).values(
            complete=True, nbytes=info.nbytes, sha256=info.sha256, count=info.count,
            info={"tar": info.tar_key, "manifest": info.manifest_json_key,
                  "manifest_parquet": info.manifest_parquet_key,
                  "extensions": info.extensions}))
        return shard.name


def _records(db, job_id: int, batch_no: int, shard_name: str
             ) -> list[tuple[SampleRecord, StoredRef, str | None, int | None]]:
    """Each sample of the shard, in input order, with where its bytes and its embedding
    are.

    Plain rows, not ORM entities: building four entities per sample cost more than
    writing the sample. The shard's items are looked for among its batch's chunks (the
    job's chunk index): by the job alone, each shard of a 1M-item job read the job's
    million items, 0.26 s a shard against 0.11 s in a job of 100k.
    """
    rows = db.execute(
        select(Item.uri, Item.ordinal, Item.caption, Item.source, Item.license, Item.meta,
               Item.ingested_at, Item.split, Asset.sha256, Asset.modality, Asset.ext,
               Asset.nbytes, Asset.storage_key, Asset.pack_offset,
               Feature.asset_id.label("has_features"),
               Feature.width, Feature.height, Feature.format, Feature.mode, Feature.phash,
               Feature.language, Feature.embedding_model, Feature.embedding_key,
               Feature.embedding_row, Label.item_id.label("has_label"), Label.label,
               Label.name.label("label_name"), Label.probability, Label.model_version,
               Label.gold)
        .join(Asset, Asset.id == Item.asset_id)
        .outerjoin(Feature, Feature.asset_id == Asset.id)
        .outerjoin(Label, Label.item_id == Item.id)
        .where(Item.job_id == job_id,
               Item.chunk_no.in_(batch_chunks(job_id, batch_no)),
               Item.shard_name == shard_name)
        .order_by(Item.ordinal)
    ).all()
    out = []
    for r in rows:
        rec = SampleRecord(
            sha256=r.sha256, modality=r.modality, ext=r.ext, nbytes=r.nbytes, uri=r.uri,
            ordinal=r.ordinal, job_id=job_id, caption=r.caption, source=r.source,
            license=r.license, meta=r.meta or {}, ingested_at=r.ingested_at, split=r.split)
        if r.has_features is not None:
            rec.width, rec.height, rec.format, rec.mode = r.width, r.height, r.format, r.mode
            rec.phash, rec.language = r.phash, r.language
            rec.embedding_model = r.embedding_model
        if r.has_label is not None:
            rec.label, rec.label_name = r.label, r.label_name
            rec.confidence, rec.label_model = r.probability, r.model_version
            rec.label_source = "gold" if r.gold else "label_model"
        out.append((rec, StoredRef.of(r), r.embedding_key, r.embedding_row))
    return out


def _write(rt: Runtime, job: Job, dataset: Dataset, shard: Shard, records) -> ShardInfo:
    options = JobOptions.from_params(job.params)
    store = rt.store()
    matrices: dict[str, np.ndarray] = {}
    samples = []
    blobs = iter_bytes(store, (ref for _, ref, _, _ in records))
    for (rec, _, embedding_key, embedding_row), data in zip(records, blobs, strict=True):
        vector = None
        if options.embed:
            if embedding_key is None:
                raise RuntimeError(f"sample {rec.sha256} has no embedding")
            if embedding_key not in matrices:
                matrices[embedding_key] = np.load(io.BytesIO(store.get(embedding_key)))
            vector = matrices[embedding_key][embedding_row]
        samples.append(build_sample(rec, data, vector=vector,
                                    labelled=bool(options.lfs), resize=options.resize))
    provenance = {"dataset": dataset.name, "job": job.id, "pipeline_version": PIPELINE_VERSION,
                  "modality": shard.modality, "sources": job.sources}
    return write_shard(samples, shard.name, rt.store(dataset.output_url), provenance)
