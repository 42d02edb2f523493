"""Write a resolved batch's shards: each shard on its own, idempotent, complete only once
its tar and manifests are in place (same names, same bytes when written again)."""

from __future__ import annotations

import io

import numpy as np
from sqlalchemy import select, update

from autods.core.records import ShardInfo
from autods.core.sample import SampleRecord, build_sample
from autods.core.shard import write_shard
from autods.db.models import Asset, Dataset, Feature, Item, Job, Label, Shard
from autods.db.session import session_scope
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
        records = _records(db, job.id, shard.name)
        db.commit()
        info = _write(rt, job, dataset, shard, records)
        db.execute(update(Shard).where(Shard.id == shard_id).values(
            complete=True, nbytes=info.nbytes, sha256=info.sha256, count=info.count,
            info={"tar": info.tar_key, "manifest": info.manifest_json_key,
                  "manifest_parquet": info.manifest_parquet_key,
                  "extensions": info.extensions}))
        return shard.name


def _records(db, job_id: int, shard_name: str) -> list[tuple[SampleRecord, str, str | None,
                                                                int | None]]:
    """Each sample of the shard, in input order, with its object key and embedding ref."""
    rows = db.execute(
        select(Item, Asset, Feature, Label)
        .join(Asset, Asset.id == Item.asset_id)
        .outerjoin(Feature, Feature.asset_id == Asset.id)
        .outerjoin(Label, Label.item_id == Item.id)
        .where(Item.job_id == job_id, Item.shard_name == shard_name)
        .order_by(Item.ordinal)
    ).all()
    out = []
    for item, asset, feat, label in rows:
        rec = SampleRecord(
            sha256=asset.sha256, modality=asset.modality, ext=asset.ext, nbytes=asset.nbytes,
            uri=item.uri, ordinal=item.ordinal, job_id=job_id, caption=item.caption,
            source=item.source, license=item.license, meta=item.meta or {},
            ingested_at=item.ingested_at, split=item.split)
        if feat is not None:
            rec.width, rec.height, rec.format, rec.mode = (feat.width, feat.height,
                                                           feat.format, feat.mode)
            rec.phash, rec.language = feat.phash, feat.language
            rec.embedding_model = feat.embedding_model
        if label is not None:
            rec.label, rec.label_name = label.label, label.name
            rec.confidence, rec.label_model = label.probability, label.model_version
            rec.label_source = "gold" if label.gold else "label_model"
        out.append((rec, asset.storage_key, feat.embedding_key if feat else None,
                    feat.embedding_row if feat else None))
    return out


def _write(rt: Runtime, job: Job, dataset: Dataset, shard: Shard, records) -> ShardInfo:
    options = JobOptions.from_params(job.params)
    store = rt.store()
    matrices: dict[str, np.ndarray] = {}
    samples = []
    for rec, storage_key, embedding_key, embedding_row in records:
        vector = None
        if options.embed:
            if embedding_key is None:
                raise RuntimeError(f"sample {rec.sha256} has no embedding")
            if embedding_key not in matrices:
                matrices[embedding_key] = np.load(io.BytesIO(store.get(embedding_key)))
            vector = matrices[embedding_key][embedding_row]
        samples.append(build_sample(rec, store.get(storage_key), vector=vector,
                                    labelled=bool(options.lfs), resize=options.resize))
    provenance = {"dataset": dataset.name, "job": job.id, "pipeline_version": PIPELINE_VERSION,
                  "modality": shard.modality, "sources": job.sources}
    return write_shard(samples, shard.name, rt.store(dataset.output_url), provenance)
