"""A dataset's near-duplicate band index in the database (``phash_bands``): its published
images' pHash and check-hash bands, laid out for the dataset's size.

Exact bands would make a lookup's rows grow with the dataset (at k=4, N/8192 rows per
band value); ``bandindex`` plans wider bands probed within a radius for the size the
dataset has reached, and the index is laid out again each time the dataset doubles past
that size and the plan changes (for k=4: at 4k and 16k images, then not below 4M). A
dataset planned for fewer than ``INDEX_FROM`` images has no rows: its lookups read the
published hashes, which cost them no more than the index would.

Only the batch step writes it, under the dataset's row lock: the images it has just
published, computed in arrays from the hashes it has read (the same gathering of bits a
lookup's probes use) and written in one statement; and when the layout changes, the
whole index, computed by the database from the stored hashes, a statement per band.
Images that were stored but never published have no bands: a lookup only ever wants
published neighbours.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import cast, func, literal, literal_column, select
from sqlalchemy.dialects.postgresql import BIT

from autods.core import bandindex
from autods.core.dedup import Candidate
from autods.core.nearimage import (
    CHECK_BAND_BASE,
    CHECK_RADIUS,
    band_layouts,
    band_probes,
    band_values,
)
from autods.db.inlist import int_array, one_of
from autods.db.models import Asset, Chunk, Dataset, Feature, Item, PhashBand, Shard
from autods.db.upsert import dialect_insert, insert_int_columns

# Values per lookup statement where they go as a list (SQLite's parameters) or by id.
_PER_QUERY = 5000
#: Probes that cost about as much as reading one published image's hashes and matching
#: them in arrays: a batch whose lookups would probe more than this many times the index's
#: images reads them all instead. On SQLite at 50k images a probe took ~1.6 us, an image
#: read and matched ~6 us; on PostgreSQL, for a batch of 10k (920k probes), reading was
#: the faster at 50k images (0.43 s against 1.4 s) and still at 200k (1.5 s against 2.2 s).
SCAN_ROW_COST = 4
#: The same where this process has read the dataset's published hashes before and reads
#: only those published since (``_published_hashes``): matching them took ~1.2 us an image
#: at 1M (both hashes), where a probe of the index took 9.6 us (1.5 us at 50k).
WARM_ROW_COST = 0.5
# Published images' hashes read per part when they are all read.
_PER_READ = 50_000
# Datasets whose published hashes a process keeps between batch steps.
_KEPT_DATASETS = 4
# Published images whose band rows go in one statement.
_PER_INSERT = 10_000
#: The size a dataset's layout must be planned for before the index holds its rows.
#: Below (up to 2,048 published images), every lookup reads the published hashes, in
#: ~20 ms, and a batch step does not write ten rows per image it publishes (on
#: PostgreSQL, 80 ms of a 2,000-image batch step for rows no lookup would have read).
INDEX_FROM = 4096


def layouts(dataset: Dataset):
    """The dataset's pHash and check-hash bands as its layout plans them."""
    return band_layouts(dataset.index_k, dataset.band_size)


def indexed(dataset: Dataset) -> bool:
    """Whether the index holds the dataset's published images (in ``layouts``)."""
    return dataset.band_size is None or dataset.band_size >= INDEX_FROM


def neighbours(db, dataset: Dataset, candidates: Sequence[Candidate]
               ) -> Iterator[tuple[int, int, int | None, bytes | None]]:
    """(item, pHash, check hash, region print) of every published image within the
    index's distances of a candidate: pHash within ``index_k``, or check hash within
    ``CHECK_RADIUS``.

    A batch probes each band of the index with every value within the band's radius of
    each candidate's (46 values a hash at 50k images), and the probes also meet images
    that share a band value and nothing more: at 1M hashes, 15 per candidate and hash
    against about none within the distance. They are left out where the lookup runs,
    before their region prints are read: on PostgreSQL by the query itself (each probe
    carries the hash that probed it), elsewhere as the rows arrive. Only the images left
    are then read whole. While the index holds fewer images than a quarter of the probes
    a batch would send (a batch of 10k sends ~920k), reading every published image's
    hashes and matching them in arrays finds the same images in a fraction of the time:
    0.45 s against 2.2 s of probes at 50k images; so does a dataset too small to be
    ``indexed``. A process that has read them keeps them and then reads only what was
    published since: at 1M images, matching took 1.2 s where probing took 8.9 s and
    reading them all 5.7 s.
    """
    plan = layouts(dataset)
    looked_up = [c for c in candidates if c.phash is not None]
    row_cost = WARM_ROW_COST if _key(db, dataset) in _read else SCAN_ROW_COST
    if not indexed(dataset) or (dataset.band_size is not None and dataset.banded
                                * row_cost < _probe_count(looked_up, plan)):
        found = _within_published(db, dataset, looked_up, plan)
    else:
        found = _within_bands(db, dataset, looked_up, plan)
    ordered = sorted(found)
    for start in range(0, len(ordered), _PER_QUERY):
        yield from db.execute(
            select(Asset.kept_item_id, Feature.phash, Feature.check_hash, Feature.thumb)
            .join(Feature, Feature.asset_id == Asset.id)
            .where(one_of(db, Asset.id, ordered[start:start + _PER_QUERY]),
                   Asset.kept_item_id.is_not(None))).tuples()


