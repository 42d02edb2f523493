"""A dataset's near-duplicate band index in the database (``phash_bands``): its published
images' pHash and check-hash bands, laid out for the dataset's size.

Exact bands would make a lookup's rows grow with the dataset (at k=4, N/8192 rows per
band value); ``bandindex`` plans wider bands probed within a radius for the size the
dataset has reached, and the index is laid out again each time the dataset doubles past
that size and the plan changes (for k=4: at 4k and 16k images, then not below 4M).

Only the batch step writes it, under the dataset's row lock: the images it has just
published, and when the layout changes the whole index, rebuilt by the database from the
published images' features in one statement per band. Images that were stored but never
published have no bands: a lookup only ever wants published neighbours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from sqlalchemy import func, insert, literal, literal_column, select

from autods.core import bandindex
from autods.core.dedup import Candidate
from autods.core.nearimage import CHECK_BAND_BASE, band_layouts, band_probes, band_rows
from autods.db.inlist import one_of
from autods.db.models import Asset, Dataset, Feature, PhashBand
from autods.db.upsert import insert_ignore

# Values per lookup statement: one array parameter, an index range scan each.
_PER_QUERY = 5000


class Published(NamedTuple):
    """An image the batch step has just published, as the index needs it."""

    asset_id: int
    phash: int
    check: int | None


def layouts(dataset: Dataset):
    """The dataset's pHash and check-hash bands as its index holds them now."""
    return band_layouts(dataset.index_k, dataset.band_size)


def neighbours(db, dataset: Dataset, candidates: Sequence[Candidate]
               ) -> Iterator[tuple[int, int, int | None, bytes | None]]:
    """(item, pHash, check hash, region print) of each published image sharing a probed
    band value with a candidate: every one within the bands' distances, and some more."""
    plan = layouts(dataset)
    per_band: dict[int, set[int]] = defaultdict(set)
    for c in candidates:
        if c.phash is not None:
            for n, values in band_probes(c.phash, c.check, plan):
                per_band[n].update(values)
    # One band at a time, so each lookup is a range of the (dataset, band, value) index
    # rather than a row-value list the planner may answer with a scan.
    seen: set[int] = set()
    for band_no, values in sorted(per_band.items()):
        ordered = sorted(values)
        for start in range(0, len(ordered), _PER_QUERY):
            rows = db.execute(
                select(Asset.kept_item_id, Feature.phash, Feature.check_hash, Feature.thumb)
                .join(PhashBand, PhashBand.asset_id == Asset.id)
                .join(Feature, Feature.asset_id == Asset.id)
                .where(PhashBand.dataset_id == dataset.id, PhashBand.band_no == band_no,
                       one_of(db, PhashBand.value, ordered[start:start + _PER_QUERY]),
                       Asset.kept_item_id.is_not(None))
            ).all()
            for item_id, phash, check, thumb in rows:
                if item_id not in seen:
                    seen.add(item_id)
                    yield item_id, phash, check, thumb


def add_published(db, dataset: Dataset, published: Sequence[Published]) -> bool:
    """Index the images a batch step has just published (their assets already name their
    item); lay the whole index out again when the dataset outgrows its layout's plan.
    True when the dataset's published images doubled (the caller refreshes statistics)."""
    if dataset.band_size is None:
        # Indexed before layouts were planned: count what it holds once, this batch included.
        dataset.banded = db.scalar(select(func.count()).select_from(Asset)
                                   .join(Feature, Feature.asset_id == Asset.id)
                                   .where(*_published_images(dataset, Feature.phash)))
    else:
        dataset.banded += len(published)
    before, planned_for = layouts(dataset), dataset.band_size
    dataset.band_size = max(dataset.band_size or 0, bandindex.plan_size(dataset.banded))
    plan = layouts(dataset)
    if plan != before:
        _rebuild(db, dataset)
    else:
        insert_ignore(db, PhashBand, [
            {"dataset_id": dataset.id, "band_no": n, "value": v, "asset_id": p.asset_id}
            for p in published for n, v in band_rows(p.phash, p.check, plan)],
            conflict=("dataset_id", "band_no", "value", "asset_id"))
    return dataset.band_size != planned_for


def _published_images(dataset: Dataset, column):
    return (Asset.dataset_id == dataset.id, Asset.kept_item_id.is_not(None),
            column.is_not(None))


def _rebuild(db, dataset: Dataset) -> None:
    """The dataset's index in its current layout, computed by the database from the
    published images' features (64-bit shifts and masks, no row through Python)."""
    db.execute(PhashBand.__table__.delete().where(PhashBand.dataset_id == dataset.id))
    phash_bands, check_bands = layouts(dataset)
    for column, base, plan in ((Feature.phash, 0, phash_bands),
                               (Feature.check_hash, CHECK_BAND_BASE, check_bands)):
        for n, (bits, _) in enumerate(plan):
            value = _gathered(column, bits)
            db.execute(insert(PhashBand).from_select(
                ["dataset_id", "band_no", "value", "asset_id"],
                select(literal(dataset.id), literal(base + n), value, Asset.id)
                .join(Feature, Feature.asset_id == Asset.id)
                .where(*_published_images(dataset, column))))


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
