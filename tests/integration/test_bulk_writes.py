"""Bulk writes on PostgreSQL: arrays unnested by one statement, with the same outcome as
SQLite's row-by-row statements for every column type the stages write (NULLs, JSON,
bytes, timestamps, enums, 64-bit extremes)."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from sqlalchemy import select

from autods.core.records import ItemStatus
from autods.db.models import Asset, Dataset, Feature, Item, Job, PhashBand
from autods.db.session import engine_for, session_scope
from autods.db.upsert import insert_ignore, insert_int_columns, update_rows

pytestmark = pytest.mark.integration

N = 70
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def _write_and_read(url: str) -> dict:
    engine = engine_for(url)
    with session_scope(engine) as db:
        dataset = Dataset(name=f"bulk-{url[-6:]}", output_url="file:///o", near_k=4,
                          next_shard_no=0, created_at=NOW)
        db.add(dataset)
        db.flush()
        job = Job(dataset_id=dataset.id, status="running", sources=[], params={},
                  fingerprint="f", n_items=N, n_chunks=1, n_batches=1, created_at=NOW)
        db.add(job)
        db.flush()
        assets = [{"dataset_id": dataset.id, "sha256": f"{i:064x}", "modality": "image",
                   "mime": "image/jpeg", "ext": "jpg", "nbytes": 10 + i, "storage_key": "p",
                   "pack_offset": i * 10, "created_at": NOW} for i in range(N)]
        insert_ignore(db, Asset, assets + assets[:5], conflict=("dataset_id", "sha256"))
        ids = dict(db.execute(select(Asset.sha256, Asset.id)
                              .where(Asset.dataset_id == dataset.id)).all())
        items = [{"job_id": job.id, "ordinal": i, "chunk_no": 0, "modality": "image",
                  "uri": f"file:///in/{i}.jpg", "meta": {"k": [i, "é"]} if i % 2 else {},
                  "status": ItemStatus.PENDING} for i in range(N)]
        insert_ignore(db, Item, items, conflict=("job_id", "ordinal"))
        item_ids = dict(db.execute(select(Item.ordinal, Item.id)
                                   .where(Item.job_id == job.id)).all())
        # Two column sets in one call, enums, NULLs, timestamps.
        update_rows(db, Item, [
            {"id": item_ids[i], "status": ItemStatus.INGESTED, "asset_id": ids[f"{i:064x}"],
             "caption": f"caption {i}\twith a tab" if i % 3 else None, "ingested_at": NOW}
            if i % 4 else
            {"id": item_ids[i], "status": ItemStatus.FAILED, "reason": "corrupt_image",
             "detail": "broken\nline"}
            for i in range(N)])
        insert_ignore(db, Feature, [
            {"asset_id": ids[f"{i:064x}"], "phash": -(2**63) + i, "thumb": bytes([i, 0, 255])}
            for i in range(N)], conflict=("asset_id",))
        bands = [{"dataset_id": dataset.id, "band_no": b, "value": i * 7 + b,
                  "asset_id": ids[f"{i:064x}"]} for i in range(N) for b in range(2)]
        insert_ignore(db, PhashBand, bands + bands[:9],
                      conflict=("dataset_id", "band_no", "value", "asset_id"))
        # Columns of integers: a third band of every asset (the 64-bit extremes among its
        # values), and three rows already there, kept once.
        third = [-(2**63) + i if i % 2 else 2**63 - 1 - i for i in range(N)]
        asset_ids = [ids[f"{i:064x}"] for i in range(N)]
        insert_int_columns(db, PhashBand.__table__, {
            "dataset_id": dataset.id, "band_no": [2] * N + [b["band_no"] for b in bands[:3]],
            "value": third + [b["value"] for b in bands[:3]],
            "asset_id": asset_ids + [b["asset_id"] for b in bands[:3]]})
        update_rows(db, Feature, [{"asset_id": ids[f"{i:064x}"], "width": i} for i in range(N)])
        # Floats JSON has no words for (SQLite keeps no NaN: only PostgreSQL is asked).
        scores = [0.1, float("inf"), float("-inf"), None] + (
            [float("nan")] if url.startswith("postgresql") else [])
        update_rows(db, Item, [{"id": item_ids[i], "dedup_score": v}
                               for i, v in enumerate(scores)])
    with session_scope(engine) as db:
        rows = db.execute(
            select(Item.ordinal, Item.status, Item.reason, Item.detail, Item.caption,
                   Item.meta, Item.ingested_at, Asset.pack_offset, Feature.phash,
                   Feature.thumb, Feature.width)
            .outerjoin(Asset, Asset.id == Item.asset_id)
            .outerjoin(Feature, Feature.asset_id == Asset.id)
            .where(Item.job_id == job.id).order_by(Item.ordinal)).all()
        bands = db.execute(select(PhashBand.band_no, PhashBand.value, PhashBand.asset_id)
                           .where(PhashBand.dataset_id == dataset.id)).all()
        scores = db.scalars(select(Item.dedup_score).where(Item.job_id == job.id)
                            .order_by(Item.ordinal).limit(len(scores))).all()
    return {"items": [tuple(_naive_utc(v) for v in r) for r in rows], "bands": len(bands),
            "scores": scores,
            "third": sorted((a - asset_ids[0], v) for b, v, a in bands if b == 2),
            "expected_third": sorted((a - asset_ids[0], v) for a, v in zip(asset_ids, third,
                                                                          strict=True))}


def _naive_utc(value):
    """SQLite gives timestamps back without their zone."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def test_bulk_writes_on_postgresql_match_sqlite(pg_url, tmp_path):
    from autods.db.session import upgrade

    sqlite_url = f"sqlite:///{tmp_path / 'bulk.sqlite'}"
    upgrade(sqlite_url)
    on_pg, on_sqlite = _write_and_read(pg_url), _write_and_read(sqlite_url)
    assert on_pg["bands"] == on_sqlite["bands"] == 3 * N
    assert on_pg["third"] == on_sqlite["third"] == on_pg["expected_third"]
    assert on_pg["items"] == on_sqlite["items"]
    assert on_pg["scores"][:4] == on_sqlite["scores"] == [0.1, float("inf"), float("-inf"), None]
    assert math.isnan(on_pg["scores"][4])
    first, fourth = on_pg["items"][1], on_pg["items"][4]
    assert first[1:5] == ("ingested", None, None, "caption 1\twith a tab")
    assert first[5] == {"k": [1, "é"]} and first[7] == 10 and first[9] == bytes([1, 0, 255])
    assert fourth[1:4] == ("failed", "corrupt_image", "broken\nline")
    assert fourth[7] is None and first[8] == -(2**63) + 1 and first[10] == 1
