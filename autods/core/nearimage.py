"""When two images are near duplicates: candidates by two perceptual hashes, confirmed by
a region print.

pHash alone at distance <= k (4 by default) misses copies and drops distinct pictures at
once. Resizing and re-encoding move the pHash of one copy in ten by more than 4 bits
(small icons and line art most), so k=4 misses them; and pictures that differ in one
small region (an emblem on a folder icon, the mouth of a face, a battery's fill level)
keep the same low-frequency DCT signs, so k=4 also matches them.

Three features of the same 32x32 greyscale thumbnail, from one decode
(``hashing.image_features``):

* the pHash;
* the check hash, ``imagehash.dhash_vertical``: the signs of brightness steps between
  rows, a spatial feature where pHash is a frequency one. Line art whose pHash drifts
  (symmetry zeroes half of the DCT coefficients pHash compares with their median, so their
  signs flip with any noise) keeps its check within a few bits;
* the region print: the thumbnail at 16x16 grey levels (256 bytes).

A published image is a candidate when ``phash <= candidate_radius(k)`` and
``phash + 2 * check <= 2k + 2`` (the hashes' weighted rule), or when ``check <=
CHECK_RADIUS`` whatever the pHash. The database finds both through the bands of each
hash (``band_rows``, laid out for the dataset's size by ``bandindex``); pHash
bands need cover only k (``band_radius``), as every pair the weighted rule admits beyond k
has check hashes close enough for the check's bands.
A candidate is confirmed when no 4x4 cell of the two region prints differs by more than
``MAX_REGION_DIFF`` grey levels on average: a copy is close everywhere, a sibling far in
one cell. A region print moves with the picture, though: trimming a pixel off each side
of a 96 px image shifts its sharp edges by a fraction of a print pixel, which is enough to
exceed the limit in a cell crossed by a high-contrast edge. Such a copy keeps both hashes
within ``SURE_PHASH`` and ``SURE_CHECK`` bits, and pairs that close are confirmed by the
hashes alone. The score is the largest cell difference, the hashes breaking ties; among
confirmed candidates the lowest wins.

Measured on ``bench.neardata`` (684 distinct pictures installed on the machine: icons,
documentation figures, plots; 7524 planted copies resized 0.5x/0.75x/odd sizes/1.5x,
re-encoded as JPEG q60-q90 or WebP, re-saved as PNG, transparency flattened on white,
and combinations), resolved in input order:

* copies found as copies of their own original: 0.968 (the hashes alone: 0.908; pHash
  k=4: 0.861);
* wrong drops, distinct pictures dropped plus copies attributed to another picture:
  0.88 % of items (region prints alone: 0.65 %; the hashes alone: 2.6 %; pHash k=4:
  5.0 %).

The hashes-alone confirmation costs 0.23 points of wrong drops for the copies the region
prints cannot see: within 2 bits of each it gave 0.88 %, within 2 of pHash and 1 of the
check 0.69 %, and confirming by ``phash + 2 * check <= 6`` 1.46 %.

``CHECK_RADIUS`` and ``MAX_REGION_DIFF`` were chosen on that set, in a harness that
resolves as this rule does (recall, wrong drops). With a cell limit of 10 grey levels,
check radius 3 gave 0.963 and 0.35 %, 4 gave 0.969 and 0.42 %, 5 gave 0.975 and 0.47 %,
6 gave 0.981 and 0.49 %; looser limits let siblings through (radius 4, limit 12: 0.88 %;
radius 5, limit 20: 2.1 %). Radius 4 keeps the check's bands at 13 bits: each wider
radius adds a band and makes every band less selective, so more rows per lookup in a
large dataset, for a recall the target does not need. 8x8 cells let siblings through
(radius 3, limit 20: 2.7 % wrong drops), and prints normalised for brightness and
contrast made distinct icons alike (5 % wrong drops).

What it cannot find: copies of transparent images flattened on black (the background
turns from white to black and the pHash moves a median 34 bits).

Items hashed before region prints existed have none: their pairs are judged by the
hashes' weighted rule alone, and pairs with a missing check by pHash within k.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from autods.core import bandindex
from autods.core.bandindex import BitBand

# The weight of a check bit against a pHash bit in the combined distance.
CHECK_WEIGHT = 2
# The widest pHash radius searched for k < 10; the database's bands cover the pHash
# within ``band_radius``, and they get less selective as the radius grows.
MAX_RADIUS = 10
# The region print: a THUMB_SIDE x THUMB_SIDE grey image, compared in CELL x CELL cells.
THUMB_SIDE = 16
CELL = 4
# A pair whose check hashes are this close is a candidate whatever its pHash distance.
CHECK_RADIUS = 4
# Band numbers of the check hash in the band index, after the pHash's.
CHECK_BAND_BASE = 100
# The largest mean grey-level difference of any cell of two copies' region prints.
MAX_REGION_DIFF = 10.0
# Hashes this close confirm a pair without the region prints.
SURE_PHASH = 2
SURE_CHECK = 2


def budget(k: int) -> int:
    """The largest combined distance ``phash + CHECK_WEIGHT * check`` accepted for k."""
    return 2 * k + 2


def candidate_radius(k: int) -> int:
    """The pHash radius to search for candidates: the budget, capped at ``MAX_RADIUS``
    unless k itself is larger (then k, as the pHash-only rule searched)."""
    return min(budget(k), max(k, MAX_RADIUS))


def band_radius(k: int) -> int:
    """The pHash radius a new dataset's band index covers. Beyond k, a pair passes the
    hashes' rule only with check hashes within (k + 1) // 2 bits, and the check's own bands
    find those while that is within ``CHECK_RADIUS`` (k <= 8): then k + 1 pHash bands of
    ~13 bits do, instead of 11 of ~6 bits that return far more rows per lookup."""
    return k if (k + 1) // 2 <= CHECK_RADIUS else candidate_radius(k)


def band_layouts(band_k: int, size: int | None
                 ) -> tuple[tuple[BitBand, ...], tuple[BitBand, ...]]:
    """The pHash's and the check hash's bands in a dataset's band index planned for
    ``size`` hashes (``bandindex.plan``, strided); None: the contiguous exact bands of an
    index made before layouts were planned."""
    if size is None:
        return (bandindex.contiguous(bandindex.exact(band_k)),
                bandindex.contiguous(bandindex.exact(CHECK_RADIUS)))
    return (bandindex.strided(bandindex.plan(band_k, size, bandindex.DB_COMPARE_COST)),
            bandindex.strided(bandindex.plan(CHECK_RADIUS, size, bandindex.DB_COMPARE_COST)))


def band_rows(phash: int, check: int | None,
              layouts: tuple[tuple[BitBand, ...], tuple[BitBand, ...]]) -> list[tuple[int, int]]:
    """(band number, value) of an image in the band index: the pHash's bands, then the
    check hash's from ``CHECK_BAND_BASE``."""
    rows = list(enumerate(bandindex.rows(phash, layouts[0])))
    if check is not None:
        rows += [(CHECK_BAND_BASE + n, v)
                 for n, v in enumerate(bandindex.rows(check, layouts[1]))]
    return rows


