"""Celery overhead: the distributed pipeline (Redis broker, PostgreSQL, 2 worker processes)
against a ``multiprocessing.Pool(2)`` calling the same core functions on the same files.

autods is timed from ``autods.submit(...)`` until the job's end as its row records it
(``finished_at``, written with ``succeeded``); the worker
is started and ready before, as a deployment's workers are. The pool is started before its
timing too. Each round uses a new dataset and an emptied object store, so every round does
the whole work (nothing is an exact duplicate of an earlier round).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from bench import data
from bench.common import (
    Context,
    Row,
    alternate,
    fmt_rate,
    log,
    median,
    paired_ratio,
    redone_note,
    target_row,
)
from bench.services import pg_database, pg_started_at, redis_prefix, service_settings

GROUP = "celery"
WORKER_PROCESSES = 2

# -- the reference: a process pool over the core functions ------------------------------

_FETCHER = None


def _init_worker() -> None:
    global _FETCHER
    from autods.config import FetchSettings
    from autods.core.fetch import Fetcher

    _FETCHER = Fetcher(FetchSettings(), allow_private_networks=True)


def _process_item(job: tuple[int, str]):
    """Fetch, validate, hash one input; what ingest + preprocess compute per item."""
    from autods.config import FetchSettings
    from autods.core.hashing import image_features, sha256_hex
    from autods.core.records import Rejected
    from autods.core.validate import validate_image

    ordinal, uri = job
    try:
        fetched = _FETCHER.fetch(uri)
        info = validate_image(fetched.data, fetched.declared_ext, fetched.content_type,
                              FetchSettings().max_pixels)
        sha = sha256_hex(fetched.data)
        feats = image_features(fetched.data)
    except Rejected as exc:
        return ordinal, None, exc.reason.value
    return ordinal, sha, (info.ext, feats.phash, feats.width, feats.height, feats.format,
                          feats.mode, feats.nbytes, feats.check)


def _write_group(job: tuple[str, str, list[tuple]]) -> int:
    """Write one shard of survivors, members as the pipeline writes them (jpg, txt, json)."""
    import json

    from autods.core.records import ShardSample
    from autods.core.shard import write_shard
    from autods.core.storage import LocalStore

    out, name, members = job
    samples = []
    for ordinal, uri, sha, (ext, phash, width, height, fmt, mode, nbytes, _) in members:
        blob = _FETCHER.fetch(uri).data
        fields = {"sha256": sha, "uri": uri, "modality": "image", "source": None,
                  "license": None, "nbytes": nbytes, "width": width, "height": height,
                  "format": fmt, "mode": mode,
                  "phash": f"{phash & 0xFFFFFFFFFFFFFFFF:016x}", "has_caption": False,
                  "ordinal": ordinal}
        doc = dict(fields, caption=None, key=sha[:24], meta={})
        samples.append(ShardSample(sha[:24], {ext: blob, "txt": b"",
                                              "json": json.dumps(doc, sort_keys=True).encode()},
                                   fields))
    write_shard(samples, name, LocalStore(out), {"dataset": "pool", "modality": "image"})
    return len(samples)


def pool_pipeline(pool, uris: list[str], out: Path, shard_size: int, near_k: int) -> int:
    """The whole job on a process pool; returns how many samples were published."""
    from autods.core.dedup import Candidate, ImageNearRule, resolve
    from autods.core.records import ItemStatus

    results = pool.map(_process_item, list(enumerate(uris)), chunksize=64)
    ok = [(o, sha, facts) for o, sha, facts in results if sha is not None]
    asset_ids: dict[str, int] = {}
    candidates = [Candidate(o, o, asset_ids.setdefault(sha, len(asset_ids)), facts[1],
                            check=facts[7]) for o, sha, facts in ok]
    verdicts = resolve(candidates, {}, [ImageNearRule(near_k)])
    kept = {v.item_id for v in verdicts if v.status == ItemStatus.PUBLISHED}
    survivors = [(o, uris[o], sha, facts) for o, sha, facts in ok if o in kept]
    groups: dict[str, list] = {}
    for s in survivors:  # one image format per shard, as the pipeline plans them
        groups.setdefault(s[3][0], []).append(s)
    jobs = []
    for ext, members in sorted(groups.items()):
        for start in range(0, len(members), shard_size):
            jobs.append((str(out), f"shard-{len(jobs):06d}-{ext}",
                         members[start:start + shard_size]))
    return sum(pool.map(_write_group, jobs, chunksize=1))


# -- autods ------------------------------------------------------------------------------


def release_results() -> None:
    """Drop the result subscriptions this process holds (the chords it sent), while Redis
    is still reachable, instead of from ``AsyncResult.__del__`` at interpreter exit."""
    from autods.tasks.app import app

    backend = app.backend
    for mapping in getattr(backend, "_pending_results", ()):
        for waiters in list(mapping.values()):
            for result in list(waiters.values()):
                backend.remove_pending_result(result)


@contextlib.contextmanager
def distributed_worker(ctx: Context, tag: str, concurrency: int = WORKER_PROCESSES
                       ) -> Iterator[tuple[object, object]]:
    """Settings on real Redis + a new PostgreSQL database, and a ready worker process."""
    from autods.db.session import upgrade
    from autods.embedded import WorkerProcess

    root = ctx.path(tag)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    with pg_database(tag) as pg_url, redis_prefix() as prefix:
        settings = service_settings(pg_url, prefix, root / "objects")
        upgrade(settings.database.url)
        worker = WorkerProcess(settings, concurrency, root / "worker.log",
                               name=f"{prefix.rstrip(':')}@%h")
        worker.start()
        try:
            worker.wait_ready(timeout=180)
            yield settings, worker
        finally:
            release_results()
            worker.stop()


def job_state(engine, job_id: int) -> tuple[str, str | None, float | None]:
    """The job's status, error and when it finished (seconds since the epoch)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        status, error, finished = conn.execute(
            text("SELECT status, error, finished_at FROM jobs WHERE id = :id"),
            {"id": job_id}).one()
    return status, error, finished.timestamp() if finished is not None else None


