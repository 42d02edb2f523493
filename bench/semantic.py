"""Semantic dedup: ``SemanticIndex`` lookups as the index grows, and text embedding speed.

* Lookup: ``SemanticIndex.nearest`` per query on a small and a 100x larger index of
  384-dim vectors (10k and 1M; 1k and 10k with ``--quick``), unfiltered and with an
  ``allowed`` filter; the target is sub-linear growth. Vectors are synthetic embeddings: a
  48-dim Gaussian mapped into 384 dims plus isotropic noise, normalised. Independent random
  unit vectors would have no neighbourhoods for the graph to follow (in 384 dims all are
  near-orthogonal), which no embedding model produces. Half the queries are fresh vectors
  (the common case: no duplicate), half sit at cosine 0.95 to a stored one, which gives the
  recall in the notes. The large index is bulk-built with every core; the notes give that
  time, the single-threaded ``add`` that resolve uses, and the cost of a bytes round trip.
* Text embedding: ``SentenceEmbedder.embed_texts`` (all-MiniLM-L6-v2, CPU) against raw
  ``SentenceTransformer.encode`` with its defaults, on the same model object and texts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from importlib import metadata

import numpy as np

from bench.common import (
    Context,
    Row,
    alternate,
    fmt_rate,
    fmt_time,
    log,
    median,
    paired_ratio,
    target_row,
    timed,
)

GROUP = "semantic"
DIM = 384
RANK = 48
NEAR_COSINE = 0.95
WORDS = ("the", "a", "small", "large", "red", "quiet", "river", "city", "market", "child", "dog",
         "teacher", "storm", "garden", "train", "song", "old", "new", "bright", "early", "late",
         "walks", "opens", "finds", "carries", "watches", "builds", "under", "over", "near",
         "across", "before", "after", "with", "without", "because", "while", "slowly")


class _Vectors:
    """Synthetic embeddings from one seeded generator: the same run, the same vectors."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.basis = self.rng.standard_normal((RANK, DIM)).astype(np.float32)

    def draw(self, n: int) -> np.ndarray:
        out = np.empty((n, DIM), np.float16)
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            x = self.rng.standard_normal((m, RANK), np.float32) @ self.basis
            x += 2.0 * self.rng.standard_normal((m, DIM), np.float32)
            out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    def near(self, stored: np.ndarray) -> np.ndarray:
        """Vectors at cosine NEAR_COSINE to each stored row."""
        v = stored.astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        other = self.rng.standard_normal(v.shape, np.float32)
        other -= (other * v).sum(1, keepdims=True) * v
        other /= np.linalg.norm(other, axis=1, keepdims=True)
        return (NEAR_COSINE * v + np.sqrt(1 - NEAR_COSINE**2) * other).astype(np.float16)


