"""End to end: ``autods build`` against img2dataset on the same URL list over loopback.

Both are timed as whole processes (interpreter start-up, worker start-up and shutdown
included), with 2 processes each, the same shard size, and the same nginx serving the files.
img2dataset lives in its own virtualenv so its pins cannot disturb autods' environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from bench import data
from bench.common import (
    Context,
    Row,
    alternate,
    autods_command,
    fmt_rate,
    log,
    median,
    not_run,
    target_row,
    user_env,
    worker_log_time,
)
from bench.services import StaticServer

GROUP = "e2e"
NAME = "End to end: autods build vs img2dataset (URLs, 2 procs)"
NAME_DEFAULTS = "End to end: autods build vs img2dataset with its defaults (URLs, 2 procs)"
PROCESSES = 2
I2D_THREADS = 16
TARGET = 1.5
#: ``BENCH_E2E_URLS=50000`` runs the larger list the speed targets also name.
URLS = int(os.environ.get("BENCH_E2E_URLS", 0))


def ensure_img2dataset(ctx: Context) -> tuple[Path | None, str]:
    """The img2dataset executable in ``WORKDIR/i2d-venv`` (installed on first use), or None
    and why it could not be installed."""
    venv = ctx.path("i2d-venv")
    exe = venv / "bin" / "img2dataset"
    if exe.exists():
        return exe, ""
    log(f"installing img2dataset into {venv}")
    steps = [["python3", "-m", "venv", str(venv)],
             [str(venv / "bin" / "pip"), "install", "-q", "img2dataset"]]
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(cmd[:3])}: {exc}"
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return None, f"{' '.join(cmd[:3])} failed: {' '.join(tail)}"[:300]
    return (exe, "") if exe.exists() else (None, "img2dataset executable missing after install")


def _i2d_version(exe: Path) -> str:
    pip = exe.parent / "pip"
    proc = subprocess.run([str(pip), "show", "img2dataset"], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return "?"


def _run(cmd: list[str], env: dict[str, str], log_path: Path, timeout: float) -> float:
    start = time.perf_counter()
    with log_path.open("wb") as out:
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{Path(cmd[0]).name} exited {proc.returncode}: {tail}")
    return elapsed


def _failure(out: Path) -> str:
    """Why a build failed, from its worker's log when the worker died."""
    log_path = out / ".autods" / "worker.log"
    if log_path.exists():
        for line in log_path.read_text(errors="replace").splitlines():
            if "CRITICAL" in line or "Unrecoverable" in line:
                return "worker: " + line.split("] ", 1)[-1][:200]
    return "exit status non-zero (see autods.log)"


def _pipeline_seconds(out: Path) -> float | None:
    """From the embedded worker logging ``ready.`` to the job's final task succeeding."""
    ready = done = None
    log_path = out / ".autods" / "worker.log"
    if not log_path.exists():
        return None
    for line in log_path.read_text(errors="replace").splitlines():
        t = worker_log_time(line)
        if t is None:
            continue
        if ready is None and line.rstrip().endswith("ready."):
            ready = t
        elif "Task autods.job.finalize[" in line and " succeeded in " in line:
            done = t
    return done - ready if ready is not None and done is not None else None


def _autods_published(out: Path) -> int:
    index = json.loads((out / "index.json").read_text())
    return sum(e["nsamples"] for e in index["shardlist"])


def _i2d_successes(out: Path) -> int:
    return sum(json.loads(p.read_text()).get("successes", 0) for p in out.glob("*_stats.json"))


