"""Planning a job: listing a Parquet file of URLs and registering every item in PostgreSQL.

``create_job`` is timed in a process of its own (so its peak RSS is its own) on a fresh
database migrated to the current schema, at 100,000 and at 1,000,000 URLs. Targets: at
least 50,000 items/s at 1,000,000, and peak RSS growth at most 1.2x for 10x the URLs (the
list streams through; nothing holds it whole).

``python -m bench.planning N PARQUET`` is that process: it prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Context, Row, fmt_mib, fmt_rate, log, target_row

GROUP = "planning"
RATE_TARGET = 50_000
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def urls_parquet(ctx: Context, n: int) -> Path:
    """``n`` URLs with captions, in row groups of 64k (cached)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = ctx.path("inputs", f"urls-{n}.parquet")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        urls = pa.array([f"https://images.example.org/{i % 997}/{i:08d}.jpg" for i in range(n)])
        captions = pa.array([f"a photo, number {i}" for i in range(n)])
        tmp = path.with_suffix(".tmp")
        pq.write_table(pa.table({"url": urls, "caption": captions}), tmp,
                       row_group_size=65_536)
        os.replace(tmp, path)
    return path


def _plan_once(n: int, parquet: Path) -> dict:
    """Runs in the child: a fresh database, one ``create_job``, its time and peak RSS."""
    import psycopg

    from autods.config import Settings
    from autods.db.session import upgrade
    from autods.pipeline.options import JobOptions
    from autods.pipeline.plan import create_job
    from autods.pipeline.runtime import Runtime
    from bench.common import proc_status_kib

    name = f"autods_bench_plan_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url)
        settings = Settings()
        settings.database.url = url
        rt = Runtime(settings)
        start = time.perf_counter()
        create_job(rt, [str(parquet)], "plan", JobOptions(),
                   output_url=f"file:///tmp/{name}")
        elapsed = time.perf_counter() - start
        rt.engine.dispose()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return {"n": n, "seconds": elapsed, "vmhwm_kib": proc_status_kib(os.getpid(), "VmHWM")}


def _plan(n: int, parquet: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.planning", str(n), str(parquet)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(ctx: Context) -> list[Row]:
    small, large = (10_000, 100_000) if ctx.quick else (100_000, 1_000_000)
    results = {}
    for n in (small, large):
        parquet = urls_parquet(ctx, n)
        log(f"planning {n:,} URLs")
        results[n] = _plan(n, parquet)
    rate = large / results[large]["seconds"]
    return [
        Row(GROUP, f"Planning: list and register {large:,} URLs from Parquet (PostgreSQL)",
            fmt_rate(rate, "items/s"), fmt_rate(small / results[small]["seconds"], "items/s")
            + f" at {small:,}", None, f">= {RATE_TARGET:,} items/s",
            verdict="pass" if rate >= RATE_TARGET else "MISS",
            notes=[f"create_job on a fresh database: iter_source over the Parquet file "
                   f"(batches of 1,024 rows) and one COPY of the items; "
                   f"{results[large]['seconds']:.1f} s for {large:,}"]),
        target_row(GROUP, f"Planning: peak RSS ({small:,} → {large:,} URLs)",
                   fmt_mib(results[large]["vmhwm_kib"]), fmt_mib(results[small]["vmhwm_kib"]),
                   results[large]["vmhwm_kib"] / results[small]["vmhwm_kib"], "<=", 1.2,
                   ["peak resident set of the planning process, interpreter and imports "
                    "included"]),
    ]


if __name__ == "__main__":
    sys.stdout.write(json.dumps(_plan_once(int(sys.argv[1]), Path(sys.argv[2]))) + "\n")