def _probe_count(candidates: Sequence[Candidate], plan) -> int:
    """How many band values the candidates' lookups would probe."""
    per_hash = [sum(bandindex.ball(len(bits), radius) for bits, radius in layout)
                for layout in plan]
    return sum(per_hash[0] + (per_hash[1] if c.check is not None else 0) for c in candidates)


def _within_bands(db, dataset: Dataset, candidates: Sequence[Candidate], plan) -> set[int]:
    """Assets within reach of a candidate, by probing the band index one band at a time."""
    within = _within_postgresql if db.get_bind().dialect.name == "postgresql" else _within_rows
    found: set[int] = set()
    for band_no, values, hashes in band_probes(
            _unsigned([c.phash for c in candidates]),
            _unsigned([c.check for c in candidates if c.check is not None]), plan):
        column, radius = ((Feature.phash, dataset.index_k) if band_no < CHECK_BAND_BASE
                          else (Feature.check_hash, CHECK_RADIUS))
        found.update(within(db, dataset.id, band_no, values, hashes, column, radius))
    return found


def _within_published(db, dataset: Dataset, candidates: Sequence[Candidate], plan
                      ) -> set[int]:
    """The same assets, from every published image's hashes (``_published_hashes``)
    matched in arrays (``bandindex.within_any``)."""
    asset, phash, check, checked = _published_hashes(db, dataset)
    found = set(asset[bandindex.within_any(
        _unsigned([c.phash for c in candidates]), phash, plan[0], dataset.index_k)].tolist())
    queries = [c.check for c in candidates if c.check is not None]
    if queries and checked.any():
        hits = bandindex.within_any(_unsigned(queries), check[checked], plan[1], CHECK_RADIUS)
        found.update(asset[checked][hits].tolist())
    return found


@dataclass(frozen=True)
class _Read:
    """A dataset's published images' hashes as ``_published`` gives them, and the last of
    the dataset's shards (``Shard.id``) when they were read."""

    last_shard: int
    arrays: tuple[np.ndarray, ...]


# What this process has read, by database, dataset and the dataset's creation (a dataset
# made again under the same id is another); the latest ``_KEPT_DATASETS``.
_read: OrderedDict[tuple, _Read] = OrderedDict()


def _key(db, dataset: Dataset) -> tuple:
    return (db.get_bind().url.render_as_string(), dataset.id, dataset.created_at)


def _published_hashes(db, dataset: Dataset) -> tuple[np.ndarray, ...]:
    """Every published image's hashes (``_published``), the ones this process read
    before included: only those published since are read now.

    "Since" is by shard: every batch step that publishes images numbers new shards for
    them under the dataset's lock, so a dataset's shards are created (``Shard.id``) in
    the order their images were published. The last shard is read first and the images
    after it: an image published in between is read now and again next time, which
    ``within_any`` answers the same (no image is missed)."""
    key = _key(db, dataset)
    last = db.scalar(select(func.coalesce(func.max(Shard.id), 0))
                     .where(Shard.dataset_id == dataset.id))
    known = _read.pop(key, None)
    if known is None or known.last_shard > last:  # never read, or a database restored
        parts = list(_published(db, dataset))
    else:
        parts = [known.arrays, *_published(db, dataset, since=known.last_shard)]
    arrays = (tuple(np.concatenate(a) for a in zip(*parts, strict=True)) if parts
              else _arrays([]))
    _read[key] = _Read(last, arrays)
    while len(_read) > _KEPT_DATASETS:
        _read.popitem(last=False)
    return arrays


