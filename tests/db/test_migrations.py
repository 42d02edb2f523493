"""Migration 0004 moves chunk-stage timestamps to rows and back, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from autods.db.session import engine_for

STAMP = "2026-11-30 12:00:00+00:00"


def _alembic(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location",
                        str(Path(__file__).parents[2] / "autods" / "db" / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.sqlite'}"
        return
    name = f"autods_mig_{uuid.uuid4().hex[:10]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    engine_for.cache_clear()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rows(engine, query: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(query))]


def _dataset(conn) -> None:
    conn.execute(sa.text("INSERT INTO datasets (id, name, output_url, near_k, next_shard_no,"
                         " created_at) VALUES (1, 'd', 'file:///o', 4, 0, :t)"), {"t": STAMP})


def test_chunk_stage_columns_become_rows_and_come_back(url):
    cfg = _alembic(url)
    command.upgrade(cfg, "0003")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _dataset(conn)
        conn.execute(sa.text("INSERT INTO jobs (id, dataset_id, status, sources, params,"
                             " fingerprint, n_items, n_chunks, n_batches, created_at) VALUES"
                             " (1, 1, 'running', '[]', '{}', 'f', 4, 2, 1, :t)"), {"t": STAMP})
        conn.execute(sa.text(
            "INSERT INTO chunks (id, job_id, chunk_no, batch_no, first_ordinal, n_items,"
            " ingested_at, preprocessed_at, embedded_at, labelled_at) VALUES"
            " (1, 1, 0, 0, 0, 2, :t, :t, :t, NULL), (2, 1, 1, 0, 2, 2, :t, NULL, NULL, NULL)"),
            {"t": STAMP})
    engine.dispose()

    command.upgrade(cfg, "head")

    engine = sa.create_engine(url)
    assert sorted(_rows(engine, "SELECT chunk_id, stage FROM chunk_stages")) == [
        (1, "embed"), (1, "ingest"), (1, "preprocess"), (2, "ingest")]
    columns = {c["name"] for c in sa.inspect(engine).get_columns("chunks")}
    assert not columns & {"ingested_at", "preprocessed_at", "embedded_at", "labelled_at"}
    assert "ready_at" in {c["name"] for c in sa.inspect(engine).get_columns("batches")}
    engine.dispose()

    command.downgrade(cfg, "0003")

    engine = sa.create_engine(url)
    back = _rows(engine, "SELECT id, ingested_at IS NOT NULL, preprocessed_at IS NOT NULL,"
                         " embedded_at IS NOT NULL, labelled_at IS NOT NULL FROM chunks"
                         " ORDER BY id")
    assert [tuple(bool(v) for v in r[1:]) for r in back] == [
        (True, True, True, False), (True, False, False, False)]
    engine.dispose()


def test_band_indexes_keep_their_rows_and_lose_their_foreign_keys(url):
    cfg = _alembic(url)
    command.upgrade(cfg, "0009")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _dataset(conn)
        conn.execute(sa.text("INSERT INTO assets (id, dataset_id, sha256, modality, mime, ext,"
                             " nbytes, storage_key, created_at) VALUES"
                             " (7, 1, 'ab', 'image', 'image/png', 'png', 3, 'raw/ab.png', :t)"),
                     {"t": STAMP})
        for table in ("phash_bands", "minhash_bands"):
            conn.execute(sa.text(f"INSERT INTO {table} VALUES (1, 0, 42, 7), (1, 3, -5, 7)"))
    engine.dispose()

    command.upgrade(cfg, "head")

    engine = engine_for(url)  # the application's engine: foreign keys enforced on SQLite
    with engine.begin() as conn:
        for table in ("phash_bands", "minhash_bands"):
            assert sorted(_rows(engine, f"SELECT * FROM {table}")) == [(1, 0, 42, 7),
                                                                       (1, 3, -5, 7)]
            assert not sa.inspect(conn).get_foreign_keys(table)
            conn.execute(sa.text(f"INSERT INTO {table} VALUES (2, 1, 1, 99)"))  # no check
        assert _rows(engine, "SELECT storage_key, pack_offset FROM assets") == [
            ("raw/ab.png", None)]
    engine.dispose()
    engine_for.cache_clear()

    command.downgrade(cfg, "0009")  # rows of no asset cannot come back under the keys

    engine = sa.create_engine(url)
    assert sorted(_rows(engine, "SELECT * FROM phash_bands")) == [(1, 0, 42, 7), (1, 3, -5, 7)]
    assert len(sa.inspect(engine).get_foreign_keys("phash_bands")) == 2
    engine.dispose()


def test_a_planned_band_layout_goes_back_to_exact_bands_of_the_published_images(url):
    from autods.core import bandindex
    from autods.core.nearimage import band_layouts, band_rows

    cfg = _alembic(url)
    command.upgrade(cfg, "head")
    engine = sa.create_engine(url)
    phash, check = -(2**63) + 12345, 0x0F0F_0F0F_0F0F_0F0F
    with engine.begin() as conn:
        _dataset(conn)
        conn.execute(sa.text("UPDATE datasets SET band_k = 4, band_size = 32768, banded = 1"))
        for asset_id, kept in ((7, None), (8, 1)):
            conn.execute(sa.text(
                "INSERT INTO assets (id, dataset_id, sha256, modality, mime, ext, nbytes,"
                " storage_key, kept_item_id, created_at) VALUES (:a, 1, :s, 'image',"
                " 'image/png', 'png', 3, 'p', :k, :t)"),
                {"a": asset_id, "s": f"{asset_id:064x}", "k": kept, "t": STAMP})
            conn.execute(sa.text("INSERT INTO features (asset_id, phash, check_hash) VALUES"
                                 " (:a, :p, :c)"), {"a": asset_id, "p": phash, "c": check})
        planned = band_rows(phash, check, band_layouts(4, 32768))  # three bands of each
        conn.execute(sa.text("INSERT INTO phash_bands VALUES (1, :n, :v, 8)"),
                     [{"n": n, "v": v} for n, v in planned])
    engine.dispose()

    command.downgrade(cfg, "0010")

    engine = sa.create_engine(url)
    older = bandindex.contiguous(bandindex.exact(4))
    exact = [(n, v) for n, v in enumerate(bandindex.rows(phash, older))]
    exact += [(100 + n, v) for n, v in enumerate(bandindex.rows(check, older))]
    assert len(planned) == 6 and len(exact) == 10
    # The published image (8) only, in the layout older code reads.
    assert sorted(_rows(engine, "SELECT band_no, value, asset_id FROM phash_bands")) == sorted(
        (n, v, 8) for n, v in exact)
    assert "band_size" not in {c["name"] for c in sa.inspect(engine).get_columns("datasets")}
    engine.dispose()
