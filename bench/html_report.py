"""The dataset report of a 10,000-input build: its size, the time to write it, and how long
a real headless Chromium takes to load it.

The build is the embedded ``autods build`` of 64x64 JPEGs with exact and near copies
planted after their originals and a few corrupt files, embedded by the small randomly
initialised CLIP model (the map needs vectors, not good ones), labelled by the bundled
sample's LFs. Targets: the page under 20 MB and loaded in under 2 s.

``python -m bench.html_report --screenshot docs/report.png`` renders the bundled sample's
report and saves the top of it as the README's picture.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import Context, Row, autods_command, log, median
from bench.data import jpeg_64_folders

GROUP = "report"
SIZE_TARGET_MB = 20.0
LOAD_TARGET_S = 2.0
EXACT_COPIES = 300
NEAR_COPIES = 300
CORRUPT = 20
LOADS = 5
REPO = Path(__file__).resolve().parent.parent
ENV = {"AUTODS_CLIP_MODEL": "autods-tiny-vit", "AUTODS_CLIP_PRETRAINED": "random"}


def _inputs(ctx: Context, n: int) -> Path:
    """``n`` inputs in one folder: originals, then exact and near copies, then corrupt files."""
    from PIL import Image

    from examples.sampledata import near_duplicate_bytes

    originals = sorted(p for d in jpeg_64_folders(ctx, 10) for p in d.glob("*.jpg"))
    n_orig = n - EXACT_COPIES - NEAR_COPIES - CORRUPT
    root = ctx.path("inputs", f"report-{n}")
    if (root / ".complete").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    for p in originals[:n_orig]:
        target = root / p.name
        if not target.exists():
            os.link(p, target)
    for i in range(EXACT_COPIES):
        src = originals[i * 7 % n_orig]
        (root / f"{src.stem}_zcopy.jpg").write_bytes(src.read_bytes())
    for i in range(NEAR_COPIES):
        src = originals[(i * 11 + 3) % n_orig]
        with Image.open(src) as img:
            (root / f"{src.stem}_znear{i}.jpg").write_bytes(near_duplicate_bytes(img))
    for i in range(CORRUPT):
        (root / f"zz_corrupt_{i}.jpg").write_bytes(originals[i].read_bytes()[:300])
    (root / ".complete").touch()
    return root


def _build(sources: list[Path], out: Path) -> float:
    start = time.monotonic()
    subprocess.run(autods_command() + ["build", *map(str, sources), "--out", str(out),
                                       "--lfs", "examples.sample_lfs", "--quiet"],
                   cwd=REPO, env={**os.environ, **ENV}, check=True, capture_output=True)
    return time.monotonic() - start


def _report(out: Path, html: Path) -> float:
    start = time.monotonic()
    subprocess.run(autods_command() + ["report", str(out), "--out", str(html)], cwd=REPO,
                   env={**os.environ, **ENV}, check=True, capture_output=True)
    return time.monotonic() - start


def _loads(html: Path) -> tuple[list[float], list[str]]:
    """Seconds from navigation to the end of the load event, in a fresh tab each time."""
    from tests.browser import chromium, load_seconds, page_problems

    times = []
    with chromium() as driver:
        for _ in range(LOADS):
            driver.get("about:blank")
            driver.get(html.as_uri())
            times.append(load_seconds(driver))
        problems = page_problems(driver)
    return times, problems


def run(ctx: Context) -> list[Row]:
    n = 1000 if ctx.quick else 10_000
    source = _inputs(ctx, n)
    with tempfile.TemporaryDirectory(dir=ctx.workdir) as tmp:
        out, html = Path(tmp) / "ds", Path(tmp) / "report.html"
        log(f"building {n:,} inputs")
        built = _build([source], out)
        log("writing the report")
        wrote = _report(out, html)
        size_mb = html.stat().st_size / 1e6
        times, problems = _loads(html)
    load = median(times)
    notes = [f"{n:,} inputs (64x64 JPEGs, {EXACT_COPIES} exact and {NEAR_COPIES} near copies, "
             f"{CORRUPT} corrupt), embedded build with autods-tiny-vit in {built:.0f} s; "
             f"`autods report` took {wrote:.1f} s; median of {LOADS} loads in headless "
             f"Chromium (navigation start to load event end): "
             + ", ".join(f"{t:.2f}" for t in times)
             + (f"; page problems: {problems}" if problems else "; no console error, every "
                "image loaded")]
    return [Row(GROUP, f"Report of a {n:,}-input build: load in headless Chromium",
                f"{load:.2f} s median", f"{max(times):.2f} s slowest", None,
                f"< {LOAD_TARGET_S:g} s", verdict="pass" if max(times) < LOAD_TARGET_S
                and not problems else "MISS", notes=notes),
            Row(GROUP, f"Report of a {n:,}-input build: file size", f"{size_mb:.1f} MB", "—",
                None, f"< {SIZE_TARGET_MB:g} MB",
                verdict="pass" if size_mb < SIZE_TARGET_MB else "MISS")]


def screenshot(png: Path) -> None:
    """The bundled sample's report, built afresh, its top 1300x1500 pixels as ``png``."""
    from tests.browser import chromium

    sample = REPO / "examples" / "sample"
    with tempfile.TemporaryDirectory() as tmp:
        out, html = Path(tmp) / "ds", Path(tmp) / "report.html"
        _build([sample / "images", sample / "texts.jsonl"], out)
        _report(out, html)
        with chromium(1300, 1500) as driver:
            driver.get(html.as_uri())
            driver.save_screenshot(str(png))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.html_report")
    parser.add_argument("--screenshot", type=Path, required=True)
    screenshot(parser.parse_args().screenshot)