def submit_and_wait(settings, sources: list[str], dataset: str, output_url: str, worker,
                    timeout: float, **options) -> tuple[float, int]:
    """Seconds from ``autods.submit`` to the job's end as its row records it (the last
    write of its last task, on this machine's clock); and the job id. The row is read
    every 50 ms: read every 10 ms, the waiting took 5 % of the two cores the job runs
    on, which the pool it is compared with does not pay."""
    import autods
    from autods.db.session import engine_for

    engine = engine_for(settings.database.url)
    start = time.time()
    job = autods.submit(sources, dataset, settings=settings, output_url=output_url,
                        embed=False, **options)
    while True:
        status, error, finished = job_state(engine, job.id)
        if status == "succeeded":
            return finished - start, job.id
        if status == "failed":
            raise RuntimeError(f"job {job.id} failed: {error}")
        if not worker.alive():
            raise RuntimeError(f"worker exited; see {worker.logfile}")
        if time.time() - start > timeout:
            raise TimeoutError(f"job {job.id} not done after {timeout:.0f} s")
        time.sleep(0.05)


def run(ctx: Context) -> list[Row]:
    from autods.config import Settings
    from autods.pipeline.runtime import get_runtime
    from autods.pipeline.status import job_status

    n = ctx.size(200, 2000)
    rounds = ctx.size(2, 5)
    paths = data.jpegs_512(ctx, n)
    folder = data.linked_folder(ctx.path("celery-inputs", "images"), paths)
    uris = [p.as_uri() for p in sorted(folder.iterdir())]
    defaults = Settings().pipeline
    published: dict[str, int] = {}

    with distributed_worker(ctx, "celery") as (settings, worker):
        objects = Path(settings.storage.url.removeprefix("file://"))
        pool_out = ctx.path("celery", "pool-out")
        counter = iter(range(1_000_000))

        def autods_run() -> float:
            i = next(counter)
            shutil.rmtree(objects, ignore_errors=True)
            out = ctx.path("celery", f"out-{i}")
            elapsed, job_id = submit_and_wait(settings, [str(folder)], f"bench-{i}",
                                              out.as_uri(), worker, timeout=1800)
            published["autods"] = job_status(get_runtime(), job_id).statuses.get("published", 0)
            shutil.rmtree(out, ignore_errors=True)
            return elapsed

        with multiprocessing.get_context("fork").Pool(WORKER_PROCESSES, _init_worker) as pool:
            pool.map(_process_item, list(enumerate(uris[:4])))  # workers up and importing

            def pool_run() -> float:
                shutil.rmtree(pool_out, ignore_errors=True)
                start = time.perf_counter()
                published["pool"] = pool_pipeline(pool, uris, pool_out, defaults.shard_size,
                                                  settings.dedup.near_k)
                return time.perf_counter() - start

            log(f"celery: {n} images, worker -c {WORKER_PROCESSES}, {rounds} rounds")
            times = alternate({"autods": autods_run, "pool": pool_run}, rounds, "celery",
                              guard=pg_started_at)
    a, p = median(times["autods"]), median(times["pool"])
    overhead_us = median([(x - y) / n * 1e6 for x, y in
                          zip(times["autods"], times["pool"], strict=True)])
    notes = [f"{n} 512x512 JPEGs from a folder; chunk {defaults.chunk_size}, batch "
             f"{defaults.batch_size}, shard {defaults.shard_size}; per-item overhead "
             f"(t_autods - t_pool) / n = {overhead_us:,.0f} µs; published: autods "
             f"{published.get('autods')}, pool {published.get('pool')}"]
    notes += redone_note("celery")
    return [target_row(GROUP, "Celery pipeline (Redis, 2 worker procs) vs Pool(2) loop",
                       fmt_rate(n / a), fmt_rate(n / p),
                       paired_ratio(times["pool"], times["autods"]), ">=", 0.85, notes)]