def _size(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


class _Case:
    """One index and its queries: the first half fresh, the second near stored rows."""

    def __init__(self, vectors: _Vectors, n: int, n_queries: int) -> None:
        from autods.core.semantic import SemanticIndex

        data = vectors.draw(n)
        self.index = SemanticIndex(DIM)
        start = time.perf_counter()
        self.index.add_many(np.arange(n), data, threads=0)
        self.build_s = time.perf_counter() - start
        self.targets = vectors.rng.choice(n, n_queries // 2, replace=False)
        self.queries = np.concatenate([vectors.draw(n_queries - len(self.targets)),
                                       vectors.near(data[self.targets])])
        self.extra = vectors.draw(1000)

    def lookups(self, allowed: Callable[[int], bool] | None) -> Callable[[], float]:
        def run() -> float:
            nearest, queries = self.index.nearest, self.queries
            start = time.perf_counter()
            for q in queries:
                nearest(q, allowed)
            return (time.perf_counter() - start) / len(queries)

        return run

    def recall(self) -> float:
        """Share of the near queries whose nearest is the row they were planted at."""
        near = self.queries[len(self.queries) - len(self.targets):]
        found = [self.index.nearest(q)[0] for q in near]
        return float(np.mean(np.asarray(found) == self.targets))

    def add_cost(self) -> float:
        """Seconds per single-threaded ``add`` of a new vector (as resolve adds them)."""
        base = len(self.index)
        start = time.perf_counter()
        for i, v in enumerate(self.extra):
            self.index.add(base + i, v)
        return (time.perf_counter() - start) / len(self.extra)


def _published(ref: int) -> bool:
    """The benchmark's filter: one ref in a hundred counts as never published."""
    return ref % 100 != 0


def _lookup_rows(ctx: Context) -> list[Row]:
    from autods.core.semantic import EXPANSION_SEARCH, FILTERED_COUNT, SemanticIndex

    small_n, large_n = ctx.size(1000, 10_000), ctx.size(10_000, 1_000_000)
    n_queries, rounds = ctx.size(400, 2000), ctx.size(3, 7)
    vectors = _Vectors()
    log(f"semantic: building {_size(small_n)} and {_size(large_n)} indexes")
    small = _Case(vectors, small_n, n_queries)
    large = _Case(vectors, large_n, n_queries)
    log(f"semantic: {_size(large_n)} built in {large.build_s:.0f} s")
    runs = {"small": small.lookups(None), "large": large.lookups(None),
            "small filtered": small.lookups(_published),
            "large filtered": large.lookups(_published)}
    for run in runs.values():
        run()  # warm: caches, the first pages of the large graph
    times = alternate(runs, rounds, "semantic lookups")
    recall = {n: c.recall() for n, c in (("small", small), ("large", large))}

    start = time.perf_counter()
    blob = large.index.to_bytes()
    save_s = time.perf_counter() - start
    start = time.perf_counter()
    SemanticIndex.from_bytes(blob)
    load_s = time.perf_counter() - start
    adds = {"small": small.add_cost(), "large": large.add_cost()}

    label = f"{_size(large_n)} vs {_size(small_n)} stored 384-dim vectors"
    setup = (f"f16 HNSW (usearch {metadata.version('usearch')}), expansion_search "
             f"{EXPANSION_SEARCH}; {n_queries} queries per round, half with a stored vector at "
             f"cosine {NEAR_COSINE}, half without; recall of those near ones: "
             f"{recall['small']:.3f} at {_size(small_n)}, {recall['large']:.3f} at "
             f"{_size(large_n)}")
    build = (f"bulk build of {_size(large_n)}: {large.build_s:.0f} s "
             f"({fmt_rate(large_n / large.build_s, 'vectors/s')}, add_many with every core); "
             f"to_bytes {fmt_time(save_s)}, from_bytes {fmt_time(load_s)}, "
             f"{len(blob) / 2**20:,.0f} MiB ({len(blob) / large_n:.0f} B per vector)")
    return [
        target_row(GROUP, f"Semantic: nearest lookup, {label}",
                   fmt_time(median(times["large"])), fmt_time(median(times["small"])),
                   paired_ratio(times["large"], times["small"]), "<", 10, [setup, build]),
        target_row(GROUP, f"Semantic: nearest with an allowed filter, {label}",
                   fmt_time(median(times["large filtered"])),
                   fmt_time(median(times["small filtered"])),
                   paired_ratio(times["large filtered"], times["small filtered"]), "<", 10,
                   [f"the filter rejects 1 ref in 100; walks up to {FILTERED_COUNT} matches"]),
        Row(GROUP, f"Semantic: single-threaded add, {label}", fmt_time(adds["large"]),
            fmt_time(adds["small"]), adds["large"] / adds["small"],
            notes=["1000 new vectors added one by one after the lookups, as resolve adds "
                   "kept samples; growth for information"]),
    ]


def _texts(n: int) -> list[str]:
    """Sentences of 6 to 30 words, seeded: the lengths of captions and short posts."""
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30))).capitalize() + "."
            for _ in range(n)]


def _embed_row(ctx: Context) -> Row:
    import torch

    from autods.core.textembed import SentenceEmbedder

    n, rounds = ctx.size(128, 1000), ctx.size(3, 5)
    texts = _texts(n)
    start = time.perf_counter()
    embedder = SentenceEmbedder(device="cpu")
    load_s = time.perf_counter() - start
    model = embedder.model
    embedder.embed_texts(texts[:64])  # warm: allocator, thread pool
    model.encode(texts[:64])
    log(f"semantic: embedding {n} texts on CPU ({torch.get_num_threads()} torch threads), "
        f"{rounds} rounds")
    times = alternate({
        "autods": timed(lambda: embedder.embed_texts(texts)),
        "raw": timed(lambda: model.encode(texts, show_progress_bar=False)),
    }, rounds, "text embedding")
    return target_row(
        GROUP, f"Semantic: SentenceEmbedder.embed_texts vs raw encode ({embedder.name}, CPU)",
        fmt_rate(n / median(times["autods"]), "texts/s"),
        fmt_rate(n / median(times["raw"]), "texts/s"),
        paired_ratio(times["raw"], times["autods"]), ">=", 0.9,
        [f"{n} synthetic sentences of 6-30 words; sentence-transformers "
         f"{metadata.version('sentence-transformers')}, batch size {embedder.batch_size} "
         f"(raw: encode's default); the embedder loaded in {load_s:.1f} s"])


def run(ctx: Context) -> list[Row]:
    return _lookup_rows(ctx) + [_embed_row(ctx)]
