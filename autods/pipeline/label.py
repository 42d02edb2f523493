"""Label: run the job's labelling functions over a chunk and store its label-matrix rows."""

from __future__ import annotations

from sqlalchemy import select

from autods.core.label import apply_lfs, data_point
from autods.core.records import ItemStatus
from autods.db.models import Asset, Feature, Item, LfVote
from autods.db.session import session_scope
from autods.db.upsert import insert_ignore
from autods.pipeline.chunks import ChunkWork, in_chunk
from autods.pipeline.runtime import Runtime


def label(rt: Runtime, work: ChunkWork) -> dict[str, int]:
    """Votes for every ingested item of the chunk (the LabelModel is fitted per batch)."""
    spec = rt.label_spec(work.options.lfs)
    with session_scope(rt.engine) as db:
        rows = db.execute(
            select(Item, Asset.nbytes, Feature.width, Feature.height, Feature.format,
                   Feature.mode)
            .join(Asset, Asset.id == Item.asset_id)
            .outerjoin(Feature, Feature.asset_id == Item.asset_id)
            .where(in_chunk(Item, work), Item.status == ItemStatus.INGESTED)
            .order_by(Item.ordinal)
        ).all()
        points = [
            data_point(caption=item.caption, text=item.text, modality=item.modality,
                       width=width, height=height, format=fmt, mode=mode, nbytes=nbytes,
                       source=item.source, license=item.license, meta=item.meta or {})
            for item, nbytes, width, height, fmt, mode in rows
        ]
    matrix = apply_lfs(spec, points)
    with session_scope(rt.engine) as db:
        insert_ignore(db, LfVote, [
            {"item_id": item.id, "votes": [int(v) for v in votes], "spec_version": spec.version}
            for (item, *_), votes in zip(rows, matrix, strict=True)
        ], conflict=("item_id",))
    return {"voted": len(points)}
