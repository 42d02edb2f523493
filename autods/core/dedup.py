"""Duplicate resolution for one batch, in input order.

Which member of a duplicate group survives never depends on timing: candidates are visited
in the job's input order and compared only with what is already published (earlier
batches, earlier jobs) or earlier in this batch. A re-run, a resumed run and a run with more
workers therefore publish the same samples.

Exact identity (sha256) is checked first, then each of the job's rules in turn (near
images, normalised and near texts, semantic); the first rule that matches drops the
candidate, and a candidate that survives them all is published and added to every rule's
index, so the candidates after it are compared with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from operator import is_not
from typing import Any, Protocol

import numpy as np

from autods.core import bandindex
from autods.core.bandindex import Band
from autods.core.hashing import hamming
from autods.core.records import ItemStatus

#: Every rule's name; a dropped item's ``dedup_rule`` text starts with one.
RULES = ("sha256", "text_normalized", "phash", "minhash", "semantic")


def rule_family(rule: str) -> str | None:
    """The rule of ``RULES`` a recorded ``dedup_rule`` belongs to (the record may carry its
    arithmetic after the name: ``phash=2,dhash_v=2,...``); None when it names none."""
    return next((r for r in RULES if rule.startswith(r)), None)


@dataclass(slots=True)
class Candidate:
    """An ingested item waiting for its verdict, with the features its rules compare:
    ``check`` is the second perceptual hash of an image, ``thumb`` its region print,
    ``text_sha256`` the hash of its
    normalised text, ``minhash`` its MinHash signature, ``vector`` its embedding."""

    item_id: int
    ordinal: int
    asset_id: int
    phash: int | None
    check: int | None = None
    thumb: bytes | None = None
    text_sha256: str | None = None
    minhash: np.ndarray | None = None
    vector: np.ndarray | None = None


@dataclass(slots=True)
class Verdict:
    item_id: int
    status: ItemStatus
    duplicate_of: int | None = None
    rule: str | None = None
    score: float | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """What a rule found: the kept item, the rule's explanation, its measured score."""

    ref: int
    rule: str
    score: float


class Rule(Protocol):
    """A duplicate rule over the published samples of a dataset (and earlier candidates)."""

    status: ItemStatus

    def match(self, cand: Candidate) -> Match | None: ...

    def add(self, cand: Candidate) -> None: ...


_MASK64 = (1 << 64) - 1
# Comparing a stored hash costs roughly twice a probe that finds an empty bucket (CPython
# 3.11): the weight that trades wider, more selective bands against more probes. For k=4
# that plans the same 5 exact bands up to 16k hashes, 4 bands of 16 bits with radii
# 1, 0, 0, 0 up to 32k, then 3 bands of 21-22 bits with radii 1, 1, 0: 46 probes and ~17
# comparisons per lookup at 1M.
_COMPARE_COST = 2.0
# Indexes are planned for at least this many hashes and re-planned each time they double.
_MIN_PLAN_SIZE = 1024
# Found buckets are told apart with ``is not None`` since ref 0 is falsy.
_is_not_none = partial(is_not, None)


def _multi_index_bands(k: int, size: int) -> tuple[Band, ...]:
    """The in-memory index's bands for ~size hashes (``bandindex.plan``): a probe is one
    dict lookup, so wide bands probed within a radius pay off early."""
    return bandindex.plan(k, size, _COMPARE_COST)


