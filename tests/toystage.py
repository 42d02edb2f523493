"""A toy chunk stage, as a contributor would add one: this function plus one row in the
stage table (``TOY``). It lists, per chunk, the ordinal and content hash of every item
still in the running, so tests can check that it ran over every chunk of a job, on its own
queue, in its place in the chain."""

from __future__ import annotations

from sqlalchemy import select

from autods.core.records import ItemStatus
from autods.db.models import Asset, Item
from autods.db.session import session_scope
from autods.pipeline import stagetable
from autods.pipeline.chunks import ChunkWork, in_chunk
from autods.pipeline.runtime import Runtime
from autods.pipeline.stagetable import Stage

TOY = Stage("inventory", "inventory", "tests.toystage:inventory")


def inventory(rt: Runtime, work: ChunkWork) -> dict[str, int]:
    with session_scope(rt.engine) as db:
        rows = db.execute(select(Item.ordinal, Asset.sha256)
                          .join(Asset, Asset.id == Item.asset_id)
                          .where(in_chunk(Item, work), Item.status == ItemStatus.INGESTED)
                          .order_by(Item.ordinal)).all()
    lines = "".join(f"{ordinal} {sha}\n" for ordinal, sha in rows)
    rt.store().put(inventory_key(work.job_id, work.chunk_no), lines.encode())
    return {"listed": len(rows)}


def inventory_key(job_id: int, chunk_no: int) -> str:
    return f"inventory/{job_id}/{chunk_no:06d}.txt"


def with_toy_stage() -> tuple[Stage, ...]:
    """The stage table with the toy row appended (the last stage of every job)."""
    return (*stagetable.CHUNK_STAGES, TOY)
