"""Embed: a vector for each of a chunk's new assets, one ``.npy`` matrix per chunk and
modality: CLIP for images, the sentence model for texts. Then the job's CLIP
image-caption floor, the one quality filter that needs the vectors."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sqlalchemy import select

from autods.core import filters as quality
from autods.core.packs import StoredRef, iter_bytes
from autods.core.records import ItemStatus, Modality
from autods.db.models import Asset, Feature, Item
from autods.db.session import session_scope
from autods.db.upsert import insert_ignore, update_rows
from autods.pipeline.chunks import ChunkWork, in_chunk
from autods.pipeline.runtime import Runtime


def embed(rt: Runtime, work: ChunkWork) -> dict[str, int]:
    """Embed assets of the chunk that have no embedding yet; rows refer to the matrix."""
    with session_scope(rt.engine) as db:
        todo = db.execute(
            select(Asset.id, Asset.modality, Asset.storage_key, Asset.pack_offset,
                   Asset.nbytes).distinct()
            .join(Item, Item.asset_id == Asset.id)
            .outerjoin(Feature, Feature.asset_id == Asset.id)
            .where(in_chunk(Item, work), Item.status == ItemStatus.INGESTED,
                   Feature.embedding_key.is_(None))
            .order_by(Asset.id)
        ).all()

    store = rt.store()
    updates: list[dict] = []
    groups = {m: [r for r in todo if r.modality == m] for m in Modality}
    # A worker's first texts wait for the sentence model's import (over a second): it runs
    # on a thread while CLIP embeds the images, since torch's kernels leave the interpreter
    # lock free for it. CLIP is built first: random weights are drawn from torch's global
    # generator, which building the sentence model draws from too.
    clip = rt.embedder if groups[Modality.IMAGE] else None
    with ThreadPoolExecutor(1) as loader:
        text_model = loader.submit(lambda: rt.text_embedder) if groups[Modality.TEXT] else None
        for modality, assets in groups.items():
            if not assets:
                continue
            blobs = list(iter_bytes(store, map(StoredRef.of, assets)))
            if modality == Modality.IMAGE:
                embedder = clip
                matrix = embedder.embed_images(blobs)
            else:
                embedder = text_model.result()
                matrix = embedder.embed_texts([b.decode("utf-8") for b in blobs])
            key = (f"embeddings/{work.dataset_id}/{work.job_id}/"
                   f"{work.chunk_no:06d}-{modality.value}.npy")
            buf = io.BytesIO()
            np.save(buf, matrix, allow_pickle=False)
            store.put(key, buf.getvalue())
            updates += [{"asset_id": a, "embedding_key": key, "embedding_row": row,
                         "embedding_model": embedder.name}
                        for row, (a, *_) in enumerate(assets)]

    with session_scope(rt.engine) as db:
        insert_ignore(db, Feature, [{"asset_id": u["asset_id"]} for u in updates],
                      conflict=("asset_id",))
        if updates:
            update_rows(db, Feature, updates)
        spec = quality.Filters.model_validate(work.options.filters or {})
        filtered = _clip_floor(rt, db, work, spec) if spec.needs_clip else 0
    return {"embedded": len(updates), "filtered": filtered}


def load_vectors(store, refs: list[tuple[str, int]]) -> np.ndarray:
    """The rows ``(embedding_key, row)`` of the stored matrices, each matrix read once."""
    matrices: dict[str, np.ndarray] = {}
    rows = []
    for key, row in refs:
        if key not in matrices:
            matrices[key] = np.load(io.BytesIO(store.get(key)))
        rows.append(matrices[key][row])
    return np.stack(rows) if rows else np.zeros((0, 0), np.float16)


def _clip_floor(rt: Runtime, db, work: ChunkWork, spec: quality.Filters) -> int:
    """Filter the chunk's captioned images whose caption is further from the image than
    the floor (cosine of CLIP vectors). An image without a caption is not judged here:
    ``min_caption_len`` is the bound for that."""
    rows = db.execute(
        select(Item.id, Item.caption, Feature.embedding_key, Feature.embedding_row)
        .join(Feature, Feature.asset_id == Item.asset_id)
        .where(in_chunk(Item, work), Item.status == ItemStatus.INGESTED,
               Item.modality == Modality.IMAGE, Item.caption.is_not(None),
               Item.caption != "", Feature.embedding_key.is_not(None))
        .order_by(Item.ordinal)
    ).all()
    if not rows:
        return 0
    images = load_vectors(rt.store(), [(r.embedding_key, r.embedding_row) for r in rows])
    captions = rt.embedder.embed_texts([r.caption for r in rows])
    scores = (images.astype(np.float32) * captions.astype(np.float32)).sum(axis=1)
    verdicts = []
    for r, score in zip(rows, scores, strict=True):
        failed = quality.check_clip(spec, float(score))
        if failed is not None:
            verdicts.append({"id": r.id, "status": ItemStatus.FILTERED,
                             "reason": failed.reason, "detail": failed.detail})
    if verdicts:
        update_rows(db, Item, verdicts)
    return len(verdicts)