class _BandTable:
    """One band of the multi-index: refs by the band's bits, probed within the band's radius.

    The bands are strided (``bandindex.strided``), as the database's are: adjacent bits of
    a hash vary together across a collection, and a band made of them holds a few values
    shared by many hashes. On the end-to-end benchmark's 5,000 images, lookups in
    contiguous bands met 31 check-hash refs each (one bucket of 143), in strided bands 9.
    A band's value is the hash masked to its bits, which costs no more than a shift.

    A bucket is a bare ref until a second ref shares its value: bands are chosen wide enough
    that most values hold one hash, and a list apiece would add half again to the memory of
    a 1M-hash index (~550 MB instead of ~360 MB).
    """

    __slots__ = ("buckets", "flips", "mask")

    def __init__(self, bits: tuple[int, ...], radius: int) -> None:
        self.mask = sum(1 << b for b in bits)
        # Each pattern within the radius, spread onto the band's bit positions.
        self.flips = tuple(sum(1 << b for j, b in enumerate(bits) if f >> j & 1)
                           for f in bandindex.flips(len(bits), radius))
        self.buckets: dict[int, int | list[int]] = {}

    def add(self, ref: int, unsigned: int) -> None:
        value = unsigned & self.mask
        bucket = self.buckets.get(value)
        if bucket is None:
            self.buckets[value] = ref
        elif isinstance(bucket, list):
            bucket.append(ref)
        else:
            self.buckets[value] = [bucket, ref]

    def collect(self, unsigned: int, refs: list[int]) -> None:
        """Append the refs whose band value is within the radius of ``unsigned``'s."""
        value = unsigned & self.mask
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
        found = self.within(phash)
        return min(found, key=lambda f: (f[1], f[0])) if found else None

    def within(self, phash: int) -> list[tuple[int, int]]:
        """(ref, distance) of every indexed hash within k, each once."""
        unsigned = phash & _MASK64
        found: dict[int, int] = {}
        for ref in self._candidates(unsigned):
            if ref not in found:
                distance = hamming(unsigned, self._hashes[ref])
                if distance <= self.k:
                    found[ref] = distance
        return list(found.items())

    def _candidates(self, phash: int) -> list[int]:
        """The refs a lookup compares: a superset of those within k (a ref may recur)."""
        unsigned = phash & _MASK64
        refs: list[int] = []
        for band in self._bands:
            band.collect(unsigned, refs)
        return refs

    def _tables(self, plan: tuple[tuple[int, int, int], ...]) -> list[_BandTable]:
        """Band tables for ``plan`` holding every hash added so far."""
        bands = [_BandTable(bits, radius) for bits, radius in bandindex.strided(plan)]
        for ref, unsigned in self._hashes.items():
            for band in bands:
                band.add(ref, unsigned)
        return bands


class ImageNearRule:
    """Candidates by pHash or by check hash, confirmed by the region prints
    (``autods.core.nearimage``): wide enough to find resized and recompressed copies, line
    art whose pHash drifted included, confirmed so that distinct pictures with close
    hashes are not dropped.

    The pHash index searches ``band_radius(k)``, not the wider candidate radius: a pair
    the rule admits beyond it has check hashes within ``CHECK_RADIUS``, which the check
    index finds (the database's band index rests on the same argument). Searching k=10
    instead of 4 compared each candidate with hundreds of clustered hashes at 100k
    images, for no pair the rule could confirm."""

    status = ItemStatus.NEAR_DUPLICATE

    def __init__(self, k: int) -> None:
        from autods.core import nearimage

        self.k = k
        self._rule = nearimage
        self.index = NearIndex(nearimage.band_radius(k))
        self.check_index = NearIndex(nearimage.CHECK_RADIUS)
        self._kept: dict[int, tuple[int, int | None, bytes | None]] = {}

    def add_published(self, ref: int, phash: int, check: int | None,
                      thumb: bytes | None = None) -> None:
        self.index.add(ref, phash)
        if check is not None:
            self.check_index.add(ref, check)
        self._kept[ref] = (phash, check, thumb)

    def match(self, cand: Candidate) -> Match | None:
        if cand.phash is None:
            return None
        refs = {ref for ref, _ in self.index.within(cand.phash)}
        if cand.check is not None:
            refs.update(ref for ref, _ in self.check_index.within(cand.check))
        best: tuple[float, int, str] | None = None
        for ref in refs:
            phash, check, thumb = self._kept[ref]
            verdict = self._rule.confirm(hamming(cand.phash, phash), cand.check, check,
                                         self.k, cand.thumb, thumb)
            if verdict is not None:
                score, text = verdict
                if best is None or (score, ref) < (best[0], best[1]):
                    best = (score, ref, text)
        return None if best is None else Match(best[1], best[2], best[0])

    def add(self, cand: Candidate) -> None:
        if cand.phash is not None:
            self.add_published(cand.item_id, cand.phash, cand.check, cand.thumb)


