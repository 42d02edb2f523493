"""When two images are near duplicates: a pHash candidate confirmed by a vertical dHash.

pHash alone at distance <= k (4 by default) misses copies and drops distinct pictures at
once. Resizing and re-encoding move the pHash of one copy in ten by more than 4 bits
(small icons and line art most), so k=4 misses them; and pictures that differ in one
small region (an emblem on a folder icon, the mouth of a face, a battery's fill level)
keep the same low-frequency DCT signs, so k=4 also matches them. A wider pHash radius
finds more copies but drops more distinct pictures, unless something independent confirms
each candidate.

The confirmation is ``imagehash.dhash_vertical`` of the same 32x32 thumbnail pHash reads
(``hashing.image_features`` stores it as ``check``): the signs of brightness steps between
rows, a spatial feature where pHash is a frequency one, so the two rarely agree by chance.
The vertical dHash kept distinct pictures apart better than the horizontal one, wHash or
aHash at equal recall on the labelled set below.

The rule weighs both distances into one::

    phash + 2 * check <= 2k + 2      (k = 4: <= 10)
    phash <= candidate_radius(k)     (k = 4: 10)

so a copy may move its pHash further the better the check agrees: at k = 4, check <= 5 at
pHash 0, <= 3 at pHash 4, <= 1 at pHash 8, 0 at pHash 10. The weighted sum is also the
score: among several confirmed candidates the lowest wins.

Measured on ``bench.neardata`` (670 distinct pictures installed on the machine: icons,
documentation figures, plots; 7370 planted copies resized 0.5x/0.75x/odd sizes/1.5x,
re-encoded as JPEG q60-q90 or WebP, re-saved as PNG, transparency flattened on white,
and combinations), resolved in input order:

* copies found as copies of their own original: 0.908 (pHash k=4: 0.860);
* wrong drops, distinct pictures dropped plus copies attributed to another picture: 2.5 %
  of items (pHash k=4: 5.0 %); 21 of the 670 pictures (k=4: 36), each a sibling of a kept
  one: battery and signal levels, faces, a folder and the same folder with an emblem.

What it cannot find: copies of transparent images flattened on black (the background
turns from white to black and the pHash moves a median 34 bits), and copies whose pHash
moved beyond the radius: 4.6 % of the copies, half of what is missed, nearly all line-art
icons. Symmetric ones (a radio button, a grid) are the worst: symmetry zeroes half of the
DCT coefficients pHash compares with their median, so their signs flip with any noise;
their check stays within 2 bits, but no modest pHash radius brings them in as candidates.

Items hashed before the check existed have none; pairs with a missing check fall back to
the pHash-only rule, distance <= k.
"""

from __future__ import annotations

# The weight of a check bit against a pHash bit in the combined distance.
CHECK_WEIGHT = 2
# The widest pHash radius searched for k < 10; the database looks candidates up by
# radius + 1 exact bands, and each band gets less selective as the radius grows.
MAX_RADIUS = 10


def budget(k: int) -> int:
    """The largest combined distance ``phash + CHECK_WEIGHT * check`` accepted for k."""
    return 2 * k + 2


def candidate_radius(k: int) -> int:
    """The pHash radius to search for candidates: the budget, capped at ``MAX_RADIUS``
    unless k itself is larger (then k, as the pHash-only rule searched)."""
    return min(budget(k), max(k, MAX_RADIUS))


def confirm(phash_distance: int, check_a: int | None, check_b: int | None,
            k: int) -> tuple[float, str] | None:
    """(score, rule text) if a pair at this pHash distance is a near duplicate, else None.

    The score is the combined distance: lower is closer. ``check_a``/``check_b`` are the
    two images' check hashes (signed 64-bit, as stored); either may be None for items
    hashed before checks existed, and then the pHash-only rule decides.
    """
    if check_a is None or check_b is None:
        if phash_distance > k:
            return None
        return float(phash_distance), f"phash={phash_distance}<={k}"
    check_distance = ((check_a ^ check_b) & 0xFFFFFFFFFFFFFFFF).bit_count()
    score = phash_distance + CHECK_WEIGHT * check_distance
    if phash_distance > candidate_radius(k) or score > budget(k):
        return None
    return float(score), (f"phash={phash_distance},dhash_v={check_distance},"
                          f"phash+{CHECK_WEIGHT}*dhash_v={score}<={budget(k)}")
