"""Curation on real services (Celery workers on Redis, PostgreSQL, an S3 server), across
two jobs of one dataset: the second job's copies are dropped against what the first
published, through the dataset's stored indexes (pHash bands, MinHash bands, the
persisted semantic index), and ``why``, ``lineage`` and the report answer from PostgreSQL
and S3."""

from __future__ import annotations

import hashlib
import json
import shutil

import boto3
import pytest
from sqlalchemy import func, select

import autods
from autods.dataset import members_of
from autods.db.models import Item
from autods.db.session import session_scope
from autods.embedded import WorkerProcess
from autods.pipeline.explain import explain
from autods.pipeline.report import build_page
from autods.pipeline.runtime import Runtime
from autods.pipeline.stagetable import queues
from tests.curation_data import FRENCH, MIN_SIDE, rewordable, reworded, write_inputs
from tests.integration.conftest import service_settings

pytestmark = pytest.mark.integration

BUCKET = "autods-curation"


def _fates(rt: Runtime, job_id: int) -> dict[str, tuple]:
    with session_scope(rt.engine) as db:
        rows = db.execute(select(Item).where(Item.job_id == job_id)).scalars().all()
        kept = {i.id: i for i in db.scalars(select(Item).where(
            Item.id.in_([r.duplicate_of for r in rows if r.duplicate_of])))}
        return {(r.source or r.uri.rsplit("/", 1)[-1]): (
            r.status, r.reason, (r.dedup_rule or "").split("=")[0],
            (kept[r.duplicate_of].source or kept[r.duplicate_of].uri.rsplit("/", 1)[-1])
            if r.duplicate_of else None, r.split) for r in rows}