class TextExactRule:
    """Texts equal after Unicode and whitespace normalisation."""

    status = ItemStatus.EXACT_DUPLICATE

    def __init__(self, published: dict[str, int] | None = None) -> None:
        self.kept = dict(published or {})

    def match(self, cand: Candidate) -> Match | None:
        ref = self.kept.get(cand.text_sha256) if cand.text_sha256 else None
        return None if ref is None else Match(ref, "text_normalized", 1.0)

    def add(self, cand: Candidate) -> None:
        if cand.text_sha256:
            self.kept.setdefault(cand.text_sha256, cand.item_id)


class TextNearRule:
    """MinHash LSH over word shingles: estimated Jaccard at or above the threshold."""

    status = ItemStatus.NEAR_DUPLICATE

    def __init__(self, index: Any) -> None:
        self.index = index  # autods.core.textdedup.TextNearIndex

    def match(self, cand: Candidate) -> Match | None:
        if cand.minhash is None:
            return None
        found = self.index.nearest(cand.minhash)
        if found is None:
            return None
        ref, similarity = found
        return Match(ref, self.index.hasher.rule(similarity), similarity)

    def add(self, cand: Candidate) -> None:
        if cand.minhash is not None:
            self.index.add(cand.item_id, cand.minhash)


class SemanticRule:
    """Embedding cosine at or above the threshold, through an approximate index.

    ``published`` holds the refs of the (persisted, possibly stale) index that are
    published samples; the index's other refs are passed over. None trusts every ref."""

    status = ItemStatus.SEMANTIC_DUPLICATE

    def __init__(self, index: Any, threshold: float, published: set[int] | None = None) -> None:
        self.index = index  # autods.core.semantic.SemanticIndex
        self.threshold = threshold
        self.published = published
        self.allowed = None if published is None else published.__contains__

    def match(self, cand: Candidate) -> Match | None:
        if cand.vector is None:
            return None
        from autods.core.semantic import duplicate_of, semantic_rule

        found = duplicate_of(self.index, cand.vector, self.threshold, allowed=self.allowed)
        if found is None:
            return None
        ref, similarity = found
        return Match(ref, semantic_rule(similarity, self.threshold), similarity)

    def add(self, cand: Candidate) -> None:
        if cand.vector is not None:
            self.index.add(cand.item_id, cand.vector)
            if self.published is not None:
                self.published.add(cand.item_id)


def resolve(
    candidates: list[Candidate],
    published_assets: dict[int, int],
    rules: Sequence[Rule] = (),
) -> list[Verdict]:
    """Decide every candidate's fate.

    ``published_assets`` maps asset id -> the item that published it (exact duplicates);
    ``rules`` hold what is already published. Both are updated as candidates are
    published, so later candidates see earlier ones.
    """
    verdicts: list[Verdict] = []
    for cand in sorted(candidates, key=lambda c: c.ordinal):
        kept = published_assets.get(cand.asset_id)
        if kept is not None:
            verdicts.append(Verdict(cand.item_id, ItemStatus.EXACT_DUPLICATE, kept, "sha256",
                                    1.0))
            continue
        for rule in rules:
            found = rule.match(cand)
            if found is not None:
                verdicts.append(Verdict(cand.item_id, rule.status, found.ref, found.rule,
                                        found.score))
                break
        else:
            published_assets[cand.asset_id] = cand.item_id
            for rule in rules:
                rule.add(cand)
            verdicts.append(Verdict(cand.item_id, ItemStatus.PUBLISHED))
    return verdicts
