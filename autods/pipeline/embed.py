"""Embed: CLIP vectors for a chunk's new assets, one ``.npy`` matrix per chunk and modality."""

from __future__ import annotations

import io

import numpy as np
from sqlalchemy import select, update

from autods.core.records import ItemStatus, Modality
from autods.db.models import Asset, Feature, Item
from autods.db.session import session_scope
from autods.db.upsert import insert_ignore
from autods.pipeline.chunks import ChunkWork, in_chunk
from autods.pipeline.runtime import Runtime


def embed(rt: Runtime, work: ChunkWork) -> dict[str, int]:
    """Embed assets of the chunk that have no embedding yet; rows refer to the matrix."""
    with session_scope(rt.engine) as db:
        todo = db.execute(
            select(Asset.id, Asset.modality, Asset.storage_key).distinct()
            .join(Item, Item.asset_id == Asset.id)
            .outerjoin(Feature, Feature.asset_id == Asset.id)
            .where(in_chunk(Item, work), Item.status == ItemStatus.INGESTED,
                   Feature.embedding_key.is_(None))
            .order_by(Asset.id)
        ).all()

    store = rt.store()
    updates: list[dict] = []
    for modality in Modality:
        assets = [(a, key) for a, m, key in todo if m == modality]
        if not assets:
            continue
        blobs = [store.get(key) for _, key in assets]
        embedder = rt.embedder
        if modality == Modality.IMAGE:
            matrix = embedder.embed_images(blobs)
        else:
            matrix = embedder.embed_texts([b.decode("utf-8") for b in blobs])
        key = (f"embeddings/{work.dataset_id}/{work.job_id}/"
               f"{work.chunk_no:06d}-{modality.value}.npy")
        buf = io.BytesIO()
        np.save(buf, matrix, allow_pickle=False)
        store.put(key, buf.getvalue())
        updates += [{"asset_id": a, "embedding_key": key, "embedding_row": row,
                     "embedding_model": embedder.name} for row, (a, _) in enumerate(assets)]

    with session_scope(rt.engine) as db:
        insert_ignore(db, Feature, [{"asset_id": u["asset_id"]} for u in updates],
                      conflict=("asset_id",))
        if updates:
            db.execute(update(Feature), updates)
    return {"embedded": len(updates)}
