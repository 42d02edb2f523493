"""Preprocess: per asset the features dedup needs (pHash, check hash and region print for
images; normalised-text hash, MinHash and its LSH band rows for texts), then the job's
quality filters over the chunk's items. The images' band index rows come later, from the
batch step that publishes them (``pipeline.nearindex``).

Ingest hashes the images it stores while their bytes are in memory (``hashed`` and
``feature_row`` are shared with it); this stage hashes the images that are left (content
stored before without features), the texts, and fails the items whose pixels could not
be decoded."""

from __future__ import annotations

from sqlalchemy import select

from autods.core import filters as quality
from autods.core.hashing import image_features
from autods.core.packs import StoredRef, iter_bytes, read_one
from autods.core.records import ImageFeatures, ItemStatus, Modality, Rejected
from autods.db.models import Asset, Feature, Item, MinhashBand
from autods.db.session import session_scope
from autods.db.upsert import insert_ignore, update_rows
from autods.pipeline.chunks import ChunkWork, in_chunk
from autods.pipeline.runtime import Runtime


def preprocess(rt: Runtime, work: ChunkWork) -> dict[str, int]:
    """Hash the chunk's new assets, fail the images whose pixels cannot be decoded, and
    filter what the job's bounds turn away.

    An asset is hashed once per dataset, whichever chunk or job meets it first; filters
    are the job's own, so they are judged per item on every job.
    """
    options = work.options
    modalities = [Modality.IMAGE] + ([Modality.TEXT] if options.text_features else [])
    with session_scope(rt.engine) as db:
        todo = db.execute(
            select(Asset.id, Asset.modality, Asset.storage_key, Asset.pack_offset,
                   Asset.nbytes).distinct()
            .join(Item, Item.asset_id == Asset.id)
            .outerjoin(Feature, Feature.asset_id == Asset.id)
            .where(in_chunk(Item, work), Item.status == ItemStatus.INGESTED,
                   Asset.modality.in_(modalities), Feature.asset_id.is_(None))
            .order_by(Asset.storage_key, Asset.pack_offset)
        ).all()

    store = rt.store()
    features, minhash_rows = [], []
    # Building the hasher imports datasketch (and scipy's integrators): seconds, paid only
    # by a chunk with texts to hash.
    hasher = (rt.minhasher(options.minhash_threshold)
              if options.text_near and any(r.modality == Modality.TEXT for r in todo) else None)
    blobs = iter_bytes(store, map(StoredRef.of, todo))
    for (asset_id, modality, *_), data in zip(todo, blobs, strict=True):
        if modality == Modality.TEXT:
            row, band_values = _text_features(hasher, data.decode("utf-8"))
            features.append({"asset_id": asset_id, **row})
            minhash_rows += [{"dataset_id": work.dataset_id, "band_no": n, "value": v,
                              "asset_id": asset_id} for n, v in enumerate(band_values)]
            continue
        features.append(feature_row(asset_id, hashed(data)))

    with session_scope(rt.engine) as db:
        insert_ignore(db, Feature, features, conflict=("asset_id",))
        insert_ignore(db, MinhashBand, minhash_rows,
                      conflict=("dataset_id", "band_no", "value", "asset_id"))
        broken = db.execute(
            select(Item.id, Feature.error, Feature.error_detail)
            .join(Feature, Feature.asset_id == Item.asset_id)
            .where(in_chunk(Item, work), Item.status == ItemStatus.INGESTED,
                   Feature.error.is_not(None))
        ).all()
        if broken:
            update_rows(db, Item, [
                {"id": item_id, "status": ItemStatus.FAILED, "reason": reason, "detail": detail}
                for item_id, reason, detail in broken
            ])
        filtered = _filter(db, work, store) if options.filters else []
    return {"hashed": len(features), "failed": len(broken), "filtered": len(filtered)}


def hashed(data: bytes) -> ImageFeatures | Rejected:
    """An image's features, or why its pixels cannot be read."""
    try:
        return image_features(data)
    except Rejected as exc:
        return exc


def feature_row(asset_id: int, features: ImageFeatures | Rejected) -> dict:
    """An image asset's feature row, or its decoding error. Its band index rows wait for
    the batch step that publishes it (``pipeline.nearindex``)."""
    if isinstance(features, Rejected):
        return {"asset_id": asset_id, "error": features.reason.value,
                "error_detail": features.detail[:500]}
    f = features
    return {"asset_id": asset_id, "phash": f.phash, "check_hash": f.check, "thumb": f.thumb,
            "width": f.width, "height": f.height, "format": f.format, "mode": f.mode}


def _text_features(hasher, text: str) -> tuple[dict, list[int]]:
    """A text's normalised hash, its language, and (when the job near-dedups texts) its
    MinHash and LSH band values."""
    from autods.core.textdedup import normalized_sha256, to_bytes

    language, score = quality.detect_language(text)
    row: dict = {"text_sha256": normalized_sha256(text), "language": language,
                 "language_score": score}
    if hasher is None:
        return row, []
    signature = hasher.signature(text)
    row["minhash"] = to_bytes(signature)
    return row, hasher.band_values(signature)


def _filter(db, work: ChunkWork, store) -> list[int]:
    """Judge the chunk's ingested items by the job's bounds; returns the filtered ids."""
    spec = quality.Filters.model_validate(work.options.filters)
    rows = db.execute(
        select(Item.id, Item.caption, Asset.id.label("asset_id"), Asset.modality, Asset.nbytes,
               Asset.storage_key, Asset.pack_offset, Feature.width, Feature.height,
               Feature.language, Feature.language_score)
        .join(Asset, Asset.id == Item.asset_id)
        .outerjoin(Feature, Feature.asset_id == Asset.id)
        .where(in_chunk(Item, work), Item.status == ItemStatus.INGESTED)
        .order_by(Item.ordinal)
    ).all()
    verdicts = []
    for r in rows:
        if r.modality == Modality.IMAGE:
            failed = quality.check_image(spec, r.width or 0, r.height or 0, r.nbytes, r.caption)
        else:
            length = len(read_one(store, StoredRef.of(r)).decode("utf-8")) if (
                spec.min_text_len is not None or spec.max_text_len is not None) else 0
            failed = quality.check_text(spec, length, r.nbytes,
                                        (r.language, r.language_score) if r.language else None)
        if failed is not None:
            verdicts.append({"id": r.id, "status": ItemStatus.FILTERED,
                             "reason": failed.reason, "detail": failed.detail})
    if verdicts:
        update_rows(db, Item, verdicts)
    return [v["id"] for v in verdicts]
