"""Label: run the job's labelling functions over a chunk and store its label-matrix rows.

The stage runs after ``embed``, so zero-shot LFs see each sample's vector."""

from __future__ import annotations

from sqlalchemy import select

from autods.core.label import apply_lfs, data_point
from autods.core.records import ItemStatus
from autods.db.models import Asset, Feature, Item, LfVote
from autods.db.session import session_scope
from autods.db.upsert import insert_ignore
from autods.pipeline.chunks import ChunkWork, in_chunk
from autods.pipeline.embed import load_vectors
from autods.pipeline.runtime import Runtime


def label(rt: Runtime, work: ChunkWork) -> dict[str, int]:
    """Votes for every ingested item of the chunk (the LabelModel is fitted per batch)."""
    spec = rt.label_spec(work.options.lfs)
    with session_scope(rt.engine) as db:
        rows = db.execute(
            select(Item, Asset.nbytes, Feature.width, Feature.height, Feature.format,
                   Feature.mode, Feature.embedding_key, Feature.embedding_row,
                   Feature.embedding_model)
            .join(Asset, Asset.id == Item.asset_id)
            .outerjoin(Feature, Feature.asset_id == Item.asset_id)
            .where(in_chunk(Item, work), Item.status == ItemStatus.INGESTED)
            .order_by(Item.ordinal)
        ).all()
    vectors = _vectors(rt, spec, rows)
    points = [
        data_point(caption=item.caption, text=item.text, modality=item.modality,
                   width=width, height=height, format=fmt, mode=mode, nbytes=nbytes,
                   source=item.source, license=item.license, meta=item.meta or {},
                   embedding=vectors.get(i), embedding_model=model)
        for i, (item, nbytes, width, height, fmt, mode, _, _, model) in enumerate(rows)
    ]
    matrix = apply_lfs(spec, points)
    with session_scope(rt.engine) as db:
        insert_ignore(db, LfVote, [
            {"item_id": item.id, "votes": [int(v) for v in votes], "spec_version": spec.version}
            for (item, *_), votes in zip(rows, matrix, strict=True)
        ], conflict=("item_id",))
    return {"voted": len(points)}


def _vectors(rt: Runtime, spec, rows) -> dict:
    """Row number -> vector, loaded only when the module has zero-shot LFs (which are
    bound to their encoders here)."""
    from autods.pipeline.relabel import prepare_embedding_lfs

    if not prepare_embedding_lfs(rt, spec):
        return {}
    refs = [(i, r.embedding_key, r.embedding_row) for i, r in enumerate(rows)
            if r.embedding_key is not None]
    matrix = load_vectors(rt.store(), [(k, j) for _, k, j in refs])
    return {i: matrix[n] for n, (i, _, _) in enumerate(refs)}
