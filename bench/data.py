"""Benchmark inputs: seeded JPEGs from ``examples.sampledata``, generated once and cached.

Images are structured (gradients, shapes, accents), not noise, so JPEG sizes, decoding cost
and pHash distances resemble photos more than random pixels would. A file's bytes depend
only on its seed, size and quality, so a cache written by an earlier run is reused as is.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
from pathlib import Path

from bench.common import Context, log

QUALITY = 90
SEED_512 = 0
SEED_64 = 1_000_000
PER_DIR_64 = 1000


def _jpeg(seed: int, side: int) -> bytes:
    from examples.sampledata import structured_image

    buf = io.BytesIO()
    structured_image(seed, (side, side)).save(buf, format="JPEG", quality=QUALITY)
    return buf.getvalue()


def _write(job: tuple[str, int, int]) -> None:
    path, seed, side = job
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(_jpeg(seed, side))
    os.replace(tmp, path)


def _generate(jobs: list[tuple[str, int, int]], what: str) -> None:
    if not jobs:
        return
    log(f"generating {len(jobs)} {what} (cached for later runs)")
    procs = max(1, min(len(os.sched_getaffinity(0)), 8))
    if len(jobs) < 200 or procs == 1:
        for job in jobs:
            _write(job)
        return
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        for _ in pool.imap_unordered(_write, jobs, chunksize=64):
            pass


def jpegs_512(ctx: Context, n: int) -> list[Path]:
    """``n`` 512x512 JPEGs, seeds 0..n-1, in ``inputs/img512``."""
    root = ctx.path("inputs", "img512")
    root.mkdir(parents=True, exist_ok=True)
    paths = [root / f"{i:06d}.jpg" for i in range(n)]
    _generate([(str(p), SEED_512 + i, 512) for i, p in enumerate(paths) if not p.exists()],
              "512x512 JPEGs")
    return paths


def jpeg_64_folders(ctx: Context, n_dirs: int) -> list[Path]:
    """``n_dirs`` folders of 1000 64x64 JPEGs each, in ``inputs/img64/dNNN``."""
    root = ctx.path("inputs", "img64")
    dirs = [root / f"d{d:03d}" for d in range(n_dirs)]
    jobs = []
    for d, folder in enumerate(dirs):
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(PER_DIR_64):
            index = d * PER_DIR_64 + i
            path = folder / f"{index:07d}.jpg"
            if not path.exists():
                jobs.append((str(path), SEED_64 + index, 64))
    _generate(jobs, "64x64 JPEGs")
    return dirs


def linked_folder(target: Path, files: list[Path]) -> Path:
    """A folder holding exactly ``files`` (hard links, so nothing is copied)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for f in files:
        try:
            os.link(f, target / f.name)
        except OSError:
            shutil.copyfile(f, target / f.name)
    return target
