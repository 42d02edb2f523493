"""A job of a few hundred inputs through every stage on real services: Celery workers on
Redis, metadata in PostgreSQL, objects and shards in an S3 server, URLs over HTTP. The
same inputs built by ``autods build`` (embedded) must give the same samples."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import boto3
import numpy as np
import pytest

import autods
from autods.embedded import WorkerProcess
from autods.pipeline.stagetable import queues
from tests.datagen import image_folder, texts_file
from tests.integration.conftest import service_settings

pytestmark = pytest.mark.integration

BUCKET = "autods-it"


def _samples_from_tars(tars: dict[str, bytes]) -> dict[str, dict]:
    """sha256 -> {caption, meta, members} for every sample of every shard, checked."""
    out: dict[str, dict] = {}
    for name, data in tars.items():
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = tar.getmembers()
            by_key: dict[str, dict[str, bytes]] = {}
            for m in members:
                key, ext = m.name.split(".", 1)
                by_key.setdefault(key, {})[ext] = tar.extractfile(m).read()
        exts = {tuple(sorted(v)) for v in by_key.values()}
        assert len(exts) == 1, f"{name}: samples with different members {exts}"
        for key, parts in by_key.items():
            meta = json.loads(parts["json"])
            assert meta["key"] == key and meta["sha256"].startswith(key)
            body = parts["txt"] if meta["modality"] == "text" else parts[meta["format"].lower()
                                                                          .replace("jpeg", "jpg")]
            assert hashlib.sha256(body).hexdigest() == meta["sha256"], f"{name}/{key} bytes"
            vec = np.load(io.BytesIO(parts["npy"]))
            norm = float(np.linalg.norm(vec.astype(np.float32)))
            # Images: the tiny CLIP's 64 dimensions; texts: the sentence model's 384.
            assert vec.shape == ((64,) if meta["modality"] == "image" else (384,))
            assert abs(norm - 1) < 0.01
            assert meta["sha256"] not in out, "a sample published twice"
            out[meta["sha256"]] = {"caption": meta["caption"], "meta": meta}
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, http_root, s3_endpoint):
    base = tmp_path_factory.mktemp("inputs")
    photos = image_folder(base / "photos", n_unique=150, n_exact=10, n_near=10, bad=True)
    www, url = http_root
    web = image_folder(www / "web", n_unique=60, seed0=5000)
    with (base / "urls.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["url", "caption", "license"])
        for name, _sha in sorted(web.files.items()):
            writer.writerow([f"{url}/web/{name}", f"web {name}", "CC0-1.0"])
        writer.writerow([f"{url}/web/missing.jpg", "gone", ""])
        writer.writerow(["file:///etc/passwd", "no", ""])
    texts = texts_file(base / "texts.jsonl", 20)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket="raw")
    for path in sorted((base / "photos").iterdir()):
        s3.upload_file(str(path), "raw", f"photos/{path.name}")
    return {"base": base, "photos": photos, "web": web, "texts": texts, "s3": s3}


def test_distributed_job_on_real_services_matches_embedded_build(
        inputs, pg_url, redis_prefix, s3_endpoint, tmp_path):
    settings = service_settings(pg_url, redis_prefix, s3_endpoint, BUCKET)
    settings.pipeline.chunk_size = 32
    settings.pipeline.batch_size = 96
    settings.pipeline.shard_size = 40
    base = inputs["base"]
    sources = ["s3://raw/photos/", str(base / "urls.csv"), str(base / "texts.jsonl")]
    cpu_queues = tuple(q for q in queues() if q != "gpu")
    cpu = WorkerProcess(settings, 2, tmp_path / "cpu.log", cpu_queues, "cpu-it@%h").start()
    gpu = WorkerProcess(settings, 1, tmp_path / "gpu.log", ("gpu",), "gpu-it@%h").start()
    try:
        cpu.wait_ready()
        gpu.wait_ready()
        job = autods.submit(sources, "it", settings=settings,
                            output_url=f"s3://{BUCKET}/datasets/it")
        status = job.wait(timeout=300)
    finally:
        cpu.stop()
        gpu.stop()
    assert status.status == "succeeded", status.error

    photos, web, texts = inputs["photos"], inputs["web"], inputs["texts"]
    n_images = len(photos.unique) + len(web.unique)
    assert status.statuses["published"] == n_images + len(texts)
    assert status.statuses["exact_duplicate"] == len(photos.exact) + 1
    assert status.statuses["near_duplicate"] == len(photos.near)
    assert status.reasons["not_found"] == 1 and status.reasons["blocked_scheme"] == 1
    assert status.reasons["corrupt_image"] == 1 and status.reasons["not_an_image"] == 1

    s3 = inputs["s3"]
    index = json.loads(s3.get_object(Bucket=BUCKET, Key="datasets/it/index.json")["Body"].read())
    tars = {e["url"]: s3.get_object(Bucket=BUCKET, Key=f"datasets/it/{e['url']}")["Body"].read()
            for e in index["shardlist"]}
    assert sum(e["nsamples"] for e in index["shardlist"]) == status.statuses["published"]
    for e in index["shardlist"]:
        assert hashlib.sha256(tars[e["url"]]).hexdigest() == e["sha256"]
    distributed = _samples_from_tars(tars)
    expected_captions = {**photos.unique, **{web.files[n]: f"web {n}" for n in web.files},
                         **texts}
    assert set(distributed) == set(expected_captions)
    for sha, caption in {**photos.unique, **{web.files[n]: f"web {n}" for n in web.files}}.items():
        assert distributed[sha]["caption"] == caption

    out = tmp_path / "embedded"
    env = {**os.environ, "AUTODS_ALLOW_PRIVATE_NETWORKS": "1",
           "AUTODS_CLIP_MODEL": "autods-tiny-vit", "AUTODS_CLIP_PRETRAINED": "random",
           "AUTODS_PIPELINE_CHUNK_SIZE": "32",
           "AUTODS_PIPELINE_BATCH_SIZE": "96", "AUTODS_PIPELINE_SHARD_SIZE": "40"}
    proc = subprocess.run(
        [sys.executable, "-m", "autods.cli", "build", str(base / "photos"), str(base / "urls.csv"),
         str(base / "texts.jsonl"), "--out", str(out), "--quiet", "--workers", "2"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    local_index = json.loads((out / "index.json").read_text())
    embedded = _samples_from_tars({e["url"]: (out / e["url"]).read_bytes()
                                   for e in local_index["shardlist"]})
    assert {s: d["caption"] for s, d in embedded.items()} == {
        s: d["caption"] for s, d in distributed.items()}
