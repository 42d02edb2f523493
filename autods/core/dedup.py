"""Duplicate resolution for one batch, in input order.

Which member of a duplicate group survives never depends on timing: candidates are visited
in the job's input order and compared only with what is already published (earlier
batches, earlier jobs) or earlier in this batch. A re-run, a resumed run and a run with more
workers therefore publish the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, partial
from itertools import combinations
from math import comb
from operator import is_not

from autods.core.hashing import hamming
from autods.core.records import ItemStatus


@dataclass(slots=True)
class Candidate:
    """An ingested item waiting for its verdict."""

    item_id: int
    ordinal: int
    asset_id: int
    phash: int | None


@dataclass(slots=True)
class Verdict:
    item_id: int
    status: ItemStatus
    duplicate_of: int | None = None
    rule: str | None = None


_MASK64 = (1 << 64) - 1
# Comparing a stored hash costs roughly twice a probe that finds an empty bucket (CPython
# 3.11): the weight that trades wider, more selective bands against more probes.
_COMPARE_COST = 2.0
# Indexes are planned for at least this many hashes and re-planned each time they double.
_MIN_PLAN_SIZE = 1024
# Found buckets are told apart with ``is not None`` since ref 0 is falsy.
_is_not_none = partial(is_not, None)


def _multi_index_bands(k: int, size: int) -> tuple[tuple[int, int, int], ...]:
    """(lo, hi, radius) bands for finding every hash within distance k among ~size hashes.

    Multi-index hashing (Norouzi et al., "Fast Search in Hamming Space with Multi-Index
    Hashing"): with m bands and radii r_i such that sum(r_i + 1) > k, a pair within distance
    k differs in at most r_i bits in some band i (otherwise it would differ in at least
    sum(r_i + 1) bits), so probing each band's table with every value within r_i of the
    query's band value finds it.

    This is not ``hashing.band_slices``: PostgreSQL looks bands up by equality so that each
    lookup is an index range scan, hence k+1 bands with radius 0. For k=4 those are 12-13 bit
    bands, each value shared by N/8192 hashes or more, so a lookup compares a fixed share of
    the index once it holds more than a few thousand. In memory a probe is one dict lookup,
    so wider bands probed within a radius stay selective: m is the one with the least
    expected probes plus weighted comparisons (``_COMPARE_COST``) for uniformly spread
    hashes at this size. For k=4 that is the same 5 exact bands up to 16k hashes, 4 bands of
    16 bits with radii 1, 0, 0, 0 up to 32k, then 3 bands of 21-22 bits with radii 1, 1, 0:
    46 probes and ~17 comparisons per lookup at 1M.
    """
    def cost(m: int) -> float:
        return sum(_ball(hi - lo, r) * (1 + _COMPARE_COST * size / 2 ** (hi - lo))
                   for lo, hi, r in _split(k, m))

    return _split(k, min(range(1, min(k + 1, 64) + 1), key=cost))


def _split(k: int, m: int) -> tuple[tuple[int, int, int], ...]:
    """m near-equal contiguous bands; the k mod m + 1 widest get radius floor(k/m) and the
    rest one less, the smallest radii whose sum(r_i + 1) still exceeds k."""
    edges = [round(i * 64 / m) for i in range(m + 1)]
    slices = list(zip(edges[:-1], edges[1:], strict=True))
    radius, extra = divmod(k, m)
    widest_first = sorted(range(m), key=lambda i: slices[i][0] - slices[i][1])
    wide = set(widest_first[:extra + 1])
    return tuple((lo, hi, radius if i in wide else radius - 1)
                 for i, (lo, hi) in enumerate(slices))


def _ball(width: int, radius: int) -> int:
    """How many values lie within ``radius`` bits of one ``width``-bit value."""
    return sum(comb(width, i) for i in range(min(radius, width) + 1))


@cache
def _flips(width: int, radius: int) -> tuple[int, ...]:
    """Every XOR mask of at most ``radius`` set bits among ``width``: one probe each."""
    return tuple(sum(1 << bit for bit in bits) for r in range(min(radius, width) + 1)
                 for bits in combinations(range(width), r))


class _BandTable:
    """One band of the multi-index: refs by the band's bits, probed within the band's radius.

    A bucket is a bare ref until a second ref shares its value: bands are chosen wide enough
    that most values hold one hash, and a list apiece would add half again to the memory of
    a 1M-hash index (~550 MB instead of ~360 MB).
    """

    __slots__ = ("buckets", "flips", "mask", "shift")

    def __init__(self, lo: int, hi: int, radius: int) -> None:
        self.shift = lo
        self.mask = (1 << (hi - lo)) - 1
        self.flips = _flips(hi - lo, radius)
        self.buckets: dict[int, int | list[int]] = {}

    def add(self, ref: int, unsigned: int) -> None:
        value = (unsigned >> self.shift) & self.mask
        bucket = self.buckets.get(value)
        if bucket is None:
            self.buckets[value] = ref
        elif isinstance(bucket, list):
            bucket.append(ref)
        else:
            self.buckets[value] = [bucket, ref]

    def collect(self, unsigned: int, refs: list[int]) -> None:
        """Append the refs whose band value is within the radius of ``unsigned``'s."""
        value = (unsigned >> self.shift) & self.mask
        # map/filter run the probes, most of which find nothing, without the interpreter loop.
        for bucket in filter(_is_not_none, map(self.buckets.get, map(value.__xor__, self.flips))):
            if isinstance(bucket, list):
                refs.extend(bucket)
            else:
                refs.append(bucket)


class NearIndex:
    """In-memory multi-index hash: a near pair (distance <= k) differs by at most a band's
    radius in one of ``_multi_index_bands``, which are re-chosen as the index grows.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self._hashes: dict[int, int] = {}
        self._planned_size = _MIN_PLAN_SIZE
        self._plan = _multi_index_bands(k, self._planned_size)
        self._bands = self._tables(self._plan)

    def add(self, ref: int, phash: int) -> None:
        unsigned = phash & _MASK64
        self._hashes[ref] = unsigned
        if len(self._hashes) > self._planned_size:
            # Doubling keeps re-indexing to O(1) amortised per add.
            self._planned_size *= 2
            plan = _multi_index_bands(self.k, self._planned_size)
            if plan != self._plan:
                self._plan, self._bands = plan, self._tables(plan)
                return
        for band in self._bands:
            band.add(ref, unsigned)

    def nearest(self, phash: int) -> tuple[int, int] | None:
        """(ref, distance) of the closest indexed hash within k; ties go to the lowest ref."""
        unsigned = phash & _MASK64
        best: tuple[int, int] | None = None  # (distance, ref)
        for ref in self._candidates(unsigned):
            distance = hamming(unsigned, self._hashes[ref])
            if distance <= self.k and (best is None or (distance, ref) < best):
                best = (distance, ref)
        return None if best is None else (best[1], best[0])

    def _candidates(self, phash: int) -> list[int]:
        """The refs a lookup compares: a superset of those within k (a ref may recur)."""
        unsigned = phash & _MASK64
        refs: list[int] = []
        for band in self._bands:
            band.collect(unsigned, refs)
        return refs

    def _tables(self, plan: tuple[tuple[int, int, int], ...]) -> list[_BandTable]:
        """Band tables for ``plan`` holding every hash added so far."""
        bands = [_BandTable(lo, hi, radius) for lo, hi, radius in plan]
        for ref, unsigned in self._hashes.items():
            for band in bands:
                band.add(ref, unsigned)
        return bands


def resolve(
    candidates: list[Candidate],
    published_assets: dict[int, int],
    near_index: NearIndex | None,
) -> list[Verdict]:
    """Decide every candidate's fate.

    ``published_assets`` maps asset id -> the item that published it (exact duplicates);
    ``near_index`` holds published items' pHashes by item id (None disables near dedup).
    Both are updated as candidates are published, so later candidates see earlier ones.
    """
    verdicts: list[Verdict] = []
    for cand in sorted(candidates, key=lambda c: c.ordinal):
        kept = published_assets.get(cand.asset_id)
        if kept is not None:
            verdicts.append(Verdict(cand.item_id, ItemStatus.EXACT_DUPLICATE, kept, "sha256"))
            continue
        if near_index is not None and cand.phash is not None:
            match = near_index.nearest(cand.phash)
            if match is not None:
                ref, distance = match
                rule = f"phash_hamming={distance}<={near_index.k}"
                verdicts.append(Verdict(cand.item_id, ItemStatus.NEAR_DUPLICATE, ref, rule))
                continue
        published_assets[cand.asset_id] = cand.item_id
        if near_index is not None and cand.phash is not None:
            near_index.add(cand.item_id, cand.phash)
        verdicts.append(Verdict(cand.item_id, ItemStatus.PUBLISHED))
    return verdicts
