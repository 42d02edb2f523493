"""After ``analyze``, PostgreSQL plans ingest's content lookup on a grown dataset by the
index, even as the generic plan of a prepared statement."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from autods.db.models import Asset
from autods.db.session import engine_for, session_scope
from autods.db.stats import analyze
from autods.db.upsert import insert_ignore
from tests.integration.conftest import new_dataset

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
N = 20_000


def test_analyze_lets_the_generic_plan_of_a_content_lookup_use_the_index(pg_url):
    engine = engine_for(pg_url)
    with session_scope(engine) as db:
        dataset = new_dataset(db)
        insert_ignore(db, Asset, [
            {"dataset_id": dataset.id, "sha256": f"{i:064x}", "modality": "image",
             "mime": "image/png", "ext": "png", "nbytes": 1, "storage_key": "p",
             "created_at": NOW} for i in range(N)], conflict=("dataset_id", "sha256"))
        dataset_id = dataset.id
    with session_scope(engine) as db:
        analyze(db)
    with session_scope(engine) as db:
        assert db.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'assets'")) >= N
        db.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        params = ", ".join(f"${i}" for i in range(2, 258))
        db.execute(text(f"PREPARE lookup (int, {', '.join(['varchar'] * 256)}) AS "
                        f"SELECT sha256 FROM assets WHERE dataset_id = $1 "
                        f"AND sha256 IN ({params})"))
        values = ", ".join([str(dataset_id)] + [f"'{i:064x}'" for i in range(0, 2560, 10)])
        plan = "\n".join(db.scalars(text(f"EXPLAIN EXECUTE lookup ({values})")))
        db.execute(text("DEALLOCATE lookup"))
    # The hashes are part of the index condition, not a filter over the dataset's rows.
    index_cond = [line for line in plan.splitlines() if "Index Cond" in line]
    assert index_cond and "sha256" in index_cond[0], plan
    assert "Filter" not in plan, plan
