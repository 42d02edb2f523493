"""The API under a fuzzer: schemathesis with every check (stateful sequences included)
against the real app on PostgreSQL and Redis, and a hypothesis fuzz of bucket
notifications: never a 500, never an undeclared status or body, every valid record of a
delivery ingested exactly once across replays."""

from __future__ import annotations

import json
import uuid

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import func, select

from autods.db.models import S3Event
from autods.db.session import engine_for, session_scope
from tests.integration.conftest import service_settings

pytestmark = pytest.mark.integration

TOKEN = "fuzz-token-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def app(pg_url, redis_prefix, s3_endpoint):
    from autods.rest import create_app

    s = service_settings(pg_url, f"{redis_prefix}fuzz:", s3_endpoint, "fuzz-out")
    s.api.token = SecretStr(TOKEN)
    s.clip.enabled = False
    return create_app(s)


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_every_operation_answers_as_its_schema_says(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /jobs", "GET /jobs/{job_id}",
                                               "GET /datasets/{name}", "POST /events/s3"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(headers=AUTH)

        check()


def test_sequences_of_calls_hold_the_schema(api_schema):
    machine = api_schema.as_state_machine()
    machine.run(settings=settings(max_examples=10, stateful_step_count=4, deadline=None,
                                  suppress_health_check=list(HealthCheck)))


_keys = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                min_size=1, max_size=40)
_names = st.sampled_from(["fuzz-in", "Bad_Bucket", "", "x" * 300, "ok.bucket"])
_record = st.one_of(
    st.fixed_dictionaries({
        "eventName": st.sampled_from(["s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete"]),
        "s3": st.fixed_dictionaries({
            "bucket": st.fixed_dictionaries({"name": _names}),
            "object": st.fixed_dictionaries({"key": _keys.map(lambda k: k + ".jpg"),
                                             "eTag": st.text(max_size=120)})})}),
    st.just("not a record"), st.integers(), st.just({"s3": []}), st.none())


@given(records=st.lists(_record, max_size=6), job_fails=st.booleans())
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_notifications_never_fail_and_each_valid_record_lands_once(app, pg_url, records,
                                                                   job_fails):
    from autods.pipeline.lifecycle import fail_job
    from autods.pipeline.runtime import Runtime

    dataset = f"fz-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"Records": records})

    def deliver(client) -> dict:
        r = client.post(f"/events/s3?dataset={dataset}", content=body,
                        headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        return r.json()

    with TestClient(app) as client:
        first = deliver(client)
        if job_fails and first["job_id"] is not None:
            fail_job(Runtime(app.state.settings), first["job_id"], "failed on purpose")
            retried = deliver(client)  # nothing was published: every object comes back
            assert retried["accepted"] == first["accepted"] and retried["duplicates"] == \
                first["duplicates"]
            first = retried
        again = deliver(client)
    valid = first["accepted"] + first["duplicates"]
    assert len(again["rejected"]) == len(first["rejected"])
    assert again["accepted"] == 0 and again["duplicates"] == valid
    if first["job_id"] is not None:
        with session_scope(engine_for(pg_url)) as db:
            claimed = db.scalar(select(func.count()).select_from(S3Event)
                                .where(S3Event.job_id == first["job_id"]))
        assert claimed == first["accepted"]
