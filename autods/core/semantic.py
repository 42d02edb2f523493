"""Semantic duplicates: the nearest kept embedding within a cosine threshold.

One ``SemanticIndex`` per dataset and modality holds the vectors of kept samples in a usearch
HNSW graph (approximate nearest neighbours, sub-linear lookups) and travels as bytes, so a
later job of the dataset resumes it. Candidates are visited in input order: a candidate whose
nearest kept vector is at least ``threshold`` similar is a duplicate of it, otherwise it is
kept and added, and later candidates see it.

Parameters (docs/benchmarks.md, ``semantic`` group; 384-dim vectors, 2 cores):

* ``f16`` scalars. CLIP vectors arrive as float16, so the index stores them exactly, and
  usearch's cosine of two float16 vectors matched the float64 one to within 1e-5. ``i8``
  was ~2x faster to build and 40 % smaller, but its cosine was off by up to 0.007, enough
  to flip verdicts next to a 0.95 threshold.
* connectivity 16 and expansion_add 128 (usearch's defaults): halving expansion_add cut
  the build time by ~40 % but lost planted near duplicates (recall 0.997 at 100k vectors);
  connectivity 32 made the graph 14 % larger and lookups slower for no recall to gain.
* expansion_search 64 (usearch's default): of 2000 vectors planted at cosine 0.95 to one of
  1M stored ones, 32 missed 1.9 %, 48 0.7 %, 64 0.15 % and 96 none, at 0.7, 0.95, 1.3 and
  2.0 ms per lookup. 64 keeps misses rare for half the cost of finding every one.

Everything is single-threaded unless asked otherwise: an HNSW graph built by several threads
depends on their scheduling, and the same inputs in the same order must give the same index
and the same answers. Restore points count as inputs: an index restored from bytes goes on
building its graph differently from one that stayed in memory.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from usearch.index import Index

DTYPE = "f16"
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 64
# Matches walked by ``nearest`` when a filter is given: the index may hold refs of a crashed
# batch that were never published, and up to this many of them in front of a published match
# are skipped. Lookups cost the same up to expansion_search matches.
FILTERED_COUNT = 16


def _new_index(dim: int, dtype=DTYPE) -> Index:
    return Index(ndim=dim, metric="cos", dtype=dtype, connectivity=CONNECTIVITY,
                 expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)


class SemanticIndex:
    """Cosine nearest-neighbour index from integer refs (non-negative, < 2**64) to vectors.

    A ref is held once: adding it again is ignored and keeps its first vector, so that
    re-adding what a stale copy of the index may already hold is harmless. A copy saved
    before a crash may also miss published refs (``refs`` tells which it holds, ``add_many``
    adds the rest) and hold unpublished ones (``nearest``'s ``allowed`` skips them).
    """

    def __init__(self, dim: int, *, _index: Index | None = None) -> None:
        if dim <= 0:
            raise ValueError(f"dimension must be positive, got {dim}")
        self._index = _index if _index is not None else _new_index(dim)
        self.dim = dim

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, ref: int) -> bool:
        return bool(self._index.contains(ref))

    def refs(self) -> np.ndarray:
        """Every ref held, as uint64 (in no particular order)."""
        return np.asarray(self._index.keys, dtype=np.uint64)

    def _matrix(self, vectors, ndim: int) -> np.ndarray:
        array = np.asarray(vectors)
        if array.ndim != ndim or array.shape[-1] != self.dim:
            want = f"({self.dim},)" if ndim == 1 else f"(n, {self.dim})"
            raise ValueError(f"expected vectors of shape {want}, got {array.shape}")
        return np.ascontiguousarray(array, dtype=np.float16)

    def add(self, ref: int, vector) -> bool:
        """Holds ``vector`` under ``ref``; False when ``ref`` was held already."""
        return self.add_many([ref], self._matrix(vector, 1)[None, :]) == 1

    def add_many(self, refs, matrix, threads: int = 1) -> int:
        """Adds rows in order, skipping refs held already (or earlier in ``refs``); returns
        how many were added. ``threads`` > 1 (0: all cores) builds faster, but the graph then
        depends on thread scheduling."""
        rows = self._matrix(matrix, 2)
        keys = np.asarray(refs)
        if keys.shape != (len(rows),):
            raise ValueError(f"{len(keys)} refs for {len(rows)} vectors")
        if len(keys) and (keys.dtype.kind not in "iu" or keys.min() < 0):
            raise ValueError("refs must be non-negative integers")
        keys = keys.astype(np.uint64)
        _, first = np.unique(keys, return_index=True)
        fresh = np.sort(first)
        fresh = fresh[~np.asarray(self._index.contains(keys[fresh]), dtype=bool)]
        if len(fresh):
            self._index.add(keys[fresh], rows[fresh], threads=threads)
        return len(fresh)

    def nearest(self, vector, allowed: Callable[[int], bool] | None = None,
                count: int = FILTERED_COUNT) -> tuple[int, float] | None:
        """The most similar held ref that ``allowed`` accepts and its cosine similarity, or
        None when the index is empty or none of the ``count`` nearest is allowed (``count``
        matters only with ``allowed``; without it the single nearest is the answer).

        The similarity is usearch's own cosine distance, 1 - d, computed from the stored
        float16 vector and the query rounded to float16 (exact for float16 embeddings).
        """
        query = self._matrix(vector, 1)
        if not len(self._index):
            return None
        matches = self._index.search(query, 1 if allowed is None else count, threads=1)
        for key, distance in zip(matches.keys, matches.distances, strict=True):
            if allowed is None or allowed(int(key)):
                return int(key), 1.0 - float(distance)
        return None

    def to_bytes(self) -> bytes:
        """The whole index (vectors and graph) in usearch's serialised form."""
        return bytes(self._index.save())

    @classmethod
    def from_bytes(cls, data: bytes) -> SemanticIndex:
        """An index as ``to_bytes`` left it; the search settings are this module's."""
        meta = Index.metadata(data)  # ValueError for anything else
        index = _new_index(meta["dimensions"], meta["kind_scalar"])
        index.load(data)
        return cls(meta["dimensions"], _index=index)


def duplicate_of(index: SemanticIndex, vector, threshold: float,
                 allowed: Callable[[int], bool] | None = None) -> tuple[int, float] | None:
    """(kept ref, similarity) when ``vector`` is within ``threshold`` cosine of an allowed
    kept vector, else None (keep it)."""
    match = index.nearest(vector, allowed)
    return match if match is not None and match[1] >= threshold else None


def semantic_rule(similarity: float, threshold: float) -> str:
    """The rule recorded on a semantic duplicate."""
    return f"semantic_cosine={similarity:.3f}>={threshold:g}"
