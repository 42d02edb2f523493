"""The service on real parts: the REST API (in-process ASGI) over PostgreSQL, Celery worker
processes on Redis, objects in an S3 server, MinIO-format bucket notifications, Flower."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import uuid

import boto3
import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from autods.embedded import WorkerProcess
from examples.sampledata import structured_image
from tests.integration.conftest import service_settings

pytestmark = pytest.mark.integration

TOKEN = "test-token-" + uuid.uuid4().hex
BUCKET = "autods-svc"


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    structured_image(seed, (96, 96)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def settings(pg_url, redis_prefix, s3_endpoint):
    s = service_settings(pg_url, redis_prefix, s3_endpoint, BUCKET)
    s.clip.enabled = False
    s.api.token = SecretStr(TOKEN)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for bucket in (BUCKET, "incoming"):
        s3.create_bucket(Bucket=bucket)
    return s


@pytest.fixture(scope="module")
def worker(settings, tmp_path_factory):
    proc = WorkerProcess(settings, 2, tmp_path_factory.mktemp("w") / "worker.log",
                         name=f"svc-{uuid.uuid4().hex[:6]}@%h").start()
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(settings):
    from autods.rest import create_app

    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        yield c


def _wait_job(client, job_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/jobs/{job_id}").json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {body}")


def _minio_event(bucket: str, key: str, etag: str, size: int) -> dict:
    """One record as MinIO's webhook target sends it (keys URL-encoded)."""
    from urllib.parse import quote_plus

    return {
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"{bucket}/{key}",
        "Records": [{
            "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
            "eventTime": "2026-11-23T10:00:00.000Z", "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "minioadmin"},
            "requestParameters": {"principalId": "minioadmin", "region": "",
                                  "sourceIPAddress": "172.18.0.1"},
            "responseElements": {"x-amz-request-id": "17A2B3C4D5E6F708",
                                 "x-minio-origin-endpoint": "http://minio:9000"},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
                   "bucket": {"name": bucket, "ownerIdentity": {"principalId": "minioadmin"},
                              "arn": f"arn:aws:s3:::{bucket}"},
                   "object": {"key": quote_plus(key), "size": size, "eTag": etag,
                              "contentType": "image/jpeg",
                              "userMetadata": {"content-type": "image/jpeg"},
                              "sequencer": "17A2B3C4D5E6F708"}},
            "source": {"host": "172.18.0.1", "port": "", "userAgent": "MinIO (linux; amd64)"},
        }],
    }