def run(ctx: Context) -> list[Row]:
    exe, why = ensure_img2dataset(ctx)
    if exe is None:
        return [not_run(GROUP, NAME, f"img2dataset could not be installed: {why}",
                        f">= {TARGET:g}x")]
    n = URLS or ctx.size(200, 5000)
    rounds = ctx.size(1, 3)
    shard_size = min(1000, max(1, n // PROCESSES))
    paths = data.jpegs_512(ctx, n)
    root = ctx.path("e2e")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    autods_cmd = autods_command()
    env = user_env(AUTODS_ALLOW_PRIVATE_NETWORKS="1", NO_ALBUMENTATIONS_UPDATE="1")
    counts: dict[str, int] = {}
    failures: list[str] = []
    phases: list[tuple[float, float]] = []
    with StaticServer(paths[0].parent, root / "nginx") as server:
        urls = root / "urls.txt"
        urls.write_text("".join(f"{server.url}/{p.name}\n" for p in paths))
        counter = iter(range(1_000_000))

        def autods() -> float:
            # A failed build is retried (twice at most), and every failure is reported.
            for attempt in range(3):
                out = root / f"autods-{next(counter)}"
                try:
                    elapsed = _run(autods_cmd + [
                        "build", str(urls), "--out", str(out), "--no-embed", "--workers",
                        str(PROCESSES), "--shard-size", str(shard_size), "--quiet"],
                        env, root / "autods.log", timeout=3600)
                except RuntimeError:
                    failures.append(_failure(out))
                    log(f"e2e: autods build failed ({failures[-1]}); output kept in {out}")
                    if attempt == 2:
                        raise
                    continue
                counts["autods"] = _autods_published(out)
                pipeline = _pipeline_seconds(out)
                if pipeline is not None:
                    phases.append((elapsed, pipeline))
                shutil.rmtree(out, ignore_errors=True)
                return elapsed
            raise AssertionError("unreachable")

        def img2dataset(*mode: str):
            def run_it() -> float:
                out = root / f"i2d-{next(counter)}"
                elapsed = _run([str(exe), "--url_list", str(urls), "--output_folder", str(out),
                                "--processes_count", str(PROCESSES),
                                "--thread_count", str(I2D_THREADS), *mode,
                                "--compute_hash", "sha256", "--output_format", "webdataset",
                                "--input_format", "txt",
                                "--number_sample_per_shard", str(shard_size)],
                               env, root / "img2dataset.log", timeout=3600)
                counts["img2dataset" + "".join(mode)] = _i2d_successes(out)
                shutil.rmtree(out, ignore_errors=True)
                return elapsed
            return run_it

        log(f"e2e: {n} URLs, {rounds} rounds")
        times = alternate({"autods": autods, "img2dataset": img2dataset("--resize_mode", "no"),
                           "defaults": img2dataset()}, rounds, "e2e")
        server_kind = server.kind
    a, r, d = (median(times[k]) for k in ("autods", "img2dataset", "defaults"))
    ratio = median([i / x for x, i in zip(times["autods"], times["img2dataset"], strict=True)])
    ratio_defaults = median([i / x for x, i in zip(times["autods"], times["defaults"],
                                                    strict=True)])
    notes = [f"{n} 512x512 JPEG URLs served by {server_kind}; images/s = URLs / whole-process "
             f"wall clock (median {a:.1f} s vs {r:.1f} s); shard size {shard_size} for both; "
             f"img2dataset {_i2d_version(exe)} with {I2D_THREADS} threads per process decodes "
             "and re-encodes every image (its --resize_mode no still re-encodes unless "
             "--disable_all_reencoding); autods keeps the original bytes and also dedups; "
             f"written: autods {counts.get('autods')} samples, img2dataset "
             f"{counts.get('img2dataset--resize_modeno')}"]
    if phases:
        whole, pipeline = median([w for w, _ in phases]), median([p for _, p in phases])
        notes.append(f"of autods' {whole:.1f} s, {pipeline:.1f} s (median) passed between its "
                     f"worker being ready (it starts while the job is planned, so planning is "
                     f"inside this span) and the job's final task; the other "
                     f"{whole - pipeline:.1f} s are CLI start-up, worker start-up, progress "
                     "polling and worker shutdown")
    if failures:
        notes.append(f"autods build failed {len(failures)} time(s) and was run again "
                     f"(failed runs are not timed): " + "; ".join(sorted(set(failures))))
    if "http.server" in server_kind:
        notes.append("nginx was not available: URLs were served by Python's http.server, "
                     "which may be the bottleneck for both")
    return [target_row(GROUP, NAME, fmt_rate(n / a), fmt_rate(n / r), ratio, ">=", TARGET, notes),
            target_row(GROUP, NAME_DEFAULTS, fmt_rate(n / a), fmt_rate(n / d), ratio_defaults,
                       ">=", TARGET,
                       [f"the same runs; img2dataset with its default resizing (256 px, "
                        f"border) and re-encoding (median {d:.1f} s); written: img2dataset "
                        f"{counts.get('img2dataset')}"])]
