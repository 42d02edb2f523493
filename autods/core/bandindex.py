"""Multi-index hashing: which bands of a 64-bit hash to index, and which values to probe,
so that every stored hash within distance k of a query shares a probed value with it.

Norouzi et al., "Fast Search in Hamming Space with Multi-Index Hashing": with m bands and
radii r_i such that sum(r_i + 1) > k, a pair within distance k differs in at most r_i bits
in some band i (otherwise it would differ in at least sum(r_i + 1) bits), so probing each
band's table with every value within r_i of the query's band value finds it.

k + 1 exact bands (radius 0) need one probe per band, but for k=4 those are 12-13 bit
bands, each value shared by N/8192 hashes or more: a lookup compares a fixed share of the
index once it holds more than a few thousand, and its time grows with the index. Wider
bands probed within a radius stay selective, at the price of more probes; the layout with
the least expected probes plus weighted comparisons for uniformly spread hashes depends on
the index's size, so both indexes that use this plan for a size and re-plan as they
double: ``dedup.NearIndex`` in memory and a dataset's ``phash_bands`` in the database.
"""

from __future__ import annotations

from functools import cache
from itertools import combinations
from math import comb

import numpy as np

#: (lo, hi, radius): the bits ``lo..hi`` of a hash, probed within ``radius`` bits.
Band = tuple[int, int, int]
#: A band of the database index: the hash bits it gathers (lowest first) and its radius.
BitBand = tuple[tuple[int, ...], int]

_MASK64 = (1 << 64) - 1
#: A database band index is planned for at least this many hashes, then for each doubling.
MIN_PLAN_SIZE = 1024
#: In PostgreSQL a band row found (joined to its asset and features, region print included)
#: costs about this many probes: at 1M hashes a batch's lookups took ~15 us per row found
#: and ~2.8 us per probe (exact bands: 5 probes and 518 rows per candidate, 7.75 ms;
#: three wide bands: 46 probes and 16 rows, 375 us).
DB_COMPARE_COST = 5.0


def plan(k: int, size: int, compare_cost: float) -> tuple[Band, ...]:
    """The bands for finding every hash within distance k among ~size hashes: the band
    count m with the least expected probes plus ``compare_cost`` per stored hash a probe
    finds (uniformly spread hashes)."""
    def cost(m: int) -> float:
        return sum(ball(hi - lo, r) * (1 + compare_cost * size / 2 ** (hi - lo))
                   for lo, hi, r in split(k, m))

    return split(k, min(range(1, min(k + 1, 64) + 1), key=cost))


def exact(k: int) -> tuple[Band, ...]:
    """k + 1 bands probed by equality: two hashes within distance k share one (k differing
    bits touch at most k bands). The layout of a dataset indexed before layouts were
    planned for its size."""
    return split(k, k + 1)


def split(k: int, m: int) -> tuple[Band, ...]:
    """m near-equal contiguous bands; the k mod m + 1 widest get radius floor(k/m) and the
    rest one less, the smallest radii whose sum(r_i + 1) still exceeds k."""
    edges = [round(i * 64 / m) for i in range(m + 1)]
    slices = list(zip(edges[:-1], edges[1:], strict=True))
    radius, extra = divmod(k, m)
    widest_first = sorted(range(m), key=lambda i: slices[i][0] - slices[i][1])
    wide = set(widest_first[:extra + 1])
    return tuple((lo, hi, radius if i in wide else radius - 1)
                 for i, (lo, hi) in enumerate(slices))


def ball(width: int, radius: int) -> int:
    """How many values lie within ``radius`` bits of one ``width``-bit value."""
    return sum(comb(width, i) for i in range(min(radius, width) + 1))


@cache
def flips(width: int, radius: int) -> tuple[int, ...]:
    """Every XOR mask of at most ``radius`` set bits among ``width``: one probe each."""
    return tuple(sum(1 << bit for bit in bits) for r in range(min(radius, width) + 1)
                 for bits in combinations(range(width), r))


def plan_size(count: int) -> int:
    """The size a database index of ``count`` hashes is planned for: ``MIN_PLAN_SIZE``
    doubled until it holds them, so the layout changes O(log n) times."""
    size = MIN_PLAN_SIZE
    while size < count:
        size *= 2
    return size


def contiguous(layout: tuple[Band, ...]) -> tuple[BitBand, ...]:
    """``layout``'s bands as the bits they gather: each a run of adjacent bits."""
    return tuple((tuple(range(lo, hi)), radius) for lo, hi, radius in layout)


