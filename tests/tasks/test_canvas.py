"""The canvas with a real worker (threads) on the in-memory broker: chords, callbacks,
retries and the error path."""

from __future__ import annotations

import json
import tarfile

from autods.core.records import TransientError
from autods.pipeline import ingest, preprocess
from autods.pipeline.plan import JobOptions, create_job
from autods.pipeline.status import job_status
from autods.progress import watch
from autods.tasks.canvas import batch_chord, chunk_chain, dispatch
from tests.datagen import image_folder, texts_file


def _run(rt, job_id, timeout=120):
    dispatch(rt, job_id)
    return watch(lambda: job_status(rt, job_id), interval=0.2, show=False, timeout=timeout)


def test_chain_skips_stages_that_are_off():
    names = [t.task for t in chunk_chain(1, 0, JobOptions(embed=False, lfs=None)).tasks]
    assert names == ["autods.ingest.chunk", "autods.preprocess.chunk"]
    names = [t.task for t in chunk_chain(1, 0, JobOptions(embed=True, lfs="m")).tasks]
    assert names[2:] == ["autods.embed.chunk", "autods.label.chunk"]


def test_batch_chord_header_is_the_batch_chunks_and_callback_publishes():
    sig = batch_chord(7, 2, [8, 9, 10], JobOptions(embed=False))
    assert len(sig.tasks) == 3
    assert sig.body.task == "autods.publish.batch"
    assert sig.body.kwargs == {"job_id": 7, "batch_no": 2}
    assert sig.body.options["link_error"][0]["task"] == "autods.job.fail"


def test_job_of_several_batches_completes_through_chords(runtime, memory_worker, tmp_path):
    from celery.signals import task_retry

    exp = image_folder(tmp_path / "in", n_unique=14, n_exact=2, n_near=2, bad=True)
    texts = texts_file(tmp_path / "texts.jsonl", 5)
    job = create_job(runtime, [str(tmp_path / "in"), str(tmp_path / "texts.jsonl")], "ds",
                     JobOptions(chunk_size=4, batch_size=8, shard_size=5, embed=True),
                     output_url=(tmp_path / "out").as_uri())
    retried = []

    def on_retry(request=None, **_):
        retried.append(request.task)

    task_retry.connect(on_retry, weak=False)
    try:
        status = _run(runtime, job)
    finally:
        task_retry.disconnect(on_retry)

    assert status.status == "succeeded", status.error
    # Batches resolve in order by handing over: no callback waits by retrying.
    assert retried == [] and status.batches == {"committed": 4}
    assert status.statuses == {"published": 14 + 5, "exact_duplicate": 2 + 1,
                               "near_duplicate": 2, "failed": 3}
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    shas, texts_seen = set(), set()
    for entry in index["shardlist"]:
        with tarfile.open(tmp_path / "out" / entry["url"]) as tar:
            metas = [json.loads(tar.extractfile(m).read()) for m in tar.getmembers()
                     if m.name.endswith(".json")]
            assert len(metas) == entry["nsamples"]
            assert all(m.name.rsplit(".", 1)[1] in ("jpg", "txt", "json", "npy")
                       for m in tar.getmembers())
        for meta in metas:
            (texts_seen if meta["modality"] == "text" else shas).add(meta["sha256"])
    assert shas == set(exp.unique) and texts_seen == set(texts)


def test_transient_errors_are_retried_until_the_chunk_succeeds(runtime, memory_worker,
                                                               tmp_path, monkeypatch):
    image_folder(tmp_path / "in", n_unique=4)
    job = create_job(runtime, [str(tmp_path / "in")], "ds",
                     JobOptions(chunk_size=4, batch_size=8, embed=False),
                     output_url=(tmp_path / "out").as_uri())
    real, calls = ingest.ingest, []

    def flaky(rt, work):
        calls.append(work.chunk_no)
        if len(calls) == 1:
            raise TransientError("object store unavailable")
        return real(rt, work)

    monkeypatch.setattr(ingest, "ingest", flaky)

    status = _run(runtime, job)

    assert status.status == "succeeded" and len(calls) == 2
    assert status.statuses == {"published": 4}


def test_a_bug_in_a_chunk_fails_the_job_with_its_error(runtime, memory_worker, tmp_path,
                                                       monkeypatch):
    image_folder(tmp_path / "in", n_unique=6)
    job = create_job(runtime, [str(tmp_path / "in")], "ds",
                     JobOptions(chunk_size=4, batch_size=8, embed=False),
                     output_url=(tmp_path / "out").as_uri())
    real = preprocess.preprocess

    def broken(rt, work):
        if work.chunk_no == 1:
            raise ZeroDivisionError("a bug, not bad input")
        return real(rt, work)

    monkeypatch.setattr(preprocess, "preprocess", broken)

    status = _run(runtime, job)

    assert status.status == "failed"
    assert "ZeroDivisionError" in status.error or "a bug" in status.error
    assert not (tmp_path / "out" / "index.json").exists()


def test_empty_source_completes_with_an_empty_index(runtime, memory_worker, tmp_path):
    (tmp_path / "empty").mkdir()
    job = create_job(runtime, [str(tmp_path / "empty")], "ds", JobOptions(embed=False),
                     output_url=(tmp_path / "out").as_uri())
    status = _run(runtime, job)
    assert status.status == "succeeded" and status.n_items == 0
    assert json.loads((tmp_path / "out" / "index.json").read_text())["shardlist"] == []


def test_a_later_job_dedups_against_what_the_dataset_already_published(
        runtime, memory_worker, tmp_path):
    from PIL import Image

    from examples.sampledata import near_duplicate_bytes

    first = image_folder(tmp_path / "first", n_unique=4)
    (tmp_path / "second").mkdir()
    original = tmp_path / "first" / "img_00002.jpg"
    (tmp_path / "second" / "a_copy.jpg").write_bytes(original.read_bytes())
    (tmp_path / "second" / "b_near.jpg").write_bytes(near_duplicate_bytes(Image.open(original)))
    image_folder(tmp_path / "second", n_unique=1, seed0=9000)
    out = (tmp_path / "out").as_uri()
    job1 = create_job(runtime, [str(tmp_path / "first")], "shared", JobOptions(embed=False),
                      output_url=out)
    assert _run(runtime, job1).statuses == {"published": len(first.unique)}

    job2 = create_job(runtime, [str(tmp_path / "second")], "shared", JobOptions(embed=False))
    status = _run(runtime, job2)

    assert status.statuses == {"exact_duplicate": 1, "near_duplicate": 1, "published": 1}
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert sum(e["nsamples"] for e in index["shardlist"]) == len(first.unique) + 1
