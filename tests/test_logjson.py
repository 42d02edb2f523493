"""JSON log lines: one object per record, with the ids bound around a task."""

from __future__ import annotations

import io
import json
import logging

import pytest

from autods import logjson


@pytest.fixture
def lines():
    """A logger writing JSON lines into a buffer; yields (logger, read lines)."""
    stream = io.StringIO()
    logger = logging.getLogger("autods.test_logjson")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)  # whatever level an earlier worker left on the root
    logjson.install(logger)
    yield logger, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_records_carry_the_bound_ids_until_unbound(lines) -> None:
    logger, read = lines
    token = logjson.bind(job_id=4, chunk_no=2, stage="ingest", batch_no=None)
    logger.warning("chunk %d slow", 2)
    logjson.unbind(token)
    logger.warning("between tasks")

    inside, outside = read()
    assert inside["message"] == "chunk 2 slow" and inside["level"] == "WARNING"
    assert inside["logger"] == "autods.test_logjson"
    assert (inside["job_id"], inside["chunk_no"], inside["stage"]) == (4, 2, "ingest")
    assert "batch_no" not in inside  # unknown ids are left out, not null
    assert not {"job_id", "chunk_no", "stage"} & set(outside)
    assert inside["time"].endswith("+00:00") and isinstance(inside["process"], int)


def test_a_records_own_fields_win_and_tracebacks_are_kept(lines) -> None:
    logger, read = lines
    token = logjson.bind(job_id=4)
    try:
        raise ValueError("bad \u00e9")
    except ValueError:
        logger.exception("failed", extra={"job_id": 9, "shard_id": 3})
    finally:
        logjson.unbind(token)

    (record,) = read()
    assert (record["job_id"], record["shard_id"]) == (9, 3)
    assert "ValueError: bad \u00e9" in record["exc_info"]


def test_worker_log_json_option_sets_the_setting(monkeypatch) -> None:
    from typer.testing import CliRunner

    from autods.cli import app
    from autods.config import Settings

    seen: dict = {}

    def run_worker(queues: list[str], hostname: str, *args) -> int:  # what it would read
        seen.update(queues=queues, hostname=hostname, setting=Settings().log_json)
        return 0

    monkeypatch.setenv("AUTODS_LOG_JSON", "0")  # restored (unset) after the test
    monkeypatch.setattr("autods.tasks.worker.run_worker", run_worker)

    result = CliRunner().invoke(app, ["worker", "--queues", "ingest", "--log-json"])

    assert result.exit_code == 0, result.output
    assert seen == {"queues": ["ingest"], "hostname": "ingest@%h", "setting": True}
