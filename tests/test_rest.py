"""The REST API's refusals: each a 4xx with one message, decided before the body is read
where it can be, and leaving no row behind. (Jobs that run are in
tests/integration/test_service.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from autods.dataset import members_of
from autods.db.models import Dataset, Job
from autods.db.session import session_scope
from autods.rest import create_app
from autods.rest_guard import RequestGuard
from tests.datagen import image_folder

TOKEN = "a-test-token-of-enough-length"


@pytest.fixture
def settings(runtime):
    s = runtime.settings
    s.api.token = SecretStr(TOKEN)
    s.api.max_body_bytes = 4096
    return s


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def _auth(scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {TOKEN}"}


def _rows(rt) -> tuple[int, int]:
    with session_scope(rt.engine) as db:
        return (db.scalar(select(func.count()).select_from(Job)),
                db.scalar(select(func.count()).select_from(Dataset)))


def test_the_token_is_checked_before_the_body_is_read():
    reached, read = [], []

    async def app(scope, receive, send):  # pragma: no cover - must not run
        reached.append(scope)

    async def receive():
        read.append(1)
        return {"type": "http.request", "body": b"{" * 10, "more_body": False}

    sent = []

    async def send(message):
        sent.append(message)

    guard = RequestGuard(app, token=TOKEN, max_body=100, open_paths=())
    scope = {"type": "http", "path": "/jobs", "headers": [(b"content-length", b"87000000")]}
    asyncio.run(guard(scope, receive, send))

    assert sent[0]["status"] == 401 and reached == [] and read == []


def test_refusals_without_a_token_are_401_even_for_malformed_or_huge_bodies(client):
    assert client.post("/jobs", content=b"{not json").status_code == 401
    assert client.post("/jobs", content=b"x" * 100_000).status_code == 401
    r = client.post("/jobs", json={"sources": ["s3://b/x/"], "dataset": "d"},
                    headers={"Authorization": "Bearer wrong-token-wrong-token"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive(client, scheme):
    assert client.get("/jobs/1", headers=_auth(scheme)).status_code == 404


def test_bodies_over_the_limit_are_413_by_length_or_as_they_stream(client):
    big = json.dumps({"sources": ["s3://bucket/" + "x" * 5000], "dataset": "d"})
    assert client.post("/jobs", content=big, headers=_auth()).status_code == 413

    def chunks():
        for _ in range(10):
            yield b" " * 1000

    r = client.post("/jobs", content=chunks(), headers=_auth())
    assert r.status_code == 413 and r.json() == {"detail": "request body over 4096 bytes"}


@pytest.mark.parametrize("token", ["   ", "short-token"])
def test_a_blank_or_short_token_refuses_to_start(runtime, token):
    runtime.settings.api.token = SecretStr(token)
    with pytest.raises(RuntimeError, match="AUTODS_API_TOKEN"):
        create_app(runtime.settings)


def test_without_a_token_only_loopback_clients_are_answered(runtime):
    runtime.settings.api.token = None
    runtime.settings.api.insecure_local = True
    app = create_app(runtime.settings)
    with TestClient(app, client=("203.0.113.9", 5000)) as remote:
        assert remote.get("/jobs/1").status_code == 401
    with TestClient(app, client=("127.0.0.1", 5000)) as local:
        assert local.get("/jobs/1").status_code == 404


@pytest.mark.parametrize("path", ["/jobs/99999999999999999999", "/jobs/0", "/datasets/a%00b",
                                  "/datasets/-x"])
def test_out_of_range_ids_and_bad_names_are_422_not_500(client, path):
    r = client.get(path, headers=_auth())
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)


def test_an_id_that_fits_but_does_not_exist_is_404(client):
    assert client.get(f"/jobs/{2**31 - 1}", headers=_auth()).status_code == 404


@pytest.mark.parametrize("body", [
    {"sources": ["s3://"], "dataset": "d"},
    {"sources": ["s3:///x/"], "dataset": "d"},
    {"sources": ["s3://Invalid_Bucket/x/"], "dataset": "d"},
    {"sources": ["s3://bucket/a\u0000b/"], "dataset": "d"},
    {"sources": ["s3://bucket/x/"], "dataset": "d", "output_url": "s3://b/\u0000"},
    {"sources": ["/etc/passwd"], "dataset": "d"},
    {"sources": ["s3://bucket/x/"], "dataset": "d", "output_url": "file:///anywhere"},
    {"sources": ["s3://bucket/x/"], "dataset": "d", "output_url": "ftp://h/x"},
])
def test_bad_jobs_are_422_with_a_message_and_leave_no_row(client, runtime, body):
    r = client.post("/jobs", json=body, headers=_auth())

    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    assert _rows(runtime) == (0, 0)


def test_local_sources_when_allowed_are_checked_by_the_planner(settings, runtime, tmp_path):
    settings.api.allow_local_sources = True
    image_folder(tmp_path / "in", n_unique=2)
    (tmp_path / "urls.csv").write_text("url\nhttps://example.org/a.jpg\n")
    with TestClient(create_app(settings)) as client:
        r = client.post("/jobs", json={"sources": ["/etc/passwd"], "dataset": "d"},
                        headers=_auth())
        assert r.status_code == 422 and "unsupported source" in r.json()["detail"]
        assert _rows(runtime) == (0, 0)
        for source in (str(tmp_path / "in"), (tmp_path / "urls.csv").as_uri()):
            r = client.post("/jobs", json={"sources": [source], "dataset": "d",
                                           "output_url": (tmp_path / "out").as_uri()},
                            headers=_auth())
            assert r.status_code == 202, r.text
        r = client.post("/jobs", json={"sources": [str(tmp_path / "in")], "dataset": "d",
                                       "output_url": (tmp_path / "other").as_uri()},
                        headers=_auth())
        assert r.status_code == 409 and "writes to" in r.json()["detail"]
    assert _rows(runtime) == (2, 1)


def test_event_records_are_judged_one_by_one(client):
    def record(bucket, key, etag="abc"):
        return {"eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": key, "eTag": etag}}}

    payload = {"Records": [
        record("raw", "ok/a.jpg"),
        "not a record",
        {"eventName": "s3:ObjectCreated:Put", "s3": []},
        record("raw", "bad%00key.jpg"),
        record("raw", "bad\u0000key.jpg"),
        record("raw", "surrogate\udcff.jpg"),
        record("b" * 300, "x.jpg"),
        record("raw", "x.jpg", etag="e" * 101),
        {"eventName": "s3:ObjectRemoved:Delete"},
    ]}
    # As a sender writes it: JSON with escapes, a lone surrogate included.
    r = client.post("/events/s3?dataset=ev", content=json.dumps(payload),
                    headers={**_auth(), "Content-Type": "application/json"})

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 1 and body["ignored"] == 1
    assert [x["record"] for x in body["rejected"]] == [1, 2, 3, 4, 5, 6, 7]
    assert client.post("/events/s3", json={"Records": {"a": 1}},
                       headers=_auth()).status_code == 422


def test_an_event_job_that_cannot_start_is_a_4xx_and_releases_its_objects(settings):
    settings.label.lfs = "no_such_lf_module"
    payload = {"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {
        "bucket": {"name": "raw"}, "object": {"key": "a.jpg", "eTag": "e1"}}}]}
    with TestClient(create_app(settings)) as client:
        r = client.post("/events/s3?dataset=ev", json=payload, headers=_auth())
        assert r.status_code == 422 and "no_such_lf_module" in r.json()["detail"]
        settings.label.lfs = None
    with TestClient(create_app(settings)) as client:
        r = client.post("/events/s3?dataset=ev", json=payload, headers=_auth())
    assert r.status_code == 200 and r.json()["accepted"] == 1


@pytest.fixture
def published(runtime, tmp_path):
    """A dataset in the database whose folder holds a version written by the shard writer."""
    from autods.core.storage import LocalStore
    from tests.dsgen import write_dataset

    folder = tmp_path / "pets"
    write_dataset(LocalStore(folder), n_shards=4, per_shard=25, seed=4, name="pets")
    with session_scope(runtime.engine) as db:
        db.add(Dataset(name="pets", output_url=folder.as_uri()))
    return folder


def test_a_query_answers_from_the_manifests_with_its_plan(client, published):
    r = client.get("/datasets/pets/query", headers=_auth(),
                   params={"where": "label = 'dog' AND width > 100", "columns": "label,width"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == 1 and body["explain"]["shards_total"] == 4
    assert body["rows"] and all(row["label"] == "dog" and row["width"] > 100
                                for row in body["rows"])
    assert set(body["rows"][0]) == {"key", "shard", "offset", "size", "label", "width"}
    versions = client.get("/datasets/pets/versions", headers=_auth()).json()
    assert [(v["version"], v["samples"], v["shards"]) for v in versions] == [(1, 100, 4)]


@pytest.mark.parametrize("where", [
    "1=1; DROP TABLE samples", "label = 'x') UNION SELECT 1 --", "width + 1",
    "nope = 1", "EXISTS (SELECT * FROM read_text('/etc/passwd'))",
    "(SELECT count(*) FROM duckdb_settings()) > 0", "TRUE) --",
])
def test_anything_but_a_boolean_expression_over_columns_is_a_422(client, published, where):
    r = client.get("/datasets/pets/query", headers=_auth(), params={"where": where})
    assert r.status_code == 422 and r.json()["detail"]


def test_a_query_keeps_the_servers_row_limit(settings, published):
    settings.api.query_max_rows = 5
    with TestClient(create_app(settings)) as c:
        r = c.get("/datasets/pets/query", headers=_auth(), params={"where": "width > 0"})
        assert r.status_code == 200 and len(r.json()["rows"]) == 5
        # A trailing comment ends at its line: it cannot take the limit with it.
        commented = c.get("/datasets/pets/query", headers=_auth(),
                          params={"where": "width > 0 --"})
        assert commented.status_code == 200 and len(commented.json()["rows"]) == 5
        more = c.get("/datasets/pets/query", headers=_auth(),
                     params={"where": "width > 0", "limit": 60})
        assert more.status_code == 200 and len(more.json()["rows"]) == 5


def test_querying_an_unknown_dataset_is_404(client):
    r = client.get("/datasets/nobody/query", headers=_auth(), params={"where": "width > 0"})
    assert r.status_code == 404


def test_a_job_takes_filters_and_a_split_and_why_answers_for_each_input(eager, tmp_path):
    import autods.tasks.stages  # noqa: F401 - the tasks the eager job runs, registered

    settings = eager.settings
    settings.api.token = SecretStr(TOKEN)
    settings.api.allow_local_sources = True
    exp = image_folder(tmp_path / "in", n_unique=3, n_near=1)
    body = {"sources": [str(tmp_path / "in")], "dataset": "d",
            "output_url": (tmp_path / "out").as_uri(),
            "options": {"embed": False, "split": "8,1,1", "filters": {"min_side": 64}}}
    filtered = {"sources": [str(tmp_path / "in")], "dataset": "small",
                "output_url": (tmp_path / "small").as_uri(),
                "options": {"embed": False, "filters": {"max_side": 64}}}

    def why(client, dataset: str, name: str) -> list[dict]:
        r = client.get(f"/datasets/{dataset}/why", headers=_auth(),
                       params={"ref": (tmp_path / "in" / name).as_uri()})
        assert r.status_code == 200, r.text
        return r.json()

    with TestClient(create_app(settings)) as client:
        for split in ("0,0", "0.5", "a,b"):
            r = client.post("/jobs", json={**body, "options": {"split": split}},
                            headers=_auth())
            assert r.status_code == 422, r.text
        for job in (body, filtered):
            assert client.post("/jobs", json=job, headers=_auth()).status_code == 202
        (near,) = why(client, "d", exp.near[0])
        kept = why(client, "d", exp.near[0].replace("_znear", ""))
        small = [why(client, "small", name)[0] for name in exp.files]
        assert client.get("/datasets/d/why", headers=_auth(),
                          params={"ref": "nothing"}).status_code == 404
        report = client.get("/datasets/d/report", headers=_auth())
        small_report = client.get("/datasets/small/report", headers=_auth()).text
        for params, code in (({"job": 10**6}, 404), ({"version": 0}, 422)):
            assert client.get("/datasets/d/report", headers=_auth(),
                              params=params).status_code == code
        assert client.get("/datasets/nobody/report", headers=_auth()).status_code == 404
        assert client.get("/datasets/d/report").status_code == 401
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    n = len(exp.files) + len(exp.near)
    for row in (f"<td>inputs</td><td>every listed input</td><td>{n}</td>",
                "<td>duplicate</td><td>rule phash</td><td>1</td>",
                f"<td>published</td><td>samples in shards</td><td>{len(exp.files)}</td>"):
        assert row in report.text
    assert report.text.count('class="cluster"') == 1
    assert f"<td>filtered</td><td>filter:max_side</td><td>{n}</td>" in small_report
    assert near["status"] == "near_duplicate" and near["rule"].startswith("phash=")
    assert near["kept_key"] == kept[0]["key"] and kept[0]["status"] == "published"
    assert kept[0]["split"] in ("train", "val", "test") and kept[0]["shard"]
    # Every 96 px image is over the other job's bound: filtered with its measured side.
    assert {f["status"] for f in small} == {"filtered"}
    assert {f["detail"] for f in small} == {"max_side=96 (max 64)"}
    assert all(f["summary"].startswith("filtered: filter:max_side") for f in small)


def test_lf_report_gold_relabel_and_lineage_over_rest(eager, tmp_path):
    import autods.tasks.stages  # noqa: F401 - the tasks the eager jobs run, registered
    from autods.dataset import open_dataset
    from bench.reviews import reviews, write_jsonl

    settings = eager.settings
    settings.api.token = SecretStr(TOKEN)
    settings.api.allow_local_sources = True
    settings.api.lfs_allowed = "examples.reviews_lfs"
    write_jsonl(tmp_path / "reviews.jsonl", 60)
    truth = {r.text: r.label for r in reviews()[:60]}
    out = tmp_path / "out"
    body = {"sources": [str(tmp_path / "reviews.jsonl")], "dataset": "rv",
            "output_url": out.as_uri(), "options": {"embed": False, "lfs": "examples.reviews_lfs"}}

    def export(pairs: list[tuple[str, str]]) -> list[dict]:
        return [{"id": i, "data": {"key": key, "text": ""}, "annotations": [{
            "completed_by": {"id": 3, "email": "a@example.org"}, "was_cancelled": False,
            "created_at": "2026-12-01T10:00:00Z", "result": [{
                "from_name": "label", "to_name": "text", "type": "choices",
                "value": {"choices": [label]}}]}]} for i, (key, label) in enumerate(pairs, 1)]

    with TestClient(create_app(settings)) as client:
        assert client.get("/datasets/rv/lf-report", headers=_auth()).status_code == 404
        assert client.post("/jobs", json=body, headers=_auth()).status_code == 202
        ds = open_dataset(str(out))
        keys = {ds.get(k)["txt"].decode(): k
                for k in ds.query("true").table.column("key").to_pylist()}
        r = client.get("/datasets/rv/lf-report", headers=_auth())
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["n_samples"] == 60 and report["n_gold"] == 0
        assert "lf_great" in {lf["name"] for lf in report["lfs"]}

        wrong = client.post("/datasets/rv/gold", headers=_auth(),
                            json=export([(next(iter(keys.values())), "neutral")]))
        assert wrong.status_code == 422 and "neutral" in wrong.text
        gold = [(keys[text], label) for text, label in list(truth.items())[:10]]
        r = client.post("/datasets/rv/gold", headers=_auth(), json=export(gold))
        assert r.status_code == 200 and r.json() == {"stored": 10}
        assert client.post("/datasets/nobody/gold", headers=_auth(), json=[]).status_code == 404
        assert client.post("/datasets/rv/relabel", headers=_auth(),
                           json={"class_balance": [1.0]}).status_code == 422
        r = client.post("/datasets/rv/relabel", headers=_auth())
        assert r.status_code == 202, r.text
        assert client.get(f"/jobs/{r.json()['job_id']}",
                          headers=_auth()).json()["status"] == "succeeded"
        report = client.get("/datasets/rv/lf-report", headers=_auth()).json()
        page = client.get("/datasets/rv/report", headers=_auth()).text
        key, label = gold[0]
        r = client.get("/datasets/rv/lineage", headers=_auth(), params={"ref": key})
        assert r.status_code == 200, r.text
        (lineage,) = r.json()
        assert client.get("/datasets/nobody/lineage", headers=_auth(),
                          params={"ref": key}).status_code == 404
        assert client.get("/datasets/rv/lineage", headers=_auth(),
                          params={"ref": "0" * 24}).status_code == 404
    assert report["n_gold"] == 10
    # Lineage: the gold a person gave, the build's votes named by the label model's report,
    # and the sample in the build's version and the relabel's, each range holding its text.
    assert (lineage["gold"]["label"], lineage["gold"]["origin"]) == (label, "rest")
    (given,) = lineage["inputs"]
    assert given["status"] == "published" and given["votes"]["lfs_module"] == \
        "examples.reviews_lfs"
    assert "lf_great" in {v["lf"] for v in given["votes"]["votes"]}
    versions = lineage["versions"]
    assert [(v["version"], v["kind"]) for v in versions] == [(1, "build"), (2, "map")]
    assert (versions[1]["label"], versions[1]["label_source"]) == (label, "gold")
    for v in versions:
        with open(v["tar"].removeprefix("file://"), "rb") as tar:
            tar.seek(v["offset"])
            text = members_of(tar.read(v["size"]))["txt"]
        assert hashlib.sha256(text).hexdigest() == lineage["sha256"]
    assert lineage["features"]["language"] == "en"
    assert "<td>lf_great</td>" in page and "<td>gold labels</td><td>10</td>" in page
    labels = {row["key"]: (row["label"], row["label_source"]) for row in open_dataset(
        str(out)).query("true", columns=["label", "label_source"]).table.to_pylist()}
    assert all(labels[key] == (label, "gold") for key, label in gold)
    assert {s for _, s in labels.values()} <= {"gold", "label_model", None}


def test_metrics_report_jobs_by_state_behind_the_token(client, runtime, tmp_path):
    from autods.pipeline.options import JobOptions
    from autods.pipeline.plan import create_job
    from tests.promtext import by_label, parse

    image_folder(tmp_path / "in", n_unique=2)
    for dataset in ("a", "b"):
        create_job(runtime, [str(tmp_path / "in")], dataset, JobOptions(embed=False),
                   output_url=(tmp_path / dataset).as_uri())

    assert client.get("/metrics").status_code == 401
    r = client.get("/metrics", headers=_auth())

    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = parse(r.text)
    assert by_label(samples, "autods_jobs", "state") == {
        "pending": 0, "running": 2, "succeeded": 0, "failed": 0}
    # The in-memory broker has no Redis lists to measure.
    assert not by_label(samples, "autods_queue_depth", "queue")
