"""``python -m bench``: run the suite, print the table, write the report."""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from bench.common import BENCHMARKS, Context, Row, load_average, log, not_run
from bench.report import PREAMBLE, machine_info, render

MODULES = {
    "phash": "bench.phash",
    "celery": "bench.pipeline_overhead",
    "e2e": "bench.e2e",
    "firstrun": "bench.firstrun",
    "embed": "bench.embed",
    "scale": "bench.scale",
    "shard": "bench.shard",
    "dataset": "bench.dataset",
    "textdedup": "bench.textdedup",
    "semantic": "bench.semantic",
    "neardup": "bench.neardup",
    "labelling": "bench.labelling",
    "report": "bench.html_report",
    "planning": "bench.planning",
}
REPO = Path(__file__).resolve().parent.parent


def _names(only: str | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    return [n for n in BENCHMARKS if n in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(
        "Benchmark autods against reference implementations, side by side."))
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (a couple of minutes); the scale benchmark is skipped")
    parser.add_argument("--only", metavar="NAME",
                        help=f"comma-separated benchmarks to run: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, metavar="PATH", help=(
        "where to write the markdown report (default: docs/benchmarks.md for a full run, "
        "WORKDIR/benchmarks.md for --quick or --only)"))
    parser.add_argument("--workdir", type=Path, default=REPO / ".bench",
                        help="inputs cache and scratch space (default: .bench/)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = _names(args.only)
    ctx = Context(args.workdir, quick=args.quick)
    partial = args.quick or bool(args.only)
    out = args.out or (ctx.path("benchmarks.md") if partial else REPO / "docs" / "benchmarks.md")
    os.environ.setdefault("AUTODS_ALLOW_PRIVATE_NETWORKS", "1")
    started, load_before = time.time(), load_average()
    # Measured before any benchmark writes, so it describes the disk, not the load we add.
    info = machine_info(ctx.workdir)
    rows: list[Row] = []
    for name in names:
        if name == "scale" and ctx.quick:
            rows.append(not_run("scale", "Scale (10k vs 100k items, 10k vs 1M hashes)",
                                "skipped in --quick"))
            continue
        log(f"--- {name}")
        t0 = time.monotonic()
        try:
            module = importlib.import_module(MODULES[name])
            rows += module.run(ctx)
        except Exception as exc:  # one broken benchmark must not hide the others
            traceback.print_exc()
            rows.append(not_run(name, name, f"error: {type(exc).__name__}: {exc}"[:300]))
        # Celery result objects left in reference cycles unsubscribe from Redis when they
        # are collected; collect them now, not during interpreter shutdown.
        gc.collect()
        log(f"--- {name} took {time.monotonic() - t0:.0f} s")
    elapsed = time.time() - started
    run = {
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "mode": "quick" if ctx.quick else "full",
        "date": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
        "duration": f"{elapsed / 60:.1f} min",
        "load average (1/5/15 min) before / after": f"{load_before} / {load_average()}",
    }
    results = render(rows, info, run)
    sys.stdout.write(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(PREAMBLE + "\n" + results)
    log(f"report written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
