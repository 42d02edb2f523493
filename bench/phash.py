"""pHash stage: what preprocess computes per asset, against a raw loop and a naive one.

* autods core: read the file, ``sha256_hex`` + ``image_features`` (one process, one core).
* autods stage: the ``preprocess`` chunk stage (``run_stage``) over every chunk of an
  ingested job on SQLite (the features, band rows and stage rows it writes are deleted
  between rounds, so each round hashes all).
* raw: read the file, sha256, ``Image.open`` + ``draft('L', (64, 64))`` + ``imagehash.phash``.
* naive: ``imagehash.phash(Image.open(path))`` (full-size decode, no sha256).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import imagehash
from PIL import Image

from bench import data
from bench.common import (
    Context,
    Row,
    alternate,
    fmt_rate,
    log,
    median,
    paired_ratio,
    target_row,
    timed,
)

GROUP = "phash"


def _autods_loop(paths: list[Path]) -> None:
    from autods.core.hashing import image_features, sha256_hex

    for p in paths:
        blob = p.read_bytes()
        sha256_hex(blob)
        image_features(blob)


def _raw_loop(paths: list[Path]) -> None:
    for p in paths:
        blob = p.read_bytes()
        hashlib.sha256(blob).hexdigest()
        img = Image.open(io.BytesIO(blob))
        img.draft("L", (64, 64))
        imagehash.phash(img)


def _naive_loop(paths: list[Path]) -> None:
    for p in paths:
        imagehash.phash(Image.open(p))


class _StageJob:
    """An ingested job on SQLite whose preprocess stage can be run again and again."""

    def __init__(self, ctx: Context, paths: list[Path]) -> None:
        from autods.config import Settings
        from autods.db.session import upgrade
        from autods.pipeline.chunks import run_stage
        from autods.pipeline.plan import JobOptions, create_job
        from autods.pipeline.runtime import Runtime

        root = ctx.path("phash-stage")
        if root.exists():
            import shutil

            shutil.rmtree(root)
        folder = data.linked_folder(root / "images", paths)
        settings = Settings()
        settings.database.url = f"sqlite:///{root / 'autods.sqlite'}"
        settings.storage.url = (root / "objects").as_uri()
        settings.clip.enabled = False
        upgrade(settings.database.url)
        self.rt = Runtime(settings)
        options = JobOptions(embed=False, lfs=None)
        self.job_id = create_job(self.rt, [str(folder)], "phash-stage", options)
        from autods.db.models import Job
        from autods.db.session import session_scope

        with session_scope(self.rt.engine) as db:
            self.n_chunks = db.get(Job, self.job_id).n_chunks
        for c in range(self.n_chunks):
            run_stage(self.rt, "ingest", self.job_id, c)
        self.n_assets = self._assets()

    def _assets(self) -> int:
        from sqlalchemy import func, select

        from autods.db.models import Asset
        from autods.db.session import session_scope

        with session_scope(self.rt.engine) as db:
            return db.scalar(select(func.count()).select_from(Asset))

    def reset(self) -> None:
        from sqlalchemy import delete

        from autods.db.models import ChunkStage, Feature, PhashBand
        from autods.db.session import session_scope

        with session_scope(self.rt.engine) as db:
            db.execute(delete(PhashBand))
            db.execute(delete(Feature))
            db.execute(delete(ChunkStage).where(ChunkStage.stage == "preprocess"))

    def run(self) -> float:
        import time

        from autods.pipeline.chunks import run_stage

        self.reset()
        start = time.perf_counter()
        hashed = 0
        for c in range(self.n_chunks):
            hashed += run_stage(self.rt, "preprocess", self.job_id, c).get("hashed", 0)
        elapsed = time.perf_counter() - start
        if hashed != self.n_assets:
            raise RuntimeError(f"preprocess hashed {hashed} of {self.n_assets} assets")
        return elapsed


def run(ctx: Context) -> list[Row]:
    n = ctx.size(48, 1000)
    rounds = ctx.size(3, 7)
    paths = data.jpegs_512(ctx, n)
    # Warm up imports, Pillow's codec tables and the page cache before anything is timed:
    # every contender reads the same files, and none should pay for the disk.
    for p in paths:
        p.read_bytes()
    for loop in (_autods_loop, _raw_loop, _naive_loop):
        loop(paths[:8])

    log(f"phash: core loops over {n} 512x512 JPEGs, {rounds} rounds")
    times = alternate({
        "autods": timed(lambda: _autods_loop(paths)),
        "raw": timed(lambda: _raw_loop(paths)),
        "naive": timed(lambda: _naive_loop(paths)),
    }, rounds, "phash")
    rate = {k: n / median(v) for k, v in times.items()}
    rows = [
        target_row(GROUP, "pHash: sha256 + image_features vs raw draft loop (1 core)",
                   fmt_rate(rate["autods"]), fmt_rate(rate["raw"]),
                   paired_ratio(times["raw"], times["autods"]), ">=", 0.8,
                   [f"{n} 512x512 JPEGs (q{data.QUALITY}) read from disk, one process"]),
        target_row(GROUP, "pHash: sha256 + image_features vs naive phash(Image.open)",
                   fmt_rate(rate["autods"]), fmt_rate(rate["naive"]),
                   paired_ratio(times["naive"], times["autods"]), ">=", 2.5,
                   ["the naive loop decodes at full size and computes no sha256"]),
    ]

    log("phash: preparing an ingested SQLite job for the preprocess stage")
    stage = _StageJob(ctx, paths)
    stage.run()  # warm: engine, imports
    if stage.n_assets != len(paths):
        raise RuntimeError(f"{stage.n_assets} assets stored for {len(paths)} distinct inputs")
    times = alternate({
        "stage": stage.run,
        "raw": timed(lambda: _raw_loop(paths)),
    }, rounds, "preprocess stage")
    m = stage.n_assets
    rows.append(target_row(
        GROUP, "pHash: preprocess chunk stage (SQLite) vs raw draft loop (1 core)",
        fmt_rate(m / median(times["stage"])), fmt_rate(m / median(times["raw"])),
        paired_ratio(times["raw"], times["stage"]), ">=", 0.8,
        [f"{m} assets in {stage.n_chunks} chunks; includes the stage's queries, its reads "
         "of the chunks' packs and its writes of features and band rows; the raw loop reads "
         "the same images from their input files"]))
    return rows
