"""Preprocess: pHash and image facts per asset, and the asset's rows in the band index."""

from __future__ import annotations

from sqlalchemy import select, update

from autods.core.hashing import bands, image_features
from autods.core.records import Rejected
from autods.db.models import Asset, Chunk, Dataset, Feature, Item, Job, PhashBand, utcnow
from autods.db.session import session_scope
from autods.db.upsert import insert_ignore
from autods.pipeline.runtime import Runtime


def preprocess_chunk(rt: Runtime, job_id: int, chunk_no: int) -> dict[str, int]:
    """Hash the chunk's new image assets; fail the items whose pixels cannot be decoded.

    An asset is hashed once per dataset, whichever chunk or job meets it first.
    """
    with session_scope(rt.engine) as db:
        chunk = db.scalar(select(Chunk).where(Chunk.job_id == job_id, Chunk.chunk_no == chunk_no))
        if chunk.preprocessed_at is not None:
            return {"skipped": chunk.n_items}
        dataset_id, near_k = db.execute(
            select(Job.dataset_id, Dataset.near_k).join(Dataset, Dataset.id == Job.dataset_id)
            .where(Job.id == job_id)).one()
        todo = db.execute(
            select(Asset.id, Asset.storage_key).distinct()
            .join(Item, Item.asset_id == Asset.id)
            .outerjoin(Feature, Feature.asset_id == Asset.id)
            .where(Item.job_id == job_id, Item.chunk_no == chunk_no,
                   Item.status == "ingested", Asset.modality == "image",
                   Feature.asset_id.is_(None))
        ).all()

    store = rt.store()
    features, band_rows = [], []
    for asset_id, key in todo:
        try:
            f = image_features(store.get(key))
        except Rejected as exc:
            features.append({"asset_id": asset_id, "error": exc.reason.value,
                             "error_detail": exc.detail[:500]})
            continue
        features.append({"asset_id": asset_id, "phash": f.phash, "width": f.width,
                         "height": f.height, "format": f.format, "mode": f.mode})
        band_rows += [{"dataset_id": dataset_id, "band_no": n, "value": v, "asset_id": asset_id}
                      for n, v in enumerate(bands(f.phash, near_k))]

    now = utcnow()
    with session_scope(rt.engine) as db:
        insert_ignore(db, Feature, features, conflict=("asset_id",))
        insert_ignore(db, PhashBand, band_rows,
                      conflict=("dataset_id", "band_no", "value", "asset_id"))
        broken = db.execute(
            select(Item.id, Feature.error, Feature.error_detail)
            .join(Feature, Feature.asset_id == Item.asset_id)
            .where(Item.job_id == job_id, Item.chunk_no == chunk_no,
                   Item.status == "ingested", Feature.error.is_not(None))
        ).all()
        if broken:
            db.execute(update(Item), [
                {"id": item_id, "status": "failed", "reason": reason, "detail": detail}
                for item_id, reason, detail in broken
            ])
        db.execute(update(Chunk).where(Chunk.job_id == job_id, Chunk.chunk_no == chunk_no)
                   .values(preprocessed_at=now))
    return {"hashed": len(features), "failed": len(broken)}