def _published(db, dataset: Dataset, since: int | None = None
               ) -> Iterator[tuple[np.ndarray, ...]]:
    """Every published image's asset id, pHash and check hash (unsigned; 0 where it has
    none), and whether it has a check hash, as arrays, in parts of ``_PER_READ`` rows
    read in one query: 24 bytes an image, not a row object. ``since``: only the images
    published in the dataset's shards after that one (``Shard.id``), found through the
    chunks of the batches that planned those shards."""
    query = (select(Asset.id, Feature.phash, Feature.check_hash)
             .join(Feature, Feature.asset_id == Asset.id)
             .where(*_published_images(dataset, Feature.phash)))
    if since is not None:
        batches = (select(Shard.job_id, Shard.batch_no)
                   .where(Shard.dataset_id == dataset.id, Shard.id > since).distinct()
                   .subquery())
        query = (query.join(Item, (Item.asset_id == Asset.id)
                            & (Item.id == Asset.kept_item_id))
                 .join(Chunk, (Chunk.job_id == Item.job_id) & (Chunk.chunk_no == Item.chunk_no))
                 .join(batches, (batches.c.job_id == Chunk.job_id)
                       & (batches.c.batch_no == Chunk.batch_no)))
    parts = db.execute(query.execution_options(yield_per=_PER_READ)).partitions()
    for part in parts:
        yield _arrays(part)


def _arrays(images: Sequence[tuple[int, int, int | None]]) -> tuple[np.ndarray, ...]:
    """(asset, pHash, check hash) rows as the arrays ``_published`` yields."""
    ids, phash, check = zip(*images, strict=True) if images else ((), (), ())
    return (np.array(ids, dtype=np.int64), _unsigned(phash),
            _unsigned([c or 0 for c in check]), np.array([c is not None for c in check],
                                                         dtype=bool))


def _unsigned(hashes: Sequence[int]) -> np.ndarray:
    """Signed 64-bit hashes, as columns hold them, as the unsigned bits arrays compare."""
    return np.asarray(hashes, dtype=np.int64).view(np.uint64)


def _within_postgresql(db, dataset_id: int, band_no: int, values: np.ndarray,
                       hashes: np.ndarray, column, radius: int) -> Iterator[int]:
    """Assets of one band within ``radius`` of the hash that probed them, in one query:
    the values and hashes go as two arrays, and the database compares the hashes."""
    probe = func.unnest(int_array(values.tolist()), int_array(hashes.tolist())
                        ).table_valued("value", "hash").render_derived()
    distance = func.bit_count(cast(column.op("#")(probe.c.hash), BIT(64)))
    return db.scalars(
        select(PhashBand.asset_id)
        .join(probe, PhashBand.value == probe.c.value)
        .join(Feature, Feature.asset_id == PhashBand.asset_id)
        .where(PhashBand.dataset_id == dataset_id, PhashBand.band_no == band_no,
               distance <= radius))


def _within_rows(db, dataset_id: int, band_no: int, values: np.ndarray, hashes: np.ndarray,
                 column, radius: int) -> Iterator[int]:
    """The same, comparing the hashes here, every stored hash with every hash that probed
    its value in one array operation: the dialect has no arrays to send pairs in. At 30k
    images a batch's lookups met about 100,000 rows a band, and a comparison per row in
    Python was most of the batch step."""
    probed, by = np.asarray(values, dtype=np.int64), np.asarray(hashes, dtype=np.int64)
    order = np.argsort(probed, kind="stable")
    probed, by = probed[order], by[order]
    distinct = np.unique(probed).tolist()
    for start in range(0, len(distinct), _PER_QUERY):
        rows = db.execute(
            select(PhashBand.value, column, PhashBand.asset_id)
            .join(Feature, Feature.asset_id == PhashBand.asset_id)
            .where(PhashBand.dataset_id == dataset_id, PhashBand.band_no == band_no,
                   one_of(db, PhashBand.value, distinct[start:start + _PER_QUERY]),
                   column.is_not(None))).all()
        if not rows:
            continue
        value, stored, asset = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
        # Each row against each probe of its value: probes lo..hi-1 in the sorted arrays.
        lo = np.searchsorted(probed, value, "left")
        n = np.searchsorted(probed, value, "right") - lo
        row = np.repeat(np.arange(len(value)), n)
        probe = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(n.sum())
        distance = np.bitwise_count((stored[row] ^ by[probe]).view(np.uint64))
        yield from asset[np.unique(row[distance <= radius])].tolist()


