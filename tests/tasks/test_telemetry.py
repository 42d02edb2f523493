"""A worker's signals: tasks timed and counted, retries and storage errors counted, log
records carrying the ids of the task that wrote them; nothing connected unless asked."""

from __future__ import annotations

import io
import json
import logging

import pytest
from celery.exceptions import Retry
from celery.signals import task_failure, task_retry

from autods import logjson
from autods.core.records import StorageError
from autods.pipeline.options import JobOptions
from autods.pipeline.plan import create_job
from autods.tasks import stages, telemetry
from tests.datagen import image_folder
from tests.promtext import value


@pytest.fixture
def wired(monkeypatch, tmp_path, metrics_on):
    """What ``worker_init`` does with metrics and JSON logs on; undone afterwards."""
    monkeypatch.setenv("AUTODS_METRICS_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("AUTODS_LOG_JSON", "1")
    telemetry.configure_worker(sender=None)
    yield metrics_on
    for signal, receiver in telemetry.LOG_RECEIVERS + telemetry.METRIC_RECEIVERS:
        signal.disconnect(receiver)


@pytest.fixture
def json_trace_log():
    """The lines Celery's tracer logs ("Task ... succeeded"), as JSON."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("celery.app.trace")
    logger.addHandler(handler)
    logjson.install(logger)
    level = logger.level
    logger.setLevel(logging.INFO)  # whatever level an earlier worker left on the root
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_nothing_is_connected_unless_configured(monkeypatch) -> None:
    from celery.signals import task_postrun, task_prerun

    monkeypatch.delenv("AUTODS_METRICS_DIR", raising=False)
    monkeypatch.delenv("AUTODS_LOG_JSON", raising=False)
    before = (len(task_prerun.receivers), len(task_postrun.receivers))

    telemetry.configure_worker(sender=None)

    assert (len(task_prerun.receivers), len(task_postrun.receivers)) == before


def test_ids_come_from_the_task_arguments_by_name() -> None:
    ingest = stages.CHUNK_TASKS["ingest"]
    assert telemetry.task_ids(ingest, (3, 7), {}) == {"job_id": 3, "chunk_no": 7}
    assert telemetry.task_ids(stages.publish_batch, [None], {"job_id": 3, "batch_no": 1}) == {
        "job_id": 3, "batch_no": 1}
    assert telemetry.task_ids(stages.write_shard, (12,), None) == {"shard_id": 12}
    assert telemetry.task_ids(ingest, (1, 2, 3, 4), {}) == {}  # does not fit: no ids
    assert telemetry.stage_of("autods.preprocess.chunk") == "preprocess"
    assert telemetry.stage_of("autods.publish.batch") is None


def test_chunk_tasks_are_timed_counted_and_logged_with_their_ids(eager, wired, json_trace_log,
                                                                 tmp_path) -> None:
    image_folder(tmp_path / "in", n_unique=6)
    job = create_job(eager, [str(tmp_path / "in")], "d",
                     JobOptions(chunk_size=4, batch_size=8, embed=False),
                     output_url=(tmp_path / "out").as_uri())

    for chunk_no in (0, 1):
        stages.CHUNK_TASKS["ingest"].delay(job, chunk_no)

    scraped = wired()
    assert value(scraped, "autods_stage_duration_seconds_count", stage="ingest") == 2
    assert value(scraped, "autods_tasks_total", task="autods.ingest.chunk",
                 state="success") == 2
    lines = [json.loads(line) for line in json_trace_log.getvalue().splitlines()]
    done = [(r["job_id"], r["chunk_no"], r["stage"]) for r in lines if "succeeded" in r["message"]]
    assert done == [(job, 0, "ingest"), (job, 1, "ingest")]
    assert all(r["task"] == "autods.ingest.chunk" and r["task_id"] for r in lines)


def test_retries_are_counted_by_stage_and_storage_errors_by_operation(wired) -> None:
    preprocess = stages.CHUNK_TASKS["preprocess"]

    task_retry.send(sender=preprocess, request=None,
                    reason=Retry(exc=StorageError("get", "S3 get k: timeout")))
    task_retry.send(sender=preprocess, request=None, reason=Retry(exc=TimeoutError()))
    task_failure.send(sender=stages.write_shard, task_id="t", exception=StorageError(
        "put", "S3 put k: denied"))

    scraped = wired()
    assert value(scraped, "autods_chunk_retries_total", stage="preprocess") == 2
    assert value(scraped, "autods_storage_errors_total", operation="get") == 1
    assert value(scraped, "autods_storage_errors_total", operation="put") == 1
