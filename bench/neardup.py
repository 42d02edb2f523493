"""Image near-duplicate detection: how well and how fast, on real images.

The labelled set is ``bench.neardata``: distinct pictures installed on the machine (icons,
documentation figures, plots) with copies planted after their originals. Every image is
resolved as the pipeline does (``dedup.resolve`` with ``ImageNearRule``): in input order,
against what was kept before it, the closest confirmed candidate winning.

* quality, three rules on the same items: ``autods.core.nearimage`` (pHash candidates
  within the wider radius confirmed by the check hash), today's pHash <= k alone on the
  same draft-decoded pHashes (items without a check fall back to it), and pHash <= k on
  full-size decodes. A copy is found when it is dropped as a copy of its own original; a
  wrong drop is a distinct original dropped, or a copy attributed to another original.
* speed: read + sha256 + ``image_features`` (pHash and check) against the raw loop of
  ``bench.phash`` (read, sha256, draft decode, ``imagehash.phash``) and against the stage
  as it was before the check, on the labelled set's files and on the 512x512 JPEGs of
  ``bench.phash``.
"""

from __future__ import annotations

import hashlib
import io
import statistics
from collections import Counter
from functools import partial
from pathlib import Path

import imagehash
from PIL import Image

from autods.core.dedup import Candidate, ImageNearRule, resolve
from autods.core.hashing import (
    hamming,
    image_features,
    phash_to_int,
    sha256_hex,
    to_grayscale,
)
from autods.core.nearimage import (
    CELL,
    CHECK_RADIUS,
    MAX_REGION_DIFF,
    SURE_CHECK,
    SURE_PHASH,
    budget,
    candidate_radius,
)
from autods.core.records import ItemStatus
from bench import data, neardata
from bench.common import (
    Context,
    Row,
    alternate,
    fmt_rate,
    log,
    median,
    not_run,
    paired_ratio,
    target_row,
    timed,
)
from bench.phash import _autods_loop, _raw_loop

GROUP = "neardup"
K = 4
RECALL_TARGET = 0.95
WRONG_DROP_TARGET = 0.01
# Copies whose transparency a tool flattened on black: reported apart (see ``_quality_rows``).
_ON_BLACK = "black"

# One image of the set: (key, key of the original it copies or its own key, transform).
Item = tuple[str, str, str]


def _items(nearset: neardata.NearSet) -> tuple[list[Item], list[bytes]]:
    """Originals first, then every copy: each copy comes after its original."""
    items = [(o.key, o.key, "original") for o in nearset.originals]
    items += [(c.key, c.original, c.transform) for c in nearset.copies]
    blobs = [o.data for o in nearset.originals] + [c.data for c in nearset.copies]
    return items, blobs


def _full_decode_phash(blob: bytes) -> int:
    img = Image.open(io.BytesIO(blob))
    img.load()
    return phash_to_int(imagehash.phash(to_grayscale(img)))


def _verdicts(blobs: list[bytes], phashes: list[int], checks: list[int | None],
              k: int, thumbs: list[bytes | None] | None = None
              ) -> list[tuple[ItemStatus, int | None]]:
    """(status, index of the kept image) per image, as ``dedup.resolve`` decides them; equal
    bytes are one asset, so an unchanged re-save is an exact duplicate."""
    asset_of: dict[str, int] = {}
    candidates = [
        Candidate(i, i, asset_of.setdefault(hashlib.sha256(b).hexdigest(), len(asset_of)),
                  phash, check, thumb)
        for i, (b, phash, check, thumb) in enumerate(zip(
            blobs, phashes, checks, thumbs or [None] * len(blobs), strict=True))]
    verdicts = resolve(candidates, {}, [ImageNearRule(k)])
    return [(v.status, v.duplicate_of) for v in sorted(verdicts, key=lambda v: v.item_id)]


