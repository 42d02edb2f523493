"""Bucket notifications: exactly once for what is published, again for what was not."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from autods.core.records import ItemStatus
from autods.core.s3events import parse_notification
from autods.db.models import Item
from autods.db.session import session_scope
from autods.pipeline.events import ingest_created
from autods.pipeline.lifecycle import fail_job
from autods.pipeline.options import JobOptions
from autods.tasks.canvas import start_job

OPTIONS = JobOptions(embed=False)


def _note(*keys: str):
    return parse_notification({"Records": [
        {"eventName": "s3:ObjectCreated:Put",
         "s3": {"bucket": {"name": "raw"}, "object": {"key": k, "eTag": f"etag-{k}"}}}
        for k in keys]})


def test_a_replay_is_a_duplicate_while_the_job_lives(runtime):
    first = ingest_created(runtime, _note("a.jpg", "b.jpg"), "ev", OPTIONS, start_job)
    again = ingest_created(runtime, _note("a.jpg", "b.jpg", "c.jpg"), "ev", OPTIONS, start_job)

    assert (first.accepted, first.duplicates) == (2, 0)
    assert (again.accepted, again.duplicates) == (1, 2)


def test_a_replay_after_the_job_failed_ingests_the_objects_again(runtime):
    first = ingest_created(runtime, _note("a.jpg", "b.jpg"), "ev", OPTIONS, start_job)
    fail_job(runtime, first.job_id, "a bug")

    again = ingest_created(runtime, _note("a.jpg", "b.jpg"), "ev", OPTIONS, start_job)

    assert (again.accepted, again.duplicates) == (2, 0) and again.job_id != first.job_id


def test_a_replay_takes_again_only_the_objects_whose_item_failed(runtime):
    first = ingest_created(runtime, _note("a.jpg", "b.jpg"), "ev", OPTIONS, start_job)
    with session_scope(runtime.engine) as db:
        db.execute(update(Item).where(Item.job_id == first.job_id, Item.uri == "s3://raw/b.jpg")
                   .values(status=ItemStatus.FAILED, reason="not_found"))

    again = ingest_created(runtime, _note("a.jpg", "b.jpg"), "ev", OPTIONS, start_job)

    assert (again.accepted, again.duplicates) == (1, 1)


def test_claims_are_released_when_the_job_cannot_start(runtime):
    def broken_start(*args, **kwargs):
        raise RuntimeError("broker down")

    with pytest.raises(RuntimeError):
        ingest_created(runtime, _note("a.jpg"), "ev", OPTIONS, broken_start)

    assert ingest_created(runtime, _note("a.jpg"), "ev", OPTIONS, start_job).accepted == 1
