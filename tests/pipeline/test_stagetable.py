"""The stage table: what it derives, and a toy stage added by one row that a job then
runs end to end through a real worker on the in-memory broker."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from autods.core.records import ItemStatus
from autods.db.models import Asset, Item
from autods.db.session import session_scope
from autods.pipeline import stagetable
from autods.pipeline.options import JobOptions
from autods.pipeline.plan import create_job
from autods.pipeline.stagetable import preloads_for_queues, queues, stages_for
from autods.pipeline.status import job_status
from autods.progress import watch
from autods.tasks.canvas import chunk_chain, dispatch
from autods.tasks.routing import routes
from tests.datagen import image_folder, texts_file
from tests.toystage import TOY, inventory_key, with_toy_stage


def test_the_table_decides_stages_queues_and_routes():
    assert [s.name for s in stages_for(JobOptions(embed=False))] == ["ingest", "preprocess"]
    assert [s.name for s in stages_for(JobOptions(embed=True, lfs="m"))] == [
        "ingest", "preprocess", "embed", "label"]
    assert queues() == ("ingest", "preprocess", "gpu", "label", "shard")
    assert routes()["autods.embed.chunk"] == {"queue": "gpu"}
    assert preloads_for_queues(["gpu"]) == ["torch", "open_clip"]
    assert "snorkel.labeling.model" in preloads_for_queues(["shard"])


def test_every_row_names_a_real_option_and_function():
    options = set(JobOptions.__dataclass_fields__)
    for stage in stagetable.stages():
        assert stage.when is None or stage.when in options, stage
        assert callable(stage.load()), stage


@pytest.fixture
def toy_table(monkeypatch):
    """The stage table with the toy row, in place before the app is configured."""
    monkeypatch.setattr(stagetable, "CHUNK_STAGES", with_toy_stage())
    from autods.tasks.stages import chunk_task

    chunk_task(TOY)
    return TOY


def test_one_row_adds_a_stage_to_queues_routes_and_chains(toy_table):
    assert queues()[-2:] == ("inventory", "shard")
    assert routes()["autods.inventory.chunk"] == {"queue": "inventory"}
    names = [t.task for t in chunk_chain(1, 0, JobOptions(embed=False)).tasks]
    assert names == ["autods.ingest.chunk", "autods.preprocess.chunk", "autods.inventory.chunk"]


def test_a_toy_stage_runs_over_every_chunk_of_a_job(toy_table, runtime, memory_worker,
                                                     tmp_path):
    image_folder(tmp_path / "in", n_unique=9, n_exact=2, n_near=1, bad=True)
    texts_file(tmp_path / "texts.jsonl", 3)
    job = create_job(runtime, [str(tmp_path / "in"), str(tmp_path / "texts.jsonl")], "ds",
                     JobOptions(chunk_size=4, batch_size=8, shard_size=5, embed=False),
                     output_url=(tmp_path / "out").as_uri())

    dispatch(runtime, job)
    status = watch(lambda: job_status(runtime, job), interval=0.1, show=False, timeout=120)

    assert status.status == "succeeded", status.error
    assert list(status.stages) == ["ingest", "preprocess", "inventory", "dedup", "shard"]
    assert status.stages["inventory"] == status.n_items
    listed = {}
    for chunk_no in range(-(-status.n_items // 4)):
        for line in runtime.store().get(inventory_key(job, chunk_no)).decode().splitlines():
            ordinal, sha = line.split()
            listed[int(ordinal)] = sha
    with session_scope(runtime.engine) as db:
        kept = dict(db.execute(
            select(Item.ordinal, Asset.sha256).join(Asset, Asset.id == Item.asset_id)
            .where(Item.job_id == job, Item.status.in_((
                ItemStatus.PUBLISHED, ItemStatus.EXACT_DUPLICATE,
                ItemStatus.NEAR_DUPLICATE)))).all())
    # Every item that passed ingest and preprocess, and only those, seen by the toy stage.
    assert listed == kept and len(kept) == status.n_items - status.statuses["failed"]
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert sum(e["nsamples"] for e in index["shardlist"]) == status.published