class _Score:
    """Found copies and wrong drops of one rule's verdicts."""

    def __init__(self, items: list[Item],
                 verdicts: list[tuple[ItemStatus, int | None]]) -> None:
        self.found: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        self.dropped_originals = self.misattributed = 0
        for (_, original, transform), (status, kept) in zip(items, verdicts, strict=True):
            dropped = status is not ItemStatus.PUBLISHED
            if transform == "original":
                self.dropped_originals += dropped
                continue
            self.total[transform] += 1
            if dropped and items[kept][1] == original:
                self.found[transform] += 1
            elif dropped:
                self.misattributed += 1
        self.n_items = len(items)

    def recall(self, on_black: bool) -> tuple[int, int]:
        """(found, planted) among the copies flattened on black, or among all others."""
        chosen = [t for t in self.total if (_ON_BLACK in t) == on_black]
        return sum(self.found[t] for t in chosen), sum(self.total[t] for t in chosen)

    @property
    def wrong(self) -> int:
        return self.dropped_originals + self.misattributed


def _fraction(part: int, whole: int) -> str:
    return f"{part / whole:.3f} ({part}/{whole})" if whole else "—"


def _quality_rows(nearset: neardata.NearSet) -> list[Row]:
    items, blobs = _items(nearset)
    log(f"neardup: hashing {len(items)} images ({len(nearset.originals)} originals)")
    features = [image_features(b) for b in blobs]
    phashes = [f.phash for f in features]
    scores = {
        "new": _Score(items, _verdicts(blobs, phashes, [f.check for f in features], K,
                                       [f.thumb for f in features])),
        "hashes": _Score(items, _verdicts(blobs, phashes, [f.check for f in features], K)),
        "k4": _Score(items, _verdicts(blobs, phashes, [None] * len(blobs), K)),
        "full": _Score(items, _verdicts(blobs, [_full_decode_phash(b) for b in blobs],
                                        [None] * len(blobs), K)),
    }
    new, old, full, hashes = scores["new"], scores["k4"], scores["full"], scores["hashes"]
    found, total = new.recall(on_black=False)
    recall = found / total
    wrong_rate = new.wrong / new.n_items
    transforms = [t for t in neardata.TRANSFORMS if _ON_BLACK not in t]
    per_transform = ", ".join(f"{t} {new.found[t]}/{old.found[t]}/{new.total[t]}"
                              for t in transforms)
    rule = (f"nearimage: candidates by pHash <= {candidate_radius(K)} and pHash + 2 * "
            f"dHash_v <= {budget(K)} (k={K}), or dHash_v <= {CHECK_RADIUS}; confirmed when no "
            f"{CELL}x{CELL} cell of the 16x16 region prints differs by more than "
            f"{MAX_REGION_DIFF:g} grey levels, or when pHash <= {SURE_PHASH} and dHash_v <= "
            f"{SURE_CHECK}")
    setup = (f"{len(nearset.originals)} distinct originals (icons, documentation figures, "
             f"plots shipped on this machine) + {len(items) - len(nearset.originals)} "
             f"planted copies, resolved originals first; {rule}")
    wrong_text = {name: f"{s.wrong / s.n_items:.2%} ({s.dropped_originals} originals, "
                        f"{s.misattributed} copies)" for name, s in scores.items()}
    black_found, black_total = new.recall(on_black=True)
    index = {key: i for i, (key, _, _) in enumerate(items)}
    black_moves = [hamming(phashes[i], phashes[index[original]])
                   for i, (_, original, transform) in enumerate(items) if _ON_BLACK in transform]
    return [
        Row(GROUP, "Image near-dup: recall on resized / re-encoded / re-saved copies",
            _fraction(found, total),
            f"hashes alone: {_fraction(*hashes.recall(on_black=False))}; pHash k={K}: "
            f"{_fraction(*old.recall(on_black=False))}; full decode: "
            f"{_fraction(*full.recall(on_black=False))}", None, f">= {RECALL_TARGET:g}",
            verdict="pass" if recall >= RECALL_TARGET else "MISS",
            notes=[f"{setup}; transparent originals flattened on white by the copying tool; a "
                   f"copy counts only when dropped as a copy of its own original; by "
                   f"transform, found new/k={K}/planted: {per_transform}"]),
        Row(GROUP, "Image near-dup: wrong drops (distinct originals, copies given to another)",
            wrong_text["new"], f"hashes alone: {wrong_text['hashes']}; pHash k={K}: "
            f"{wrong_text['k4']}; full decode: {wrong_text['full']}", None,
            f"<= {WRONG_DROP_TARGET:.0%}",
            verdict="pass" if wrong_rate <= WRONG_DROP_TARGET else "MISS",
            notes=["share of all images resolved (originals and copies) that were dropped "
                   "as a copy of a different picture; distinct means the originals' 32x32 "
                   f"renderings differ by more than {neardata.SAME_PICTURE_MAE:g} grey level "
                   "on average, so sibling icons (battery levels, faces, folder emblems) "
                   "are distinct"]),
        Row(GROUP, "Image near-dup: recall on copies flattened on black",
            _fraction(black_found, black_total),
            f"pHash k={K}: {_fraction(*old.recall(on_black=True))}", None,
            verdict="info",
            notes=[f"two copies of each transparent original flattened on black (as dropping "
                   f"the alpha channel does): the background flips from white to black and "
                   f"the pHash moves a median {statistics.median(black_moves):g} bits from the "
                   f"original's; most copies found are the second, dropped as a copy of the "
                   f"first"]),
    ]