def strided(layout: tuple[Band, ...]) -> tuple[BitBand, ...]:
    """As many bands with the same radii, band i of m gathering bits i, i + m, i + 2m...

    A hash's adjacent bits are alike across a collection: a pHash's low DCT frequencies,
    a check hash's rows. Where some of them barely vary (gradients, flat backgrounds,
    generated images), a contiguous band made of them holds a few values shared by
    hundreds of hashes, and every lookup that probes one reads them all. Strided bands mix
    every part of the hash: on the scale benchmark's images, 2.6 rows per lookup at 40k
    hashes instead of 22.8 (1.3 for uniform hashes), the largest bucket 6 instead of 142.
    The widest bands get the widest radii, as ``split`` gives them.
    """
    m = len(layout)
    bands = [tuple(range(i, 64, m)) for i in range(m)]
    radii = sorted((radius for *_, radius in layout), reverse=True)
    widest_first = sorted(range(m), key=lambda i: -len(bands[i]))
    radius_of = {i: radii[rank] for rank, i in enumerate(widest_first)}
    return tuple((bands[i], radius_of[i]) for i in range(m))


@cache
def _byte_tables(bits: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Per byte of a hash (lowest first), what each of its 256 values adds to the band's
    value: gathering a band is then eight lookups, not a loop over its bits."""
    tables = []
    for byte in range(8):
        mine = [(j, b - 8 * byte) for j, b in enumerate(bits) if b // 8 == byte]
        tables.append(tuple(sum(1 << j for j, b in mine if v >> b & 1) for v in range(256)))
    return tuple(tables)


def gather(unsigned: int, bits: tuple[int, ...]) -> int:
    """The band's value: bit j is the hash's bit ``bits[j]``."""
    value = 0
    for table, byte in zip(_byte_tables(bits), unsigned.to_bytes(8, "little"), strict=True):
        value |= table[byte]
    return value


def _signed(value: int) -> int:
    """As a signed 64-bit column holds it (only a whole-hash band, k=0, reaches bit 63)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def rows(value: int, layout: tuple[BitBand, ...]) -> list[int]:
    """A hash's value in each band of ``layout``, as stored."""
    unsigned = value & _MASK64
    return [_signed(gather(unsigned, bits)) for bits, _ in layout]


def probes(value: int, layout: tuple[BitBand, ...]) -> list[list[int]]:
    """Per band of ``layout``, the stored values a lookup of this hash probes: its own and
    each within the band's radius."""
    unsigned = value & _MASK64
    found = []
    for bits, radius in layout:
        own = gather(unsigned, bits)
        found.append([_signed(own ^ f) for f in flips(len(bits), radius)])
    return found


@cache
def _byte_arrays(bits: tuple[int, ...]) -> tuple[tuple[int, np.ndarray], ...]:
    """``_byte_tables`` as arrays, only for the bytes the band takes bits from."""
    return tuple((byte, np.array(table, dtype=np.uint64))
                 for byte, table in enumerate(_byte_tables(bits)) if any(table))


def gather_many(values: np.ndarray, bits: tuple[int, ...]) -> np.ndarray:
    """``gather`` over an array of unsigned 64-bit hashes."""
    out = np.zeros(len(values), dtype=np.uint64)
    for byte, table in _byte_arrays(bits):
        out |= table[(values >> np.uint64(8 * byte)) & np.uint64(0xFF)]
    return out


def probes_many(values: np.ndarray, bits: tuple[int, ...], radius: int) -> np.ndarray:
    """``probes`` of one band over an array of unsigned 64-bit hashes: row i holds the
    values a lookup of ``values[i]`` probes, as stored (signed), in ``flips`` order."""
    masks = np.array(flips(len(bits), radius), dtype=np.uint64)
    return (gather_many(values, bits)[:, None] ^ masks[None, :]).view(np.int64)


def within_any(queries: np.ndarray, stored: np.ndarray, layout: tuple[BitBand, ...],
               radius: int) -> np.ndarray:
    """Indices of the ``stored`` hashes within ``radius`` bits of any of ``queries`` (both
    unsigned 64-bit arrays), found through ``layout``'s bands as a lookup of the database
    index finds them, but all at once: each band's stored values sorted, every probe of
    every query searched among them, and the pairs a probe meets compared whole.

    Where a batch of lookups would send more probes than the index holds rows, reading the
    rows and matching here is the cheaper way to the same answer."""
    hit = np.zeros(len(stored), dtype=bool)
    if not len(queries) or not len(stored):
        return np.flatnonzero(hit)
    for bits, band_radius in layout:
        values = gather_many(stored, bits)
        order = np.argsort(values, kind="stable")
        values = values[order]
        probes = probes_many(queries, bits, band_radius)
        probed = probes.view(np.uint64).ravel()
        lo = np.searchsorted(values, probed, "left")
        met = np.searchsorted(values, probed, "right") - lo
        # Each probe against each stored value it met: stored lo..lo+met-1 in sorted order.
        query = np.repeat(np.arange(probed.size) // probes.shape[1], met)
        row = order[np.repeat(lo - np.cumsum(met) + met, met) + np.arange(met.sum())]
        hit[row[np.bitwise_count(stored[row] ^ queries[query]) <= radius]] = True
    return np.flatnonzero(hit)
