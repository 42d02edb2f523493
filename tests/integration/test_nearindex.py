"""The dataset's band index in the database: what the batch step adds, what it lays out
again as the dataset grows (on PostgreSQL and SQLite alike), and what lookups find.

Every check compares with Python: the rows are those ``band_rows`` gives each published
image in the dataset's current layout, and a lookup finds every published image within
the bands' distances of a query, by brute force over the hashes.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import select, update

from autods.core import bandindex
from autods.core.dedup import Candidate
from autods.core.hashing import hamming
from autods.core.nearimage import CHECK_RADIUS, band_rows
from autods.db.models import Asset, Chunk, Dataset, Feature, Item, Job, PhashBand, Shard
from autods.db.session import engine_for, session_scope, upgrade
from autods.pipeline import nearindex
from tests.integration.conftest import new_dataset

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
K = 4


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    if request.param == "postgresql":
        return engine_for(request.getfixturevalue("pg_url"))
    url = f"sqlite:///{tmp_path / 'bands.sqlite'}"
    upgrade(url)
    return engine_for(url)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class _Dataset:
    """A dataset whose images are published in batches, as the batch step does."""

    def __init__(self, engine, band_size: int | None = bandindex.MIN_PLAN_SIZE) -> None:
        self.engine = engine
        self.rng = random.Random(7)
        self.hashes: dict[int, tuple[int, int]] = {}  # asset -> (pHash, check), signed
        self.doubled: list[bool] = []  # what each batch step's add_published said
        with session_scope(engine) as db:
            ds = new_dataset(db, near_k=K, band_k=K, band_size=band_size)
            job = Job(dataset_id=ds.id, status="running", sources=[], params={},
                      fingerprint="f", n_items=0, n_chunks=0, n_batches=0, created_at=NOW)
            db.add(job)
            db.flush()
            self.id, self.job = ds.id, job.id

    def store(self, n: int, near: list[int] | None = None) -> list[int]:
        """n new images (the first ones near copies of ``near``'s hashes), not published."""
        near = near or []
        ids = []
        with session_scope(self.engine) as db:
            for i in range(n):
                if i < len(near):
                    base = self.hashes[near[i]]
                    phash = _signed(base[0] & (2**64 - 1) ^ (1 << 3 | 1 << 30 | 1 << 60))
                    check = _signed(base[1] & (2**64 - 1) ^ (1 << 11))
                else:
                    phash = _signed(self.rng.getrandbits(64))
                    check = _signed(self.rng.getrandbits(64))
                asset = Asset(dataset_id=self.id, sha256=f"{self.rng.getrandbits(256):064x}",
                              modality="image", mime="image/png", ext="png", nbytes=1,
                              storage_key="p", created_at=NOW)
                db.add(asset)
                db.flush()
                db.add(Feature(asset_id=asset.id, phash=phash, check_hash=check,
                               thumb=bytes(256)))
                self.hashes[asset.id] = (phash, check)
                ids.append(asset.id)
        return ids

    def publish(self, assets: list[int]) -> None:
        """As a batch step: the batch's chunk, its items and a shard, then the index."""
        with session_scope(self.engine) as db:
            batch = len(self.doubled)
            db.add(Chunk(job_id=self.job, chunk_no=batch, batch_no=batch,
                         first_ordinal=min(assets), n_items=len(assets)))
            db.add(Shard(dataset_id=self.id, job_id=self.job, batch_no=batch,
                         name=f"shard-{batch:06d}", modality="image", ext="png",
                         created_at=NOW))
            for asset_id in assets:
                item = Item(job_id=self.job, ordinal=asset_id, chunk_no=batch,
                            modality="image", uri=f"file:///{asset_id}", status="published",
                            asset_id=asset_id, shard_name=f"shard-{batch:06d}")
                db.add(item)
                db.flush()
                db.execute(update(Asset).where(Asset.id == asset_id)
                           .values(kept_item_id=item.id))
            dataset = db.get(Dataset, self.id, with_for_update=True)
            self.doubled.append(nearindex.add_published(
                db, dataset, [(a, *self.hashes[a]) for a in assets]))

    def index(self) -> tuple[Dataset, set[tuple[int, int, int]]]:
        with session_scope(self.engine) as db:
            dataset = db.get(Dataset, self.id)
            db.expunge(dataset)
            rows = set(db.execute(select(PhashBand.band_no, PhashBand.value,
                                         PhashBand.asset_id)
                                  .where(PhashBand.dataset_id == self.id)).tuples())
        return dataset, rows

    def expected_rows(self, dataset: Dataset, published: list[int]) -> set:
        if not nearindex.indexed(dataset):
            return set()
        plan = nearindex.layouts(dataset)
        return {(n, v, a) for a in published
                for n, v in band_rows(*self.hashes[a], plan)}


@pytest.mark.parametrize("lookup", ["bands", "published"])
def test_published_images_are_indexed_and_laid_out_again_as_the_dataset_doubles(
        engine, monkeypatch, lookup):
    # Comparisons made dear plan wider bands from a few images on: the layout changes
    # while the test's dataset doubles from 2 to 64 images.
    monkeypatch.setattr(bandindex, "MIN_PLAN_SIZE", 2)
    monkeypatch.setattr(bandindex, "DB_COMPARE_COST", 3e3)
    monkeypatch.setattr(nearindex, "INDEX_FROM", 8)  # no rows while planned for 2 and 4
    monkeypatch.setattr(nearindex, "_PER_INSERT", 3)  # batches' rows in several statements
    ds = _Dataset(engine, band_size=2)
    stored_only = ds.store(3)  # stored but never published: never in the index
    published: list[int] = []
    layouts_seen, row_counts = set(), []
    for batch in range(6):
        assets = ds.store(2 ** batch, near=published[-2:])
        ds.publish(assets)
        published += assets
        dataset, rows = ds.index()
        assert dataset.banded == len(published)
        assert dataset.band_size == bandindex.plan_size(len(published))
        assert rows == ds.expected_rows(dataset, published)
        assert not {a for *_, a in rows} & set(stored_only)
        layouts_seen.add(nearindex.layouts(dataset))
        row_counts.append(len(rows))
    assert len(layouts_seen) >= 3  # laid out again at least twice
    # Indexed from a plan for 8 images on, the images published before included.
    assert row_counts[:2] == [0, 0] and min(row_counts[2:]) >= 7 * 2
    # Published 1, 3, 7, ... 63 against plans for 2, 4, ... 64: doubled every time but the first.
    assert ds.doubled == [False] + [True] * 5

    # A lookup finds every published image within k of a query's pHash or within
    # CHECK_RADIUS of its check hash (near copies of published images included), and no
    # other: images that only share a band value with a query are left out. So does
    # reading every published image's hashes, the way a batch with more probes than the
    # index has images looks up.
    monkeypatch.setattr(nearindex, "SCAN_ROW_COST", 0 if lookup == "published" else 10**9)
    queries = [ds.hashes[a] for a in published[::5]]
    queries = [(p ^ (1 << 5 | 1 << 40), c ^ 0b101) for p, c in queries]
    queries += [(_signed(random.Random(i).getrandbits(64)), 0) for i in range(20)]
    # Sharing the first pHash band's value with a published image, K + 3 bits away.
    first_band = nearindex.layouts(dataset)[0][0][0]
    outside = [b for b in range(64) if b not in first_band][:K + 3]
    far = [_signed(ds.hashes[a][0] & (2**64 - 1) ^ sum(1 << b for b in outside))
           for a in published[1::7]]
    queries += [(p, 0) for p in far]
    candidates = [Candidate(i, i, -i, p, c, bytes(256)) for i, (p, c) in enumerate(queries)]
    with session_scope(engine) as db:
        dataset = db.get(Dataset, ds.id)
        found = {(phash, check) for _, phash, check, _ in
                 nearindex.neighbours(db, dataset, candidates)}
    within = {ds.hashes[a] for a in published for p, c in queries
              if hamming(p, ds.hashes[a][0]) <= K or hamming(c, ds.hashes[a][1]) <= CHECK_RADIUS}
    assert len(within) >= len(published[::5]) and found == within


@pytest.mark.parametrize("index_from", [0, nearindex.INDEX_FROM])
def test_a_dataset_indexed_before_layouts_counts_its_images_once_and_is_laid_out_again(
        engine, monkeypatch, index_from):
    """Laid out again in its planned layout, or left without rows while that plan is
    for fewer than ``INDEX_FROM`` images."""
    monkeypatch.setattr(nearindex, "INDEX_FROM", index_from)
    ds = _Dataset(engine, band_size=None)
    first = ds.store(5)
    with session_scope(engine) as db:  # what older code wrote: exact bands of every image
        legacy = nearindex.layouts(db.get(Dataset, ds.id))
        db.execute(PhashBand.__table__.insert(), [
            {"dataset_id": ds.id, "band_no": n, "value": v, "asset_id": a}
            for a in first for n, v in band_rows(*ds.hashes[a], legacy)])
    assert legacy == (bandindex.contiguous(bandindex.exact(K)),
                      bandindex.contiguous(bandindex.exact(CHECK_RADIUS)))
    ds.publish(first[:3])  # two of them were only stored
    more = ds.store(4)
    ds.publish(more)
    dataset, rows = ds.index()
    # Counted once at its first batch step (3), then added to (4); laid out again in
    # strided bands, which holds the published images only.
    assert (dataset.band_size, dataset.banded) == (bandindex.MIN_PLAN_SIZE, 7)
    assert nearindex.layouts(dataset) != legacy
    assert rows == ds.expected_rows(dataset, first[:3] + more)
    assert len(rows) == (0 if index_from else 7 * 10)  # five bands of each hash
    assert ds.doubled == [True, False]


def test_a_process_reads_the_published_hashes_once_then_only_those_published_since(
        engine, monkeypatch):
    """Lookups that read the published hashes, one after each batch step: each finds
    every published image within reach of its queries, and reads only the images of
    the batches published since the one before (by their shards)."""
    monkeypatch.setattr(nearindex, "SCAN_ROW_COST", 0)
    monkeypatch.setattr(nearindex, "WARM_ROW_COST", 0)
    monkeypatch.setattr(nearindex, "_read", type(nearindex._read)())
    reads: list[tuple[int | None, int]] = []
    published_by = nearindex._published

    def spy(db, dataset, since=None):
        for part in published_by(db, dataset, since):
            reads.append((since, len(part[0])))
            yield part

    monkeypatch.setattr(nearindex, "_published", spy)
    ds = _Dataset(engine)
    published: list[int] = []
    for batch, n in enumerate((5, 7, 3)):
        assets = ds.store(n, near=published[-2:])
        ds.publish(assets)
        published += assets
        queries = [ds.hashes[a] for a in published]
        queries = [(p ^ (1 << 5 | 1 << 40), c ^ 0b101) for p, c in queries]
        candidates = [Candidate(i, i, -i, p, c, bytes(256))
                      for i, (p, c) in enumerate(queries)]
        with session_scope(engine) as db:
            dataset = db.get(Dataset, ds.id)
            found = {(phash, check) for _, phash, check, _ in
                     nearindex.neighbours(db, dataset, candidates)}
        assert found == {ds.hashes[a] for a in published}, batch
    with session_scope(engine) as db:
        shards = db.scalars(select(Shard.id).where(Shard.dataset_id == ds.id)
                            .order_by(Shard.id)).all()
    # All 5 at first, then the 7 of the second batch's shard, then the 3 of the third.
    assert reads == [(None, 5), (shards[0], 7), (shards[1], 3)]
