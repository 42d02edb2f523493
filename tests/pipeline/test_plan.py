"""Planning a job: what an unlistable source, an interrupted plan, a wrong output location
and a broken labelling module leave behind (nothing)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from autods.core.records import JobState, LabellingModuleError, OutputConflict, SourceError
from autods.db.models import Dataset, Item, Job
from autods.db.session import session_scope
from autods.pipeline import plan
from autods.pipeline.options import JobOptions
from autods.pipeline.plan import create_job, find_resumable
from tests.datagen import image_folder


def _count(rt, model) -> int:
    with session_scope(rt.engine) as db:
        return db.scalar(select(func.count()).select_from(model))


def test_a_source_that_cannot_be_listed_leaves_no_job_and_no_dataset(runtime, tmp_path):
    image_folder(tmp_path / "in", n_unique=3)

    with pytest.raises(SourceError, match="not found"):
        create_job(runtime, [str(tmp_path / "in"), str(tmp_path / "missing")], "d",
                   JobOptions(embed=False))

    assert (_count(runtime, Job), _count(runtime, Item), _count(runtime, Dataset)) == (0, 0, 0)


def test_an_existing_dataset_keeps_its_output_location(runtime, tmp_path):
    image_folder(tmp_path / "in", n_unique=1)
    create_job(runtime, [str(tmp_path / "in")], "d", JobOptions(embed=False),
               output_url=(tmp_path / "a").as_uri())

    with pytest.raises(OutputConflict, match="writes to"):
        create_job(runtime, [str(tmp_path / "in")], "d", JobOptions(embed=False),
                   output_url=(tmp_path / "b").as_uri())
    assert _count(runtime, Job) == 1


def test_a_plan_interrupted_while_listing_is_planned_again_not_resumed(runtime, tmp_path,
                                                                      monkeypatch):
    image_folder(tmp_path / "in", n_unique=6)
    options, sources = JobOptions(embed=False, chunk_size=2), [str(tmp_path / "in")]
    real = plan._insert_items

    def dies_while_listing(rt, job_id, items, chunk_size):
        with session_scope(rt.engine) as db:  # what a killed planner leaves: some items
            db.execute(Item.__table__.insert(), [{
                "job_id": job_id, "ordinal": 0, "chunk_no": 0, "modality": "image",
                "uri": "x", "status": "pending", "meta": {}}])
        raise KeyboardInterrupt

    monkeypatch.setattr(plan, "_insert_items", dies_while_listing)
    with pytest.raises(KeyboardInterrupt):
        create_job(runtime, sources, "d", options)
    assert _count(runtime, Job) == 0  # the interrupt rolled the job back

    # A planner killed outright cannot clean up: its job stays pending, unplanned.
    with session_scope(runtime.engine) as db:
        ds = Dataset(name="d", output_url=(tmp_path / "o").as_uri(), near_k=4)
        db.add(ds)
        db.flush()
        db.add(Job(dataset_id=ds.id, status=JobState.PENDING, sources=sources,
                   params=options.as_params(),
                   fingerprint=plan.fingerprint(sources, "d", options)))
    monkeypatch.setattr(plan, "_insert_items", real)

    assert find_resumable(runtime, sources, "d", options) is None
    assert _count(runtime, Job) == 0
    job = create_job(runtime, sources, "d", options)
    with session_scope(runtime.engine) as db:
        assert db.get(Job, job).n_items == 6


def test_a_labelling_module_that_does_not_load_stops_the_job_before_any_row(runtime,
                                                                           tmp_path):
    from autods.tasks.canvas import start_job

    image_folder(tmp_path / "in", n_unique=2)

    with pytest.raises(LabellingModuleError, match="no_such_lf_module"):
        start_job(runtime, [str(tmp_path / "in")], "d",
                  JobOptions(embed=False, lfs="no_such_lf_module"))
    assert _count(runtime, Job) == 0
