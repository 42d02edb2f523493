"""Preprocess: pHash and image facts per asset, and the asset's rows in the band index."""

from __future__ import annotations

from sqlalchemy import select, update

from autods.core.hashing import bands, image_features
from autods.core.records import ItemStatus, Modality, Rejected
from autods.db.models import Asset, Dataset, Feature, Item, PhashBand
from autods.db.session import session_scope
from autods.db.upsert import insert_ignore
from autods.pipeline.chunks import ChunkWork, in_chunk
from autods.pipeline.runtime import Runtime


def preprocess(rt: Runtime, work: ChunkWork) -> dict[str, int]:
    """Hash the chunk's new image assets; fail the items whose pixels cannot be decoded.

    An asset is hashed once per dataset, whichever chunk or job meets it first.
    """
    with session_scope(rt.engine) as db:
        near_k = db.scalar(select(Dataset.near_k).where(Dataset.id == work.dataset_id))
        todo = db.execute(
            select(Asset.id, Asset.storage_key).distinct()
            .join(Item, Item.asset_id == Asset.id)
            .outerjoin(Feature, Feature.asset_id == Asset.id)
            .where(in_chunk(Item, work), Item.status == ItemStatus.INGESTED,
                   Asset.modality == Modality.IMAGE, Feature.asset_id.is_(None))
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
        band_rows += [{"dataset_id": work.dataset_id, "band_no": n, "value": v,
                       "asset_id": asset_id} for n, v in enumerate(bands(f.phash, near_k))]

    with session_scope(rt.engine) as db:
        insert_ignore(db, Feature, features, conflict=("asset_id",))
        insert_ignore(db, PhashBand, band_rows,
                      conflict=("dataset_id", "band_no", "value", "asset_id"))
        broken = db.execute(
            select(Item.id, Feature.error, Feature.error_detail)
            .join(Feature, Feature.asset_id == Item.asset_id)
            .where(in_chunk(Item, work), Item.status == ItemStatus.INGESTED,
                   Feature.error.is_not(None))
        ).all()
        if broken:
            db.execute(update(Item), [
                {"id": item_id, "status": ItemStatus.FAILED, "reason": reason, "detail": detail}
                for item_id, reason, detail in broken
            ])
    return {"hashed": len(features), "failed": len(broken)}
