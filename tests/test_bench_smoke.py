"""The benchmark suite runs: its cheap parts at tiny sizes produce a complete table.

Only the shape of the report is checked (rows present, ratios numeric); timings are never
asserted, since they depend on the machine and its load.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROWS = (
    "pHash: sha256 + image_features vs raw draft loop",
    "pHash: sha256 + image_features vs naive phash(Image.open)",
    "pHash: preprocess chunk stage (SQLite) vs raw draft loop",
    "Embedding: embed_images vs raw encode_image (autods-tiny-vit, CPU)",
    "Sharding: write_shard vs plain tarfile",
)
_RATIO = re.compile(r"^\d+\.\d\dx$")


def _table_rows(report: str) -> dict[str, list[str]]:
    rows = {}
    for line in report.splitlines():
        if not line.startswith("| ") or line.startswith("| benchmark") or "---" in line:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows[re.sub(r"( \[\d+\])+$", "", cells[0])] = cells
    return rows


@pytest.mark.timeout(90)
def test_quick_suite_reports_every_cheap_row(tmp_path):
    out = tmp_path / "bench.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "phash,shard,embed",
         "--workdir", str(tmp_path / "work"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=85,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = out.read_text()
    assert report.endswith(proc.stdout), "stdout carries the same results as the file"
    for heading in ("## How to run", "## What each benchmark measures", "Machine:"):
        assert heading in report
    for name in ("cores", "CPU", "Python", "Pillow", "imagehash", "torch", "open_clip",
                 "celery", "webdataset"):
        assert re.search(rf"^- {re.escape(name)}: \S", report, re.M), name
    rows = _table_rows(report)
    for name in ROWS:
        found = [cells for row, cells in rows.items() if row.startswith(name)]
        assert len(found) == 1, f"missing row {name!r} in:\n{report}"
        benchmark, autods, reference, ratio, target, verdict = found[0]
        assert _RATIO.match(ratio), (name, ratio)
        assert target.startswith(">="), (name, target)
        assert verdict in ("pass", "**MISS**"), (name, verdict)
    gpu = [cells for name, cells in rows.items()
           if name.startswith("Embedding:") and name.endswith(("(GPU)", "CUDA)"))]
    assert len(gpu) == 1, "the GPU row is there, run or not"
    assert gpu[0][5].startswith("not run") or _RATIO.match(gpu[0][3])
