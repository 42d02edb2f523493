"""First run: ``autods build`` on the bundled sample, as ``make sample`` runs it.

The whole process is timed (interpreter start-up, the workers' imports, the model and the
label model included), with CLIP at random weights, the sample's labelling functions and
the machine's cores. "First progress" is the first ingest chunk finishing: the moment the
progress bars first move. Targets: at most 3 s to it and 10 s to the end. Each round
builds into a new folder, so nothing is resumed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.common import Context, Row, autods_command, log, median, user_env, worker_log_time

GROUP = "firstrun"
SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sample"
FIRST_TARGET_S, WHOLE_TARGET_S = 3.0, 10.0


def _first_ingest(out: Path) -> float | None:
    """When (epoch seconds) the first ``autods.ingest.chunk`` succeeded, from the workers'
    logs."""
    stamps = [worker_log_time(line)
              for log_path in (out / ".autods").glob("worker*.log")
              for line in log_path.read_text(errors="replace").splitlines()
              if "autods.ingest.chunk[" in line and " succeeded in " in line]
    stamps = [t for t in stamps if t is not None]
    return min(stamps) if stamps else None


def _build(ctx: Context, n: int) -> tuple[float, float]:
    """(seconds to the first ingested chunk, seconds to the process's exit) of one build."""
    out = ctx.path("firstrun", f"ds-{n}")
    shutil.rmtree(out, ignore_errors=True)
    env = user_env(AUTODS_CLIP_PRETRAINED="random")
    cmd = autods_command() + ["build", str(SAMPLE / "images"), str(SAMPLE / "texts.jsonl"),
                              "--out", str(out), "--lfs", "examples.sample_lfs", "--quiet"]
    start = time.time()
    proc = subprocess.run(cmd, env=env, cwd=SAMPLE.parent.parent, capture_output=True,
                          text=True, timeout=600)
    whole = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(f"autods build failed: {(proc.stdout + proc.stderr)[-2000:]}")
    first = _first_ingest(out)
    if first is None:
        raise RuntimeError(f"no ingest chunk in the worker logs of {out}")
    shutil.rmtree(out, ignore_errors=True)
    return first - start, whole


def run(ctx: Context) -> list[Row]:
    rounds = ctx.size(1, 5)
    _build(ctx, -1)  # the first build after an install also compiles bytecode: not timed
    log(f"firstrun: {rounds} builds of the bundled sample")
    results = [_build(ctx, n) for n in range(rounds)]
    first, whole = median([r[0] for r in results]), median([r[1] for r in results])
    runs = ", ".join(f"{f:.1f}/{w:.1f}" for f, w in results)
    note = [f"`autods build examples/sample/images examples/sample/texts.jsonl --lfs "
            f"examples.sample_lfs` with random ViT-B-32 weights, {os.cpu_count()} cores; "
            f"median of {rounds} builds (first progress/whole, s: {runs}), after one "
            "untimed build"]
    return [
        Row(GROUP, "First run: the sample's first ingested chunk", f"{first:.1f} s", "—",
            None, f"<= {FIRST_TARGET_S:g} s",
            verdict="pass" if first <= FIRST_TARGET_S else "MISS", notes=note),
        Row(GROUP, "First run: the sample's whole build (embedding and labels)",
            f"{whole:.1f} s", "—", None, f"<= {WHOLE_TARGET_S:g} s",
            verdict="pass" if whole <= WHOLE_TARGET_S else "MISS"),
    ]