def test_second_job_is_deduplicated_against_the_first(pg_url, redis_prefix, s3_endpoint,
                                                      tmp_path):
    expected = write_inputs(tmp_path / "in", n_images=3, n_texts=12)
    texts = [json.loads(line) for line in (tmp_path / "in" / "texts.jsonl").read_text()
             .splitlines()]
    originals = {r["source"]: r["text"] for r in texts
                 if expected.fates[r["source"]] == ("published",)}
    chosen = rewordable(list(originals.values()))
    first_text = next(s for s, t in originals.items() if t == chosen)
    later = [{"text": "\n" + originals[first_text].replace(" ", "   ") + "  ", "source": "later0"},
             {"text": originals[first_text] + " indeed", "source": "later1"},
             {"text": reworded(originals[first_text]), "source": "later2"},
             {"text": FRENCH, "source": "later3"}]
    (tmp_path / "in" / "later.jsonl").write_text("".join(json.dumps(r) + "\n" for r in later))
    # The same bytes as a picture the first job publishes, listed again by the second.
    original = next(p for p in sorted((tmp_path / "in" / "images").iterdir())
                    if p.stem == "img00")
    (tmp_path / "in" / "again").mkdir()
    shutil.copy(original, tmp_path / "in" / "again" / f"again{original.suffix}")

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=BUCKET)
    settings = service_settings(pg_url, redis_prefix, s3_endpoint, BUCKET)
    settings.pipeline.chunk_size = 16
    settings.pipeline.batch_size = 32
    options = {"split": "0.8,0.1,0.1", "filters": {"min_side": MIN_SIDE, "languages": ["en"]}}
    cpu_queues = tuple(q for q in queues() if q != "gpu")
    cpu = WorkerProcess(settings, 2, tmp_path / "cpu.log", cpu_queues, "cpu-cur@%h").start()
    gpu = WorkerProcess(settings, 1, tmp_path / "gpu.log", ("gpu",), "gpu-cur@%h").start()
    try:
        cpu.wait_ready()
        gpu.wait_ready()
        inputs = tmp_path / "in"
        first = autods.submit([str(inputs / "images"), str(inputs / "texts.jsonl")], "cur",
                              settings=settings, **options)
        assert first.wait(timeout=400).status == "succeeded"
        second = autods.submit([str(tmp_path / "in" / "copies"),
                                str(tmp_path / "in" / "later.jsonl"),
                                str(tmp_path / "in" / "again")],
                               "cur", settings=settings, **options)
        status = second.wait(timeout=400)
    finally:
        cpu.stop()
        gpu.stop()
    assert status.status == "succeeded", status.error
    rt = Runtime(settings)

    fates = _fates(rt, first.id)
    for name, want in expected.fates.items():
        if name.startswith("copy"):
            continue
        got = fates[name]
        if want[0] == "filtered":
            assert got[:2] == want, (name, got)
        else:
            assert (got[0], got[3]) == (want[0], want[2] if len(want) > 2 else None), (name, got)
    assert {f[4] for f in fates.values() if f[0] == "published"} <= {"train", "val", "test"}

    later_fates = _fates(rt, second.id)
    assert later_fates["later0"][:4] == ("exact_duplicate", "exact_duplicate",
                                         "text_normalized", first_text)
    assert later_fates["later1"][:4] == ("near_duplicate", "near_duplicate",
                                         "minhash_jaccard", first_text)
    assert (later_fates["later2"][0], later_fates["later2"][3]) == ("semantic_duplicate",
                                                                    first_text)
    assert later_fates["later3"][:2] == ("filtered", "filter:language")
    copies = [n for n in expected.fates if n.startswith("copy")]
    caught = [n for n in copies if later_fates[n][0] == "near_duplicate"]
    assert len(caught) / len(copies) >= 0.9
    picture = {n: (f[2] if n.startswith("copy") else n) for n, f in expected.fates.items()}
    assert all(picture[later_fates[n][3]] == expected.fates[n][2] for n in caught)
    assert all(later_fates[n][0] in ("near_duplicate", "published") for n in copies)

    (why,) = explain(rt, "cur", _uri(rt, "later2"))
    assert why.status == "semantic_duplicate" and why.kept_shard and why.score >= 0.95

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    index = json.loads(s3.get_object(Bucket=BUCKET, Key="objects/datasets/cur/index.json")
                       ["Body"].read())
    published = sum(f[0] == "published" for f in fates.values()) + sum(
        f[0] == "published" for f in later_fates.values())
    assert sum(e["nsamples"] for e in index["shardlist"]) == published
    # The semantic index persisted by the first job was extended by the second.
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="objects/indexes/")["KeyCount"] >= 1

    # Lineage: the published picture is in both versions at the same bytes, and the second
    # job's exact copy of it is one of its inputs.
    (kept,) = autods.lineage("cur", original.as_uri(), settings=settings)
    assert [(i.fate.job, i.fate.status) for i in kept.inputs] == [
        (first.id, "published"), (second.id, "exact_duplicate")]
    assert kept.inputs[1].fate.kept_key == kept.key and kept.inputs[1].fate.rule == "sha256"
    assert [(p.version, p.job) for p in kept.versions] == [(1, first.id), (2, second.id)]
    for p in kept.versions:
        data = s3.get_object(Bucket=BUCKET, Key=p.tar.removeprefix(f"s3://{BUCKET}/"),
                             Range=f"bytes={p.offset}-{p.offset + p.size - 1}")["Body"].read()
        assert hashlib.sha256(members_of(data)[kept.ext]).hexdigest() == kept.sha256
    assert kept.features.phash and kept.features.embedding_key
    (small,) = autods.lineage("cur", (tmp_path / "in" / "images" / "small.png").as_uri(),
                              settings=settings)
    (fate,) = [i.fate for i in small.inputs]
    assert (fate.status, fate.reason) == ("filtered", "filter:min_side")
    assert fate.detail.startswith("min_side=") and small.versions == ()
    (dropped,) = autods.lineage("cur", (tmp_path / "in" / "copies" / caught[0]).as_uri(),
                                settings=settings)
    (fate,) = [i.fate for i in dropped.inputs]
    (source,) = autods.lineage("cur", fate.kept_uri, settings=settings)
    assert fate.status == "near_duplicate" and fate.kept_key == source.key
    assert fate.kept_uri.rsplit("/", 1)[-1] == later_fates[caught[0]][3]
    assert fate.kept_shard == source.versions[0].shard and dropped.versions == ()

    # The report, from PostgreSQL and S3: both jobs' inputs in the funnel, a near copy's
    # cluster with both pictures read back from S3, queue waits and the embedding map.
    page = build_page(rt, "cur")
    with session_scope(rt.engine) as db:
        n_inputs = db.scalar(select(func.count()).select_from(Item).where(
            Item.job_id.in_((first.id, second.id))))
    funnel = {(r.step, r.name): r.count for r in page.funnel}
    assert funnel[("inputs", "every listed input")] == n_inputs
    assert funnel[("published", "samples in shards")] == published
    cluster = next(c for c in page.clusters
                   if any(t.uri.endswith(f"/{caught[0]}") for t in c.absorbed))
    assert cluster.kept.image and all(t.image for t in cluster.absorbed)
    assert cluster.kept.uri.rsplit("/", 1)[-1] == later_fates[caught[0]][3]
    assert page.wait_chart and page.map_chart and len(page.slowest) > 1


def _uri(rt: Runtime, source: str) -> str:
    with session_scope(rt.engine) as db:
        return db.scalar(select(Item.uri).where(Item.source == source))