def add_published(db, dataset: Dataset, images: Sequence[tuple[int, int, int | None]]
                  ) -> bool:
    """Index the images a batch step has just published: (asset, pHash, check hash or
    None), the hashes as their columns hold them; they already name their item. Lay the
    whole index out again when the dataset outgrows its layout's plan (the first time
    when it grows ``indexed``). True when the dataset's published images doubled (the
    caller refreshes statistics)."""
    if dataset.band_size is None:
        # Indexed before layouts were planned: count what it holds once, this batch included.
        dataset.banded = db.scalar(select(func.count()).select_from(Asset)
                                   .join(Feature, Feature.asset_id == Asset.id)
                                   .where(*_published_images(dataset, Feature.phash)))
    else:
        dataset.banded += len(images)
    before, planned_for = (layouts(dataset), indexed(dataset)), dataset.band_size
    dataset.band_size = max(dataset.band_size or 0, bandindex.plan_size(dataset.banded))
    if (layouts(dataset), indexed(dataset)) != before:
        db.execute(PhashBand.__table__.delete().where(PhashBand.dataset_id == dataset.id))
        if indexed(dataset):
            _rebuild(db, dataset)
    elif images and indexed(dataset):
        _index(db, dataset, *_arrays(images))
    return dataset.band_size != planned_for


def _published_images(dataset: Dataset, column):
    return (Asset.dataset_id == dataset.id, Asset.kept_item_id.is_not(None),
            column.is_not(None))


def _rebuild(db, dataset: Dataset) -> None:
    """Band rows of all the dataset's published images, in its current layout, computed
    by the database from their features: 64-bit shifts and masks in one statement per
    band, no row through Python. For 120k images, 4.0 s on PostgreSQL and 1.5 s on SQLite
    against 6.2 s and 1.9 s reading their hashes and writing the rows ``_index`` makes."""
    insert = dialect_insert(db)
    phash_bands, check_bands = layouts(dataset)
    for column, base, plan in ((Feature.phash, 0, phash_bands),
                               (Feature.check_hash, CHECK_BAND_BASE, check_bands)):
        for n, (bits, _) in enumerate(plan):
            db.execute(insert(PhashBand).from_select(
                ["dataset_id", "band_no", "value", "asset_id"],
                select(literal(dataset.id), literal(base + n), _gathered(column, bits),
                       Asset.id)
                .join(Feature, Feature.asset_id == Asset.id)
                .where(*_published_images(dataset, column)))
                .on_conflict_do_nothing())


def _gathered(column, bits: tuple[int, ...]):
    """``bandindex.gather`` in SQL: a shift and a mask for a run of adjacent bits, else
    one term per bit. Literal shift counts and masks: PostgreSQL shifts a bigint by an
    integer only."""
    def lit(n: int):
        return literal_column(str(n))

    if len(bits) == 64:
        return column
    if bits == tuple(range(bits[0], bits[0] + len(bits))):
        return column.op(">>")(lit(bits[0])).op("&")(lit((1 << len(bits)) - 1))
    terms = [column.op(">>")(lit(b)).op("&")(lit(1)).op("<<")(lit(j))
             for j, b in enumerate(bits)]
    value = terms[0]
    for term in terms[1:]:
        value = value.op("|")(term)
    return value


def _index(db, dataset: Dataset, asset: np.ndarray, phash: np.ndarray, check: np.ndarray,
           checked: np.ndarray) -> None:
    """Band rows of the images a batch step publishes, in the dataset's current layout,
    computed here from the hashes the step has read (``nearimage.band_values``, the
    values lookups probe) and written in one statement per ``_PER_INSERT`` images (at
    most ~100,000 rows, sent as three lists of ints). ``_rebuild``'s statements,
    selecting the batch's images by id, took 0.18 s of a 2,000-image batch step, as long
    as the rest of the step; for 10,000 images at 40k, 0.65 s against 0.39 s here on
    PostgreSQL, 0.31 s against 0.12 s on SQLite."""
    for start in range(0, len(asset), _PER_INSERT):
        part = slice(start, start + _PER_INSERT)
        has_check = checked[part]
        bands, values, owners = [], [], []
        for band_no, band in band_values(phash[part], check[part][has_check],
                                         layouts(dataset)):
            values.append(band)
            owners.append(asset[part] if band_no < CHECK_BAND_BASE
                          else asset[part][has_check])
            bands.append(np.full(len(band), band_no, dtype=np.int64))
        if values:
            insert_int_columns(db, PhashBand.__table__, {
                "dataset_id": dataset.id, "band_no": np.concatenate(bands).tolist(),
                "value": np.concatenate(values).tolist(),
                "asset_id": np.concatenate(owners).tolist()})
