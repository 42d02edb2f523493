"""A toy stage added by one table row runs through a real worker process on Redis and
PostgreSQL: the worker's table has the row (its app module adds it), the submitting
process's too, and the stage's own queue is routed and consumed."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

import autods
from autods.db.models import Item
from autods.db.session import engine_for, session_scope
from autods.embedded import WorkerProcess
from autods.pipeline import stagetable
from tests.datagen import image_folder
from tests.integration.conftest import service_settings
from tests.toystage import inventory_key, with_toy_stage

pytestmark = pytest.mark.integration


def test_a_toy_stage_runs_on_its_own_queue_through_redis(pg_url, redis_prefix, tmp_path,
                                                        monkeypatch):
    monkeypatch.setattr(stagetable, "CHUNK_STAGES", with_toy_stage())
    settings = service_settings(pg_url, f"{redis_prefix}toy-{uuid.uuid4().hex[:6]}:",
                                "unused", "unused")
    settings.storage.url = (tmp_path / "objects").as_uri()
    settings.storage.endpoint_url = None
    settings.clip.enabled = False
    image_folder(tmp_path / "in", n_unique=10, n_exact=1)
    worker = WorkerProcess(settings, 2, tmp_path / "worker.log", name="toy@%h",
                           app="tests.toystage_app:app").start()
    try:
        worker.wait_ready()
        assert "inventory" in worker.queues
        job = autods.submit([str(tmp_path / "in")], f"toy-{uuid.uuid4().hex[:6]}",
                            settings=settings, output_url=(tmp_path / "out").as_uri(),
                            chunk_size=4, batch_size=8, shard_size=4)
        status = job.wait(timeout=180)
    finally:
        worker.stop()

    assert status.status == "succeeded", status.error
    assert status.stages["inventory"] == 11 and status.published == 10
    log = (tmp_path / "worker.log").read_text()
    assert "autods.inventory.chunk" in log
    listed = set()
    for chunk_no in range(3):
        data = (tmp_path / "objects" / inventory_key(job.id, chunk_no)).read_text()
        listed |= {int(line.split()[0]) for line in data.splitlines()}
    with session_scope(engine_for(pg_url)) as db:
        ordinals = set(db.scalars(select(Item.ordinal).where(Item.job_id == job.id)))
    assert listed == ordinals
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert sum(e["nsamples"] for e in index["shardlist"]) == 10
