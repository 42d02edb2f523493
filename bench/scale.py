"""Scale: memory and chord size of the distributed pipeline at 10k vs 100k items, and the
near-duplicate lookup per item at 10k vs 1M stored hashes (in memory and in PostgreSQL).

Peak RSS is the kernel's VmHWM of each process: the worker's main process, its prefork
children and the submitting process (run as a subprocess of its own for that reason). A
fresh worker, database and Redis prefix serve each job size.

The lookup rows store uniformly random 64-bit hashes, the friendliest distribution for a
band index (every bucket equally full); real pHashes cluster, so they can only do worse.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time

from bench import data
from bench.common import (
    Context,
    PeakRss,
    Row,
    alternate,
    fmt_mib,
    fmt_rate,
    fmt_time,
    guarded,
    log,
    median,
    paired_ratio,
    redone_note,
    target_row,
)
from bench.pipeline_overhead import distributed_worker
from bench.services import pg_database, pg_started_at

GROUP = "scale"
# The two job sizes; ``BENCH_SCALE_SMALL=100000 BENCH_SCALE_LARGE=1000000`` runs the
# million-item job (about half an hour on 2 cores) with a budget to match.
SMALL = int(os.environ.get("BENCH_SCALE_SMALL", 10_000))
LARGE = int(os.environ.get("BENCH_SCALE_LARGE", 100_000))
#: Peak memory and time per item may grow at most this much from the small job to the large.
GROWTH = 1.2
# If the large job would take longer than this (extrapolated from the small one), a
# smaller one runs instead and the table says so.
LARGE_BUDGET_S = float(os.environ.get("BENCH_SCALE_BUDGET_S", 900))
FALLBACK_LARGE = 30_000
HASHES_SMALL, HASHES_MID, HASHES_LARGE = 10_000, 100_000, 1_000_000
QUERIES = 1000
NEAR_K = 4


# -- the pipeline at two job sizes -------------------------------------------------------


def _job(ctx: Context, n: int) -> dict:
    """Run one job of ``n`` 64x64 JPEGs; its time, peak RSS per process and chord sizes."""
    from sqlalchemy import func, select

    from autods.db.models import Batch, Job
    from autods.db.session import engine_for, session_scope

    folders = data.jpeg_64_folders(ctx, -(-n // data.PER_DIR_64))
    with distributed_worker(ctx, f"scale{n // 1000}k") as (settings, worker):
        rss = PeakRss(worker.proc.pid)
        env = {**os.environ, **settings.to_env()}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
        out = ctx.path(f"scale{n // 1000}k", "out")
        cmd = [sys.executable, "-m", "bench.scale_submit", f"scale-{n}", out.as_uri()]
        cmd += [str(f) for f in folders]
        log(f"scale: job of {n} items")
        submitter = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        sub_rss = PeakRss(submitter.pid)
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                rss.sample()
                sub_rss.sample()
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            stdout, _ = submitter.communicate(timeout=7200)
        finally:
            stop.set()
            sampler.join()
        rss.sample()
        result = json.loads(stdout.strip().splitlines()[-1])
        if result["status"] != "succeeded":
            raise RuntimeError(f"scale job of {n} failed: {result['error']}")
        engine = engine_for(settings.database.url)
        with session_scope(engine) as db:
            job = db.get(Job, result["job_id"])
            max_header = db.scalar(select(func.max(Batch.n_chunks))
                                   .where(Batch.job_id == job.id))
            n_batches, n_chunks = job.n_batches, job.n_chunks
        engine.dispose()
        publish_s = [float(m) for m in re.findall(
            r"Task autods\.publish\.batch\[[^]]+\] succeeded in ([0-9.]+)s",
            worker.logfile.read_text(errors="replace"))]
        # Keep the worker log; the objects and shards (hundreds of MB) are not needed.
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(settings.storage.url.removeprefix("file://"), ignore_errors=True)
        main = rss.peaks.get(worker.proc.pid, 0)
        children = {pid: kib for pid, kib in rss.peaks.items() if pid != worker.proc.pid}
    return {
        "n": n, "elapsed_s": result["elapsed_s"], "submit_s": result["submit_s"],
        "main_kib": main, "child_kib": max(children.values(), default=0),
        "children": len(children),
        "submitter_kib": max(result["vmhwm_kib"] or 0, *sub_rss.peaks.values()),
        "publish_s": publish_s, "max_header": max_header, "n_batches": n_batches,
        "n_chunks": n_chunks,
        "chunks_per_batch": max(1, settings.pipeline.batch_size // settings.pipeline.chunk_size),
    }


def _job_rows(ctx: Context) -> list[Row]:
    small = guarded(lambda: _job(ctx, SMALL), pg_started_at, "scale-job", max_redo=2)
    projected = small["elapsed_s"] * LARGE / SMALL
    large_n = LARGE if projected <= LARGE_BUDGET_S else FALLBACK_LARGE
    large = guarded(lambda: _job(ctx, large_n), pg_started_at, "scale-job", max_redo=2)
    label = f"{_n(SMALL)} → {_n(large_n)} items"
    notes = [f"64x64 JPEGs in folders, distributed pipeline (Redis, PostgreSQL, worker -c 2, "
             f"embed off); {small['n']} items took {small['elapsed_s']:.0f} s, "
             f"{large['n']} took {large['elapsed_s']:.0f} s"]
    if large_n != LARGE:
        notes.append(f"{LARGE} items would have taken about {projected / 60:.0f} min on this "
                     f"machine (extrapolated from {SMALL}), over the {LARGE_BUDGET_S / 60:.0f}"
                     f" min budget, so {large_n} ran instead")
    notes += redone_note("scale-job")
    items = large_n / SMALL
    rows = [
        target_row(GROUP, f"Scale: peak RSS, worker main process ({label})",
                   fmt_mib(large["main_kib"]), fmt_mib(small["main_kib"]),
                   large["main_kib"] / small["main_kib"], "<=", GROWTH,
                   [f"autods = the larger job, reference = the {_n(SMALL)} job; "
                    f"{items:.0f}x the items"] + notes),
        target_row(GROUP, f"Scale: peak RSS, largest worker child ({label})",
                   fmt_mib(large["child_kib"]), fmt_mib(small["child_kib"]),
                   large["child_kib"] / small["child_kib"], "<=", GROWTH,
                   [f"{large['children']} prefork children"]),
        target_row(GROUP, f"Scale: peak RSS, submitting process ({label})",
                   fmt_mib(large["submitter_kib"]), fmt_mib(small["submitter_kib"]),
                   large["submitter_kib"] / small["submitter_kib"], "<=", GROWTH,
                   [f"autods.submit lists and inserts the items (took "
                    f"{small['submit_s']:.1f} s and {large['submit_s']:.1f} s) and waits"]),
        target_row(GROUP, f"Scale: chord header, chunks per batch ({label})",
                   f"{large['max_header']} ({large['n_batches']} batches)",
                   f"{small['max_header']} ({small['n_batches']} batches)",
                   large["max_header"] / small["max_header"], "<=", 1.0,
                   [f"bounded by batch_size // chunk_size = {large['chunks_per_batch']}; "
                    f"{small['n_chunks']} and {large['n_chunks']} chunks in all"]),
        target_row(GROUP, f"Scale: time per item ({label})",
                   fmt_time(large["elapsed_s"] / large_n), fmt_time(small["elapsed_s"] / SMALL),
                   (large["elapsed_s"] / large_n) / (small["elapsed_s"] / SMALL), "<=", GROWTH,
                   [f"from submit to succeeded: {fmt_rate(large_n / large['elapsed_s'], 'items/s')}"
                    f" and {fmt_rate(SMALL / small['elapsed_s'], 'items/s')}; publish_batch "
                    "(the batch callback: resolve, then send the shards to the shard queue) "
                    "took " + _publish_note(small) + f" for {_n(SMALL)} and "
                    + _publish_note(large) + f" for {_n(large_n)}"]),
    ]
    return rows


def _publish_note(job: dict) -> str:
    times = sorted(job["publish_s"])
    if not times:
        return "?"
    return f"{times[0]:.1f}-{times[-1]:.1f} s per batch ({len(times)} batches)"


# -- near-duplicate lookups at two index sizes ---------------------------------------------


def _random_hashes(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(64) - (1 << 63) for _ in range(n)]


def _planted_queries(stored: list[int], queries: list[int]) -> list[int]:
    """Every tenth query a stored hash two bits away (from the smallest index, so every
    size holds it): the lookups have neighbours to find, and say how many they found."""
    rng = random.Random(3)
    planted = list(queries)
    for i in range(0, len(planted), 10):
        a, b = rng.sample(range(63), 2)  # bit 63 stays: the hashes are signed
        planted[i] = stored[rng.randrange(len(stored))] ^ (1 << a) ^ (1 << b)
    return planted


def _candidates_examined(index, queries: list[int]) -> float:
    return sum(len(index._candidates(q)) for q in queries) / len(queries)


def _bands_note(index) -> str:
    """The multi-index bands the index chose at its size: (bits, probe radius) each."""
    return "bands of " + ", ".join(f"{hi - lo} bits r={r}" for lo, hi, r in index._plan)


def _n(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def _decade_row(what: str, times: dict[int, list[float]], mid: int, large: int) -> Row:
    """The same growth target on the top decade alone, where fixed per-call costs no longer
    hide how the work grows."""
    return target_row(
        GROUP, f"{what} per item ({_n(mid)} → {_n(large)} hashes)",
        fmt_time(median(times[large])), fmt_time(median(times[mid])),
        paired_ratio(times[large], times[mid]), "<", large / mid,
        [f"sub-linear over the last decade: growth < {large // mid}x for {large // mid}x the "
         "hashes"])


def _memory_rows(stored: dict[int, list[int]], queries: list[int], rounds: int
                 ) -> list[Row]:
    from autods.core.dedup import NearIndex

    indexes = {}
    for n, hashes in stored.items():
        log(f"scale: NearIndex with {n} hashes")
        index = NearIndex(NEAR_K)
        for ref, h in enumerate(hashes):
            index.add(ref, h)
        indexes[n] = index

    def lookups(n: int):
        def run() -> float:
            index = indexes[n]
            start = time.perf_counter()
            for q in queries:
                index.nearest(q)
            return (time.perf_counter() - start) / len(queries)
        return run

    times = alternate({n: lookups(n) for n in indexes}, rounds, "NearIndex.nearest")
    examined = {n: _candidates_examined(indexes[n], queries) for n in indexes}
    small, mid, large = sorted(indexes)
    return [target_row(
        GROUP, f"Near-dup lookup in memory: NearIndex.nearest per item "
        f"({_n(small)} → {_n(large)} hashes)",
        fmt_time(median(times[large])), fmt_time(median(times[small])),
        paired_ratio(times[large], times[small]), "<", large / small,
        [f"uniformly random 64-bit hashes, k={NEAR_K} ({_bands_note(indexes[large])} at "
         f"{large:,}), {len(queries)} queries (every tenth two bits from a stored hash); "
         f"target: sub-linear, growth < {large // small}x for "
         f"{large // small}x the hashes; {_slope_note(times, small, mid, large)}; candidates "
         "compared per lookup: " + ", ".join(f"{examined[n]:,.1f} at {n:,}" for n in
                                             (small, mid, large))]),
        _decade_row("Near-dup lookup in memory: NearIndex.nearest", times, mid, large)]


def _slope_note(times: dict[int, list[float]], small: int, mid: int, large: int) -> str:
    """Per-item time at the middle size and the log-log slope of each decade (1 = linear)."""
    t = {n: median(times[n]) for n in (small, mid, large)}
    lo = math.log(t[mid] / t[small]) / math.log(mid / small)
    hi = math.log(t[large] / t[mid]) / math.log(large / mid)
    return (f"{fmt_time(t[mid])} at {mid:,}; growth exponent {lo:.2f} from {small:,} to "
            f"{mid:,} and {hi:.2f} from {mid:,} to {large:,} (1.00 = linear)")


def _copy_rows(conn, table: str, columns: str, lines) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        buf = io.StringIO()
        for i, line in enumerate(lines, 1):
            buf.write(line)
            if i % 50_000 == 0:
                copy.write(buf.getvalue())
                buf = io.StringIO()
        copy.write(buf.getvalue())


def _populate(url: str, hashes: list[int]) -> None:
    """One dataset whose ``len(hashes)`` assets are published, with features and bands."""
    import psycopg

    from autods.core import bandindex
    from autods.core.nearimage import band_layouts
    from autods.db.session import upgrade

    upgrade(url)
    raw = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(raw) as conn:
        # Foreign-key triggers off while loading (superuser only); the schema is unchanged.
        conn.execute("SET session_replication_role = replica")
        n = len(hashes)
        # The layout a dataset of n published images has (``pipeline.nearindex``).
        size = bandindex.plan_size(n)
        layout = band_layouts(NEAR_K, size)[0]
        conn.execute("INSERT INTO datasets (id, name, output_url, near_k, band_k, band_size, "
                     "banded, next_shard_no, created_at) VALUES (1, 'near', 'file:///dev/null', "
                     "%s, %s, %s, %s, 0, now())", (NEAR_K, NEAR_K, size, n))
        _copy_rows(conn, "assets", "id, dataset_id, sha256, modality, mime, ext, nbytes, "
                   "storage_key, kept_item_id, created_at",
                   (f"{i}\t1\t{i:064x}\timage\timage/jpeg\tjpg\t1000\traw/{i:064x}.jpg\t{i}\t"
                    "2026-01-01T00:00:00Z\n" for i in range(1, n + 1)))
        _copy_rows(conn, "features", "asset_id, phash",
                   (f"{i}\t{h}\n" for i, h in enumerate(hashes, 1)))
        _copy_rows(conn, "phash_bands", "dataset_id, band_no, value, asset_id",
                   (f"1\t{b}\t{v}\t{i}\n" for i, h in enumerate(hashes, 1)
                    for b, v in enumerate(bandindex.rows(h, layout))))
        conn.execute("SET session_replication_role = DEFAULT")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


def _database_rows(stored: dict[int, list[int]], queries: list[int], rounds: int
                   ) -> list[Row]:
    from autods.core.dedup import Candidate
    from autods.db.models import Dataset
    from autods.db.session import engine_for, session_scope
    from autods.pipeline.nearindex import neighbours

    candidates = [Candidate(i, i, -i, q) for i, q in enumerate(queries)]
    sizes = sorted(stored)
    small, mid, large = sizes
    found: dict[int, int] = {}
    with contextlib.ExitStack() as stack:
        urls = {n: stack.enter_context(pg_database(f"near{n // 1000}k")) for n in sizes}
        for n in sizes:
            log(f"scale: loading {n} hashes and their band rows into PostgreSQL")
            t0 = time.perf_counter()
            _populate(urls[n], stored[n])
            log(f"scale: loaded in {time.perf_counter() - t0:.0f} s")

        def lookups(n: int):
            engine = engine_for(urls[n])

            def run() -> float:
                with session_scope(engine) as db:
                    dataset = db.get(Dataset, 1)
                    start = time.perf_counter()
                    rows = list(neighbours(db, dataset, candidates))
                    elapsed = time.perf_counter() - start
                found[n] = len(rows)
                return elapsed / len(candidates)
            return run

        runs = {n: lookups(n) for n in sizes}
        for run in runs.values():
            run()  # warm the buffer cache and the connection pool
        times = alternate(runs, rounds, "nearindex.neighbours", guard=pg_started_at)
        for n in sizes:
            engine_for(urls[n]).dispose()
    return [target_row(
        GROUP, f"Near-dup lookup in PostgreSQL: band query per item "
        f"({_n(small)} → {_n(large)} hashes)",
        fmt_time(median(times[large])), fmt_time(median(times[small])),
        paired_ratio(times[large], times[small]), "<", large / small,
        [f"nearindex.neighbours for {len(candidates)} candidates at once (as a "
         f"batch resolves them) over generated assets, features and phash_bands rows; "
         f"{_slope_note(times, small, mid, large)}; images found (every tenth query "
         "is planted two bits from one): "
         + ", ".join(f"{found[n]:,} at {n:,}" for n in sizes)]),
        _decade_row("Near-dup lookup in PostgreSQL: band query", times, mid, large)]


def _lookup_rows(rounds: int) -> list[Row]:
    log(f"scale: generating {HASHES_LARGE} random hashes")
    big = _random_hashes(HASHES_LARGE, 1)
    stored = {HASHES_SMALL: big[:HASHES_SMALL], HASHES_MID: big[:HASHES_MID], HASHES_LARGE: big}
    queries = _planted_queries(big[:HASHES_SMALL], _random_hashes(QUERIES, 2))
    rows = _memory_rows(stored, queries, rounds)
    db_rows = guarded(lambda: _database_rows(stored, queries, rounds), pg_started_at,
                      "scale-db", max_redo=2)
    db_rows[0].notes += redone_note("scale-db") + redone_note("nearindex.neighbours")
    rows += db_rows
    return rows


def run(ctx: Context) -> list[Row]:
    rows = _lookup_rows(rounds=5)
    rows = _job_rows(ctx) + rows
    return rows
