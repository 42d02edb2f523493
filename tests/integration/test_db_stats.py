"""After ``analyze``, PostgreSQL plans ingest's content lookup on a grown dataset by the
index, even as the generic plan of a prepared statement; when the batch step asks for it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text

from autods.db.models import Asset
from autods.db.session import engine_for, session_scope, upgrade
from autods.db.stats import ANALYZE_FROM, analyze, refresh
from autods.db.upsert import insert_ignore
from tests.integration.conftest import PG_ADMIN, new_dataset

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


def _reltuples(db) -> dict[str, float]:
    return dict(db.execute(text(
        "SELECT relname, reltuples FROM pg_class WHERE relname IN"
        " ('assets', 'features', 'items', 'phash_bands')")).tuples().all())


@pytest.fixture
def new_database() -> Iterator[str]:
    """A database of its own, migrated: its tables have never had statistics."""
    name = f"autods_stats_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    upgrade(url)
    yield url
    engine_for(url).dispose()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_statistics_come_once_for_small_datasets_then_as_a_dataset_doubles(new_database):
    """A new database's tables get statistics at the first refresh whatever the size;
    after that a small dataset's doubling leaves them, and one of ``ANALYZE_FROM``
    published images refreshes them."""
    engine = engine_for(new_database)

    def add_assets(start: int, n: int) -> None:
        with session_scope(engine) as db:
            dataset = new_dataset(db)
            insert_ignore(db, Asset, [
                {"dataset_id": dataset.id, "sha256": f"{i:064x}", "modality": "image",
                 "mime": "image/png", "ext": "png", "nbytes": 1, "storage_key": "p",
                 "created_at": NOW} for i in range(start, start + n)],
                conflict=("dataset_id", "sha256"))

    def refreshed_at(published: int) -> dict[str, float]:
        with session_scope(engine) as db:
            refresh(db, published)
        with session_scope(engine) as db:
            return _reltuples(db)

    with session_scope(engine) as db:
        assert set(_reltuples(db).values()) == {-1}  # never analyzed
    add_assets(0, 500)
    first = refreshed_at(4)
    assert first["assets"] == 500 and min(first.values()) >= 0
    add_assets(500, 1500)
    assert refreshed_at(ANALYZE_FROM // 2) == first
    assert refreshed_at(ANALYZE_FROM)["assets"] == 2000
