"""The dataset side: queries with shard skipping against DuckDB reading every manifest, a
sample by key, and a materialized view against copying the same byte ranges by hand.

The query dataset is 1,000,000 manifest rows in 1,000 shards, written with the real
manifest writer and published as a version (summary and key index included). Its tars are
real for the first ``REAL_TARS`` shards only (the rest would be gigabytes of nothing): the
key lookup covers every key, the byte range read after it is one small read either way.
"""

from __future__ import annotations

import random
import shutil
import statistics
import time
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from bench.common import Context, Row, alternate, fmt_time, log, median, paired_ratio, target_row

GROUP = "dataset"
LABELS = ["cat", "dog", "bird", "fish", "horse", "cow", "sheep", "goat"]
RARE = "zebra"
REAL_TARS = 20
REPEAT = 5


def _key(shard: int, i: int) -> str:
    return f"{(shard * 1_000_003 + i * 7919) * 2654435761 % 16**24:024x}"


def _manifest_rows(shard: int, n: int, rng: random.Random, rare: bool) -> dict[str, list]:
    labels = [rng.choice(LABELS) for _ in range(n)]
    if rare:
        for i in rng.sample(range(n), n // 20):
            labels[i] = RARE
    return {
        "sha256": [f"{_key(shard, i)}{'0' * 40}" for i in range(n)],
        "uri": [f"https://example.com/{shard}/{i}.jpg" for i in range(n)],
        "modality": ["image"] * n, "source": [rng.choice(["web", "scan"]) for _ in range(n)],
        "format": ["JPEG"] * n, "nbytes": [rng.randrange(5_000, 200_000) for _ in range(n)],
        "width": [rng.randrange(64, 2048) for _ in range(n)],
        "height": [rng.randrange(64, 2048) for _ in range(n)],
        "ordinal": list(range(shard * n, shard * n + n)),
        "label": labels, "confidence": [round(rng.random(), 3) for _ in range(n)],
        "caption": [rng.choice(["a beach", "a street", "a field", "a room"]) for _ in range(n)],
    }


def _query_dataset(ctx: Context, n_shards: int, per_shard: int) -> Path:
    """A version of ``n_shards`` x ``per_shard`` rows; the rare label in 1 % of shards."""
    from autods.core.manifest import manifest_keys, write_table_manifests
    from autods.core.records import ShardInfo, ShardSample
    from autods.core.shard import write_shard
    from autods.core.storage import LocalStore
    from autods.core.versions import summary_key, write_version

    root = ctx.path("dataset", f"query-{n_shards}x{per_shard}")
    if (root / summary_key(1)).exists():  # generated before, by this layout
        return root
    shutil.rmtree(root, ignore_errors=True)
    store = LocalStore(root)
    rng = random.Random(7)
    rare = set(rng.sample(range(n_shards), max(1, n_shards // 100)))
    infos = []
    for s in range(n_shards):
        name = f"shard-{s:06d}"
        cols = _manifest_rows(s, per_shard, rng, s in rare)
        keys = [_key(s, i) for i in range(per_shard)]
        if s < REAL_TARS:
            samples = [ShardSample(key=k, members={"txt": f"{k} {cols['caption'][i]}".encode()},
                                   fields={c: v[i] for c, v in cols.items()})
                       for i, k in enumerate(keys)]
            infos.append(write_shard(samples, name, store, {"dataset": "bench"}))
            continue
        table = pa.table({"__key__": keys, "__offset__": [i * 1024 for i in range(per_shard)],
                          "__size__": [1024] * per_shard, **cols})
        write_table_manifests(store, "shards", name, table, {"dataset": "bench"},
                              size_bytes=per_shard * 1024, sha256="0" * 64)
        jkey, pkey = manifest_keys("shards", name)
        infos.append(ShardInfo(name=name, count=per_shard, nbytes=per_shard * 1024,
                               sha256="0" * 64, tar_key=f"shards/{name}.tar",
                               manifest_json_key=jkey, manifest_parquet_key=pkey,
                               modality="text", extensions=["txt"]))
        if s % 100 == 0:
            log(f"dataset: generated {s}/{n_shards} shards")
    write_version(store, "bench", infos, None, job=None, kind="build")
    return root


def _full_scan(con, root: Path, predicate: str) -> int:
    """The reference: DuckDB over every ``manifest.parquet``, the same columns returned, on
    a connection opened beforehand."""
    rows = con.sql(
        "SELECT __key__, filename, __offset__, __size__ FROM read_parquet(?, "
        f"union_by_name = true, filename = true) WHERE {predicate}",
        params=[str(root / "shards" / "*.manifest.parquet")]).to_arrow_table()
    return rows.num_rows


def _median_of(run, repeat: int = REPEAT) -> float:
    """The median of ``repeat`` timed calls: a query of a few milliseconds run once right
    after the other contender pays for the memory that one just freed."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _query_rows(ctx: Context) -> list[Row]:
    import duckdb

    from autods.dataset import open_dataset

    n_shards, per_shard = ctx.size(100, 1000), ctx.size(100, 1000)
    root = _query_dataset(ctx, n_shards, per_shard)
    ds = open_dataset(str(root))
    rounds = ctx.size(3, 7)
    con = duckdb.connect()
    rows = []
    for label, predicate, op, target in (
            ("selective (1 % of shards match)", f"label = '{RARE}'", ">=", 20.0),
            ("everything matches", "width > 0", ">=", 0.834)):  # at most 1.2x slower
        counts: dict[str, int] = {}

        def ours(p=predicate, counts=counts) -> float:
            def once() -> None:
                result = ds.query(p)
                counts["autods"], counts["skipped"] = result.table.num_rows, \
                    result.explain.shards_skipped
            return _median_of(once)

        def scan(p=predicate, counts=counts) -> float:
            return _median_of(lambda: counts.__setitem__("scan", _full_scan(con, root, p)))

        ours(), scan()  # warm the page cache for both
        times = alternate({"autods": ours, "scan": scan}, rounds, f"query {label}")
        assert counts["autods"] == counts["scan"], counts
        rows.append(target_row(
            GROUP, f"Query: {label} vs DuckDB over every manifest.parquet",
            fmt_time(median(times["autods"])), fmt_time(median(times["scan"])),
            paired_ratio(times["scan"], times["autods"]), op, target,
            [f"{n_shards * per_shard:,} rows in {n_shards:,} shards; `{predicate}`: "
             f"{counts['autods']:,} rows, {counts['skipped']:,} shards skipped by their "
             f"aggregates; each round's time is the median of {REPEAT} calls; the reference "
             "runs on a DuckDB connection opened beforehand"]))
    keys = [_key(s, i) for s in range(REAL_TARS) for i in range(0, per_shard, 97)]
    random.Random(3).shuffle(keys)
    lookups = []
    for key in keys[:ctx.size(20, 100)]:
        start = time.perf_counter()
        members = ds.get(key)
        lookups.append(time.perf_counter() - start)
        assert members["txt"].startswith(key.encode())
    p50 = statistics.median(lookups)
    p95 = sorted(lookups)[int(len(lookups) * 0.95) - 1]
    rows.append(Row(GROUP, "Get by key (autods get)", f"{p50 * 1000:.1f} ms median",
                    f"{p95 * 1000:.1f} ms p95", None, "< 50 ms", verdict=(
                        "pass" if p95 < 0.05 else "MISS"),
                    notes=[f"{len(lookups)} random keys of {n_shards * per_shard:,}: the "
                           "version's key index (footer + one row group), then one ranged "
                           "read of the sample"]))
    return rows


def _materialize_rows(ctx: Context) -> list[Row]:
    from autods.core.records import ShardSample
    from autods.core.shard import write_shard
    from autods.core.storage import LocalStore
    from autods.core.versions import summary_key, write_version
    from autods.dataset import Dataset

    n_shards, per_shard = ctx.size(10, 25), ctx.size(100, 1000)  # the default shard size
    member = ctx.size(2_000, 40_000)  # about a 512-pixel JPEG
    root = ctx.path("dataset", f"view-{n_shards}x{per_shard}")
    if not (root / summary_key(1)).exists():
        shutil.rmtree(root, ignore_errors=True)
        store = LocalStore(root)
        rng = random.Random(5)
        infos = []
        for s in range(n_shards):
            samples = []
            for i in range(per_shard):
                key = _key(s, i)
                samples.append(ShardSample(
                    key=key, members={"bin": rng.randbytes(member),
                                      "txt": f"sample {key}".encode()},
                    fields={"label": "cat" if rng.random() < 0.1 else rng.choice(LABELS[1:]),
                            "width": rng.randrange(64, 2048)}))
            infos.append(write_shard(samples, f"shard-{s:06d}", LocalStore(root),
                                     {"dataset": "bench-view"}))
        write_version(store, "bench-view", infos, None, job=None, kind="build")
    ds = Dataset(LocalStore(root))
    answer = ds.query("label = 'cat'").table
    plan = [(str(root / ds.version().shard(sh).tar_key), o, n) for sh, o, n in zip(
        answer["shard"].to_pylist(), answer["offset"].to_pylist(), answer["size"].to_pylist(),
        strict=True)]
    nbytes = sum(n for _, _, n in plan)
    copy_to = ctx.path("dataset", "plain-copy.bin")

    def ours() -> float:
        shutil.rmtree(root / "views", ignore_errors=True)
        start = time.perf_counter()
        view, _ = ds.materialize("label = 'cat'", "cats", shard_size=per_shard)
        elapsed = time.perf_counter() - start
        assert view.version.num_samples == len(plan)
        return elapsed

    def plain() -> float:
        start = time.perf_counter()
        handles: dict[str, BinaryIO] = {}
        with copy_to.open("wb") as out:
            for path, offset, size in plan:
                if path not in handles:
                    handles[path] = open(path, "rb")  # noqa: SIM115 - closed below
                handles[path].seek(offset)
                out.write(handles[path].read(size))
        for f in handles.values():
            f.close()
        return time.perf_counter() - start

    ours(), plain()
    times = alternate({"autods": ours, "plain": plain}, ctx.size(3, 5), "materialize")
    mib = nbytes / 2**20
    return [target_row(
        GROUP, "Materialize 10 % of a dataset vs copying the byte ranges with plain reads",
        f"{mib / median(times['autods']):,.0f} MiB/s", f"{mib / median(times['plain']):,.0f} MiB/s",
        paired_ratio(times["plain"], times["autods"]), ">=", 0.8,
        [f"{len(plan):,} of {n_shards * per_shard:,} samples ({mib:,.0f} MiB, "
         f"{member // 1000} kB per sample), page-cached; the reference seeks and reads each "
         "range and writes it to one file, given the ranges; autods also runs the query, "
         "hashes the tars and writes their manifests, the version, its summary and key index"])]


def run(ctx: Context) -> list[Row]:
    return _query_rows(ctx) + _materialize_rows(ctx)
