"""The labelling loop on real services (Celery workers on Redis, PostgreSQL, an S3 server):
a build of movie reviews with keyword LFs, the LF report, gold imported from a Label Studio
export and stored in PostgreSQL, and relabel fitted on the label queue and written as a job
over the shards in S3."""

from __future__ import annotations

import boto3
import pytest
from sqlalchemy import select

import autods
from autods.core.maps import read_samples
from autods.db.models import GoldLabel, LabelModelRow
from autods.db.session import session_scope
from autods.embedded import WorkerProcess
from autods.pipeline.relabel import fit_version
from autods.pipeline.runtime import Runtime
from autods.pipeline.stagetable import queues
from bench.reviews import reviews, write_jsonl
from tests.integration.conftest import service_settings

pytestmark = pytest.mark.integration

BUCKET = "autods-labelling"
N_REVIEWS = 160
N_GOLD = 32


def _export(texts_labels: list[tuple[str, str]], keys: dict[str, str]) -> list[dict]:
    """Label Studio's JSON export of answered tasks, as a person would download it."""
    return [{"id": i, "data": {"key": keys[text], "text": text}, "annotations": [{
        "id": i, "completed_by": 7, "was_cancelled": False,
        "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z",
        "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                    "value": {"choices": [label]}}]}]}
            for i, (text, label) in enumerate(texts_labels, 1)]


def _zero_shot_accuracy(rt: Runtime, truth: dict[str, str]) -> float:
    """How often the zero-shot LF's build-time votes (stored per item) are right."""
    from autods.db.models import Dataset, Item, Job, LfVote

    spec = rt.label_spec("tests.reviews_zeroshot_lfs")
    column = [lf.name for lf in spec.lfs].index("lf_zero_shot")
    with session_scope(rt.engine) as db:  # the database is shared with other tests' jobs
        rows = db.execute(select(Item.text, LfVote.votes)
                          .join(LfVote, LfVote.item_id == Item.id)
                          .join(Job, Job.id == Item.job_id)
                          .join(Dataset, Dataset.id == Job.dataset_id)
                          .where(Dataset.name == "rev",
                                 LfVote.spec_version == spec.version)).all()
    votes = [(truth[text], spec.labels[v[column]]) for text, v in rows if v[column] >= 0]
    assert votes
    return sum(g == p for g, p in votes) / len(votes)


def _samples(rt: Runtime, settings, version: int):
    ds = autods.open_dataset("rev", settings)
    return [s for shard in ds.version(version).shards for s in read_samples(ds.store, shard)]


def test_relabel_runs_on_the_label_queue_with_gold_from_postgresql(
        pg_url, redis_prefix, s3_endpoint, tmp_path):
    chosen = reviews()[:N_REVIEWS]
    truth = {r.text: r.label for r in chosen}
    source = tmp_path / "reviews.jsonl"
    write_jsonl(source, N_REVIEWS)
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=BUCKET)
    settings = service_settings(pg_url, redis_prefix, s3_endpoint, BUCKET)
    settings.pipeline.chunk_size = 40
    settings.pipeline.batch_size = 80
    cpu_queues = tuple(q for q in queues() if q != "gpu")
    cpu = WorkerProcess(settings, 2, tmp_path / "cpu.log", cpu_queues, "cpu-lab@%h").start()
    gpu = WorkerProcess(settings, 1, tmp_path / "gpu.log", ("gpu",), "gpu-lab@%h").start()
    try:
        cpu.wait_ready()
        gpu.wait_ready()
        built = autods.submit([str(source)], "rev", settings=settings,
                              lfs="tests.reviews_zeroshot_lfs").wait(timeout=400)
        assert built.status == "succeeded", built.error
        rt = Runtime(settings)
        first = _samples(rt, settings, 1)
        keys = {s.members["txt"].decode(): s.key for s in first}
        assert len(first) == N_REVIEWS

        report = fit_version(rt, "rev").report()
        assert report.n_samples == N_REVIEWS and report.n_gold == 0
        # The zero-shot LF voted in the build (its votes are in the label matrix) as in the
        # report's own fit over the shards, and mostly right.
        zero_shot = next(r for r in report.lfs if r.name == "lf_zero_shot")
        assert zero_shot.coverage > 0.2
        assert _zero_shot_accuracy(rt, truth) > 0.6
        assert report.coverage == pytest.approx(
            sum(s.fields["label"] is not None for s in first) / N_REVIEWS)

        gold = [(r.text, r.label) for r in chosen[:N_GOLD]]
        assert autods.import_gold("rev", _export(gold, keys), settings=settings) == N_GOLD
        job = autods.relabel("rev", settings=settings, timeout=300)
        status = job.wait(timeout=400)
    finally:
        cpu.stop()
        gpu.stop()
    assert status.status == "succeeded", status.error
    with session_scope(rt.engine) as db:
        stored = dict(db.execute(select(GoldLabel.key, GoldLabel.label)).all())
        annotators = set(db.scalars(select(GoldLabel.annotator)))
        model = db.scalars(select(LabelModelRow).where(LabelModelRow.job_id == job.id)).one()
    assert stored == {keys[t]: lab for t, lab in gold} and annotators == {"user:7"}
    assert model.source_version == 1 and model.info["n_gold"] == N_GOLD
    assert model.info["lfs"][0]["gold_votes"] >= 0

    after = _samples(rt, settings, 2)
    assert sorted(s.key for s in after) == sorted(keys.values())
    sources = {}
    for s in after:
        text = s.members["txt"].decode()
        sources[s.fields["label_source"]] = sources.get(s.fields["label_source"], 0) + 1
        assert s.fields["label"] is not None and int(s.members["cls"]) == s.fields["label_id"]
        assert s.fields["label_model"] == model.version
        if text in dict(gold):
            assert s.fields["label_source"] == "gold" and s.fields["label"] == truth[text]
    assert sources["gold"] == N_GOLD and sources["end_model"] > 0
    assert sum(sources.values()) == N_REVIEWS
    # Version 1 keeps the build's labels.
    assert [(s.key, s.fields["label"]) for s in _samples(rt, settings, 1)] == \
        [(s.key, s.fields["label"]) for s in first]