def _write_files(ctx: Context, blobs: list[bytes]) -> list[Path]:
    root = ctx.path("neardup", "files")
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, blob in enumerate(blobs):
        path = root / f"{i:06d}"
        if not path.exists() or path.read_bytes() != blob:
            path.write_bytes(blob)
        paths.append(path)
    return paths


def _phash_only_loop(paths: list[Path]) -> None:
    """The stage as it was before the check: read, sha256, decode and flatten as
    ``image_features`` does, pHash."""
    for p in paths:
        blob = p.read_bytes()
        sha256_hex(blob)
        img = Image.open(io.BytesIO(blob))
        if img.format == "JPEG":
            img.draft("L", (64, 64))
        img.load()
        imagehash.phash(to_grayscale(img))


def _speed_rows(label: str, paths: list[Path], rounds: int, note: str) -> list[Row]:
    loops = {"autods": _autods_loop, "raw": _raw_loop, "phash only": _phash_only_loop}
    for loop in loops.values():  # warm imports, codecs and the page cache
        loop(paths)
    times = alternate({name: timed(partial(loop, paths)) for name, loop in loops.items()},
                      rounds, f"neardup {label}")
    rate = {name: fmt_rate(len(paths) / median(t)) for name, t in times.items()}
    return [
        target_row(GROUP, f"Image near-dup: sha256 + image_features (pHash + check) vs raw "
                   f"draft loop, {label}", rate["autods"], rate["raw"],
                   paired_ratio(times["raw"], times["autods"]), ">=", 0.8, [note]),
        Row(GROUP, f"Image near-dup: sha256 + image_features vs the same without the check, "
            f"{label}", rate["autods"], rate["phash only"],
            paired_ratio(times["phash only"], times["autods"]),
            notes=["the cost of the check alone: both decode and flatten transparency alike "
                   "(which the raw loop skips, hashing transparent pixels as stored)"]),
    ]


def run(ctx: Context) -> list[Row]:
    log("neardup: building the labelled set from images installed on this machine")
    nearset = neardata.build(ctx.size(60, 10_000))
    if len(nearset.originals) < 30:
        return [not_run(GROUP, "Image near-dup",
                        f"only {len(nearset.originals)} distinct images on this machine")]
    rows = _quality_rows(nearset)
    rounds = ctx.size(3, 5)
    _, blobs = _items(nearset)
    # Every 4th image: the same mix of sources and transforms, a quarter of the time.
    set_paths = _write_files(ctx, blobs[::4])
    rows += _speed_rows("labelled set", set_paths, rounds,
                        f"{len(set_paths)} images of the labelled set (every 4th: PNG, JPEG, "
                        "WebP, GIF; mostly icons, a few 1-2k px figures), read from disk, one "
                        "process")
    jpegs = data.jpegs_512(ctx, ctx.size(48, 1000))
    rows += _speed_rows("512x512 JPEGs", jpegs, rounds,
                        f"{len(jpegs)} 512x512 JPEGs (q{data.QUALITY}) of bench.phash, where "
                        "the draft decode leaves least other work to hide the check's cost")
    return rows