def _bands(phashes: np.ndarray, checks: np.ndarray,
           layouts: tuple[tuple[BitBand, ...], tuple[BitBand, ...]]
           ) -> Iterator[tuple[int, np.ndarray, BitBand]]:
    """(band number, the hashes it gathers from, the band) of the index, in its order:
    the pHash's bands, then the check hash's from ``CHECK_BAND_BASE``; none of a kind
    with no hashes."""
    for base, hashes, layout in ((0, phashes, layouts[0]), (CHECK_BAND_BASE, checks,
                                                            layouts[1])):
        if len(hashes):
            for n, band in enumerate(layout):
                yield base + n, hashes, band


def band_values(phashes: np.ndarray, checks: np.ndarray,
                layouts: tuple[tuple[BitBand, ...], tuple[BitBand, ...]]
                ) -> Iterator[tuple[int, np.ndarray]]:
    """(band number, values) of many images in the band index, a band at a time, as
    stored: ``band_rows`` over unsigned 64-bit arrays of their pHashes and check hashes."""
    for band_no, hashes, (bits, _) in _bands(phashes, checks, layouts):
        yield band_no, bandindex.gather_many(hashes, bits).view(np.int64)


def band_probes(phashes: np.ndarray, checks: np.ndarray,
                layouts: tuple[tuple[BitBand, ...], tuple[BitBand, ...]]
                ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(band number, values, hashes) a batch of lookups probes, a band at a time: each
    hash's values within the band's radius, as stored, beside the hash that probed each.
    Hashes go in as unsigned 64-bit arrays: as Python lists, a batch's 920,000 probes
    took 74 MB."""
    for band_no, hashes, (bits, radius) in _bands(phashes, checks, layouts):
        probed = bandindex.probes_many(hashes, bits, radius)
        yield band_no, probed.ravel(), np.repeat(hashes.view(np.int64), probed.shape[1])


def thumbnail(thumb: Any) -> bytes:
    """The region print of an image: ``THUMB_SIDE``² grey levels, the rounded means of 2x2
    blocks of the 32x32 greyscale thumbnail both hashes read (one byte each, row-major)."""
    from PIL import Image

    return thumb.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX).tobytes()


def region_distance(a: bytes, b: bytes) -> float:
    """The largest mean absolute grey-level difference over the ``CELL``x``CELL`` cells of
    two region prints: small everywhere for a resized or re-encoded copy, large in one
    cell for a sibling that differs in one place (an emblem, a battery level)."""
    x = np.frombuffer(a, np.uint8).astype(np.int16).reshape(THUMB_SIDE, THUMB_SIDE)
    y = np.frombuffer(b, np.uint8).astype(np.int16).reshape(THUMB_SIDE, THUMB_SIDE)
    n = THUMB_SIDE // CELL
    cells = np.abs(x - y).reshape(n, CELL, n, CELL).mean(axis=(1, 3))
    return float(cells.max())


def is_candidate(phash_distance: int, check_distance: int, k: int) -> bool:
    """Whether a pair is worth the region check: the two hashes' weighted rule, or a check
    hash alone within ``CHECK_RADIUS`` (line art whose pHash drifted)."""
    return check_distance <= CHECK_RADIUS or (
        phash_distance <= candidate_radius(k)
        and phash_distance + CHECK_WEIGHT * check_distance <= budget(k))


def confirm(phash_distance: int, check_a: int | None, check_b: int | None, k: int,
            thumb_a: bytes | None = None, thumb_b: bytes | None = None
            ) -> tuple[float, str] | None:
    """(score, rule text) if a pair at this pHash distance is a near duplicate, else None.

    The score is lower for closer pairs: the region distance when both have region prints
    (the hashes break ties), else the combined hash distance. ``check_a``/``check_b`` are
    the two images' check hashes (signed 64-bit, as stored); either may be None for items
    hashed before checks existed, and then the pHash-only rule decides; a pair without
    region prints is judged by the two hashes alone.
    """
    if check_a is None or check_b is None:
        if phash_distance > k:
            return None
        return float(phash_distance), f"phash={phash_distance}<={k}"
    check_distance = ((check_a ^ check_b) & 0xFFFFFFFFFFFFFFFF).bit_count()
    hashes = phash_distance + CHECK_WEIGHT * check_distance
    if thumb_a is None or thumb_b is None:
        if phash_distance > candidate_radius(k) or hashes > budget(k):
            return None
        return float(hashes), (f"phash={phash_distance},dhash_v={check_distance},"
                               f"phash+{CHECK_WEIGHT}*dhash_v={hashes}<={budget(k)}")
    if not is_candidate(phash_distance, check_distance, k):
        return None
    region = region_distance(thumb_a, thumb_b)
    hashes_text = f"phash={phash_distance},dhash_v={check_distance}"
    if region <= MAX_REGION_DIFF:
        return region + hashes / 10, f"{hashes_text},region={region:.1f}<={MAX_REGION_DIFF:g}"
    if phash_distance <= SURE_PHASH and check_distance <= SURE_CHECK:
        return region + hashes / 10, (f"{hashes_text}<={SURE_PHASH},{SURE_CHECK},"
                                      f"region={region:.1f}")
    return None
