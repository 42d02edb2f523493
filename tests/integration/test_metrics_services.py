"""A job on Redis and PostgreSQL with metrics and JSON logs on, and a real prefork worker.

The worker's ``/metrics`` is scraped over HTTP from its main process (the sum over its pool
processes) and the API's through its app; every figure is held to what the database says
the job did, and to the duplicates planted in its input.
"""

from __future__ import annotations

import json
import math
import socket
import time
import urllib.request
import uuid
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

import autods
from autods.db.models import Item, Job, Label
from autods.db.session import session_scope
from autods.embedded import WorkerProcess
from autods.pipeline.runtime import Runtime
from autods.pipeline.stagetable import queues
from tests.datagen import image_folder
from tests.integration.conftest import service_settings
from tests.promtext import Samples, by_label, parse, value

pytestmark = pytest.mark.integration

TOKEN = "metrics-test-token-0123456789"
N_UNIQUE, N_EXACT, N_NEAR, N_BAD = 40, 4, 4, 3
CHUNK = 16
N_ITEMS = N_UNIQUE + N_EXACT + N_NEAR + N_BAD
N_CHUNKS = math.ceil(N_ITEMS / CHUNK)
STAGES = ("ingest", "preprocess", "label")  # no embedding: the job runs without the gpu queue


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse(response.read().decode())


def _scrape_until(url: str, done, timeout: float = 60) -> Samples:
    """Scrape until ``done(samples)``: a pool process records a task's figures after the
    task's result is stored, so the job can finish a moment before its last figures land."""
    deadline = time.monotonic() + timeout
    samples = _scrape(url)
    while not done(samples) and time.monotonic() < deadline:
        time.sleep(0.1)
        samples = _scrape(url)
    return samples


@pytest.fixture(scope="module")
def run(pg_url, redis_prefix, tmp_path_factory):
    """The job, what both endpoints said before the worker started and after the job, and
    the worker's log."""
    base = tmp_path_factory.mktemp("metrics")
    image_folder(base / "in", n_unique=N_UNIQUE, n_exact=N_EXACT, n_near=N_NEAR, bad=True)
    settings = service_settings(pg_url, f"{redis_prefix}metrics-{uuid.uuid4().hex[:6]}:",
                                "unused", "unused")
    settings.storage.url, settings.storage.endpoint_url = (base / "objects").as_uri(), None
    settings.pipeline.chunk_size, settings.pipeline.batch_size = CHUNK, 2 * CHUNK
    settings.metrics.dir, settings.metrics.port = str(base / "metrics"), _free_port()
    settings.log_json = True
    settings.api.token = SecretStr(TOKEN)
    from autods.rest import create_app

    with TestClient(create_app(settings)) as api:
        api.headers["Authorization"] = f"Bearer {TOKEN}"
        # No worker yet: every chunk's first task waits in the ingest queue.
        job = autods.submit([str(base / "in")], "metrics", settings=settings,
                            output_url=(base / "out").as_uri(), embed=False,
                            lfs="tests.parity_lfs")
        api_waiting = parse(api.get("/metrics").text)
        jobs_waiting = _jobs_by_state(settings)
        worker = WorkerProcess(settings, 2, base / "worker.log",
                               tuple(q for q in queues() if q != "gpu"),
                               f"metrics-{uuid.uuid4().hex[:6]}@%h").start()
        try:
            worker.wait_ready()
            status = job.wait(timeout=180, interval=0.2)
            url = f"http://127.0.0.1:{settings.metrics.port}/metrics"
            scraped = _scrape_until(url, lambda s: _resolved(s) == N_ITEMS and all(
                value(s, "autods_stage_duration_seconds_count", stage=st) == N_CHUNKS
                for st in STAGES))
        finally:
            worker.stop()
        api_after = parse(api.get("/metrics").text)
        unauthenticated = api.get("/metrics", headers={"Authorization": ""}).status_code
    return {"settings": settings, "job": job.id, "status": status, "worker": scraped,
            "api_waiting": api_waiting, "jobs_waiting": jobs_waiting, "api_after": api_after,
            "jobs_after": _jobs_by_state(settings), "unauthenticated": unauthenticated,
            "log": (base / "worker.log").read_text(errors="replace")}


def _resolved(samples: Samples) -> float:
    return sum(v for (name, _), v in samples.items() if name == "autods_items_total")


def _jobs_by_state(settings) -> dict[str, int]:
    with session_scope(Runtime(settings).engine) as db:
        return dict(db.execute(select(Job.status, func.count()).group_by(Job.status)).all())


def test_worker_metrics_count_what_the_job_did(run) -> None:
    status, scraped = run["status"], run["worker"]
    assert status.status == "succeeded", status.error

    with session_scope(Runtime(run["settings"]).engine) as db:
        items = {(s, r or ""): n for s, r, n in db.execute(
            select(Item.status, Item.reason, func.count()).where(Item.job_id == run["job"])
            .group_by(Item.status, Item.reason)).all()}
        probabilities = db.scalars(select(Label.probability).join(Item, Item.id == Label.item_id)
                                   .where(Item.job_id == run["job"], Label.label >= 0)).all()
    counted = {(dict(labels)["status"], dict(labels)["reason"]): n
               for (name, labels), n in scraped.items() if name == "autods_items_total"}
    assert counted == items
    assert counted[("published", "")] == status.published == N_UNIQUE
    assert by_label(scraped, "autods_duplicates_total", "rule") == status.rules == {
        "sha256": N_EXACT, "phash": N_NEAR}
    for stage in STAGES:
        assert value(scraped, "autods_stage_duration_seconds_count", stage=stage) == N_CHUNKS
        assert value(scraped, "autods_tasks_total", task=f"autods.{stage}.chunk",
                     state="success") == N_CHUNKS
    assert value(scraped, "autods_stage_duration_seconds_count", stage="embed") is None
    assert len(probabilities) == status.labelled > 0
    assert value(scraped, "autods_label_confidence_count") == len(probabilities)
    assert value(scraped, "autods_label_confidence_sum") == pytest.approx(sum(probabilities))
    assert not [k for k in scraped if k[0] == "autods_tasks_total"
                and dict(k[1])["state"] == "failure"]
    assert value(scraped, "autods_batches_repaired_total") == 0


def test_api_metrics_report_jobs_and_waiting_messages(run) -> None:
    waiting, after = run["api_waiting"], run["api_after"]
    names = list(queues())
    assert by_label(waiting, "autods_queue_depth", "queue") == {
        q: (N_CHUNKS if q == "ingest" else 0) for q in names}
    assert by_label(after, "autods_queue_depth", "queue") == dict.fromkeys(names, 0)
    for scraped, in_db in ((waiting, run["jobs_waiting"]), (after, run["jobs_after"])):
        reported = by_label(scraped, "autods_jobs", "state")
        assert reported == {s: in_db.get(s, 0) for s in ("pending", "running", "succeeded",
                                                          "failed")}
    assert run["jobs_after"]["succeeded"] >= 1
    assert run["unauthenticated"] == 401


def test_worker_logs_are_json_lines_with_the_ids_of_each_task(run) -> None:
    records = [json.loads(line) for line in run["log"].splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    done = Counter((r["stage"], r["chunk_no"]) for r in records
                   if r.get("job_id") == run["job"] and "succeeded" in r["message"]
                   and "chunk_no" in r)
    assert done == Counter({(s, c): 1 for s in STAGES for c in range(N_CHUNKS)})
    batches = {r["batch_no"] for r in records if r.get("job_id") == run["job"]
               and r.get("task") == "autods.publish.batch"}
    assert batches == set(range(math.ceil(N_CHUNKS / 2)))