def test_routes_need_the_token_and_health_does_not(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    bare = {"Authorization": ""}
    assert client.get("/jobs/1", headers=bare).status_code == 401
    assert client.post("/jobs", json={"sources": ["s3://x/"], "dataset": "d"},
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
    schema = client.get("/openapi.json").json()
    assert {"/jobs", "/jobs/{job_id}", "/datasets/{name}", "/events/s3"} <= set(schema["paths"])


def test_local_paths_and_unlisted_lfs_are_refused(client):
    r = client.post("/jobs", json={"sources": ["/etc"], "dataset": "d"})
    assert r.status_code == 422 and "AUTODS_API_ALLOW_LOCAL_SOURCES" in r.json()["detail"]
    r = client.post("/jobs", json={"sources": ["s3://x/"], "dataset": "d",
                                   "options": {"lfs": "os"}})
    assert r.status_code == 422 and "AUTODS_API_LFS_ALLOWED" in r.text
    assert client.post("/jobs", json={"sources": ["s3://x/"], "dataset": "../x"}).status_code == 422


def test_a_bucket_that_does_not_exist_is_404_and_leaves_no_row(client, settings):
    from sqlalchemy import select

    from autods.db.models import Dataset, Job
    from autods.db.session import engine_for, session_scope

    r = client.post("/jobs", json={"sources": ["s3://no-such-bucket-here/x/"],
                                   "dataset": "ghost"})

    assert r.status_code == 404 and "NoSuchBucket" in r.json()["detail"]
    with session_scope(engine_for(settings.database.url)) as db:
        assert db.scalar(select(Dataset.id).where(Dataset.name == "ghost")) is None
        assert db.scalars(select(Job.status).where(Job.status == "pending")).all() == []


def test_job_posted_over_rest_builds_the_dataset(client, worker, settings, s3_endpoint):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for i in range(5):
        s3.put_object(Bucket="incoming", Key=f"rest/img{i}.jpg", Body=_jpeg(100 + i))
    s3.put_object(Bucket="incoming", Key="rest/img0.txt", Body=b"first caption")

    r = client.post("/jobs", json={"sources": ["s3://incoming/rest/"], "dataset": "rest",
                                   "output_url": f"s3://{BUCKET}/datasets/rest"})
    assert r.status_code == 202
    body = _wait_job(client, r.json()["job_id"])

    assert body["status"] == "succeeded" and body["statuses"] == {"published": 5}
    ds = client.get("/datasets/rest").json()
    assert ds["samples"] == 5 and sum(s["count"] for s in ds["shards"]) == 5
    assert all(s["url"].startswith(f"s3://{BUCKET}/datasets/rest/shards/") for s in ds["shards"])
    assert client.get("/datasets/nope").status_code == 404


def test_minio_events_are_ingested_once_even_when_delivered_twice(client, worker, s3_endpoint):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    events = []
    for i, key in enumerate(["events/a b.jpg", "events/c.jpg", "events/d.jpg"]):
        data = _jpeg(200 + i)
        etag = s3.put_object(Bucket="incoming", Key=key, Body=data)["ETag"].strip('"')
        events.append(_minio_event("incoming", key, etag, len(data)))
    s3.put_object(Bucket="incoming", Key="events/notes.csv", Body=b"a,b")
    events.append(_minio_event("incoming", "events/notes.csv", "e1", 3))

    first = [client.post("/events/s3?dataset=evts", json=e).json() for e in events]
    again = [client.post("/events/s3?dataset=evts", json=e).json() for e in events]

    assert [f["accepted"] for f in first] == [1, 1, 1, 0] and first[3]["ignored"] == 1
    assert all(a["job_id"] is None and a["accepted"] == 0 for a in again)
    assert [a["duplicates"] for a in again] == [1, 1, 1, 0]
    for f in first[:3]:
        assert _wait_job(client, f["job_id"])["statuses"] == {"published": 1}
    ds = client.get("/datasets/evts").json()
    assert ds["samples"] == 3


def test_flower_sees_tasks_from_a_real_worker(client, worker, settings, s3_endpoint, tmp_path):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.put_object(Bucket="incoming", Key="flower/one.jpg", Body=_jpeg(300))
    port = _free_port()
    env = {**os.environ, **settings.to_env()}
    log = (tmp_path / "flower.log").open("wb")
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "autods.tasks.app:app", "flower",
         f"--port={port}", "--address=127.0.0.1", "--basic-auth=ops:flower-test-pass"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    auth = ("ops", "flower-test-pass")
    try:
        _wait_http(f"{base}/healthcheck")
        time.sleep(2)  # let Flower's event consumer subscribe before tasks run
        job_id = client.post("/jobs", json={"sources": ["s3://incoming/flower/"],
                                            "dataset": "flower"}).json()["job_id"]
        assert _wait_job(client, job_id)["status"] == "succeeded"
        names: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "autods.publish.batch" not in names:
            tasks = httpx.get(f"{base}/api/tasks", auth=auth, timeout=5).json()
            names = {t["name"] for t in tasks.values() if t.get("state") == "SUCCESS"}
            time.sleep(0.5)
        assert {"autods.ingest.chunk", "autods.preprocess.chunk",
                "autods.publish.batch"} <= names
        assert httpx.get(f"{base}/api/tasks", timeout=5).status_code == 401
        metrics = httpx.get(f"{base}/metrics", auth=auth, timeout=5).text
        assert "flower_events_total" in metrics
        workers = httpx.get(f"{base}/api/workers", auth=auth, timeout=10).json()
        assert worker.name.split("@")[0] in " ".join(workers)
    finally:
        _stop(flower)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """Flower's event consumer can sit in a Redis reconnect loop after SIGTERM; do not wait
    on it for long."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


def test_event_payload_without_created_objects_is_a_no_op(client):
    body = client.post("/events/s3", json={"Records": [{"eventName": "s3:ObjectRemoved:Delete"}]})
    assert body.json() == {"job_id": None, "accepted": 0, "duplicates": 0, "ignored": 1,
                           "rejected": []}  # the deletion is a record about something else
    assert json.loads(client.post("/events/s3", json={}).text)["accepted"] == 0


def test_cli_submit_and_status_against_the_service(worker, settings, s3_endpoint, tmp_path):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for i in range(3):
        s3.put_object(Bucket="incoming", Key=f"cli/img{i}.jpg", Body=_jpeg(400 + i))
    env = {**os.environ, **settings.to_env()}
    proc = subprocess.run(
        [sys.executable, "-m", "autods.cli", "submit", "s3://incoming/cli/", "--dataset", "cli",
         "--no-embed", "--wait"], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_id = int(proc.stdout.split("job ", 1)[1].split()[0])
    assert re.search(r"published samples\s+│\s+3\s+│", proc.stdout), proc.stdout
    status = subprocess.run([sys.executable, "-m", "autods.cli", "status", str(job_id), "--json"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(status.stdout)["statuses"] == {"published": 3}


def test_query_versions_and_forget_by_dataset_name_on_the_service(client, worker, settings,
                                                                 s3_endpoint):
    """A dataset in S3, named in PostgreSQL: queried over REST and the CLI, one sample
    forgotten by a job over shards on the Redis workers, the pinned version unchanged."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for i in range(6):
        s3.put_object(Bucket="incoming", Key=f"forget/img{i}.jpg", Body=_jpeg(600 + i))
    r = client.post("/jobs", json={"sources": ["s3://incoming/forget/"], "dataset": "forget"})
    assert _wait_job(client, r.json()["job_id"])["status"] == "succeeded"
    answer = client.get("/datasets/forget/query", params={"where": "width > 0",
                                                           "columns": "sha256"}).json()
    assert answer["version"] == 1 and len(answer["rows"]) == 6
    key, sha = answer["rows"][0]["key"], answer["rows"][0]["sha256"]

    env = {**os.environ, **settings.to_env()}
    proc = subprocess.run([sys.executable, "-m", "autods.cli", "forget", "forget", key],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "forgot 1 sample(s)" in proc.stdout
    versions = client.get("/datasets/forget/versions").json()
    assert [(v["version"], v["samples"], v["kind"]) for v in versions] == [
        (1, 6, "build"), (2, 5, "map")]
    assert client.get("/datasets/forget").json()["samples"] == 5
    latest = client.get("/datasets/forget/query", params={"where": "width > 0"}).json()
    assert key not in {row["key"] for row in latest["rows"]} and len(latest["rows"]) == 5
    pinned = client.get("/datasets/forget/query",
                        params={"where": "width > 0", "version": 1}).json()
    assert key in {row["key"] for row in pinned["rows"]}
    raw = s3.list_objects_v2(Bucket=BUCKET, Prefix="objects/").get("Contents", [])
    assert not [o["Key"] for o in raw if sha in o["Key"]]
    got = subprocess.run([sys.executable, "-m", "autods.cli", "get", "forget", key,
                          "--version", "1"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert got.returncode == 0 and f"{key}.jpg" in got.stdout, got.stdout + got.stderr
