"""Batches resolve in input order by handing over, not by polling their predecessor."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from autods.core.records import BatchState
from autods.db.models import Batch, Job
from autods.db.session import session_scope
from autods.pipeline.chunks import run_stage
from autods.pipeline.options import JobOptions
from autods.pipeline.plan import create_job
from autods.pipeline.resolve import resolve_batch, take_turn
from tests.datagen import image_folder
from tests.promtext import by_label


def _states(rt, job) -> list[str]:
    with session_scope(rt.engine) as db:
        return [b.state for b in db.scalars(
            select(Batch).where(Batch.job_id == job).order_by(Batch.batch_no))]


def _ingested_job(rt, tmp_path, chunk_size: int, batch_size: int, source: str = "in") -> int:
    """A job over the images in ``tmp_path / source`` with every chunk ingested and
    preprocessed, its batches not resolved."""
    job = create_job(rt, [str(tmp_path / source)], "d",
                     JobOptions(chunk_size=chunk_size, batch_size=batch_size, embed=False),
                     output_url=(tmp_path / "out").as_uri())
    with session_scope(rt.engine) as db:
        n_chunks = db.scalar(select(Job.n_chunks).where(Job.id == job))
    for chunk_no in range(n_chunks):
        for stage in ("ingest", "preprocess"):
            run_stage(rt, stage, job, chunk_no)
    return job


def _job_of_three_batches(rt, tmp_path) -> int:
    image_folder(tmp_path / "in", n_unique=12)
    return _ingested_job(rt, tmp_path, chunk_size=2, batch_size=4)


def test_a_batch_ahead_of_its_turn_waits_and_its_predecessor_hands_over(runtime, tmp_path):
    job = _job_of_three_batches(runtime, tmp_path)

    assert take_turn(runtime, job, 2) is False  # batch 1 has not resolved
    assert take_turn(runtime, job, 1) is False
    assert _states(runtime, job) == [BatchState.RUNNING, BatchState.READY, BatchState.READY]

    assert take_turn(runtime, job, 0) is True
    assert resolve_batch(runtime, job, 0) is True  # batch 1 is ready: hand over
    assert resolve_batch(runtime, job, 0) is True  # a redelivery hands over again
    assert resolve_batch(runtime, job, 1) is True
    assert resolve_batch(runtime, job, 2) is False  # the last batch has no successor
    assert _states(runtime, job) == [BatchState.RESOLVED] * 3


def test_a_batch_whose_predecessor_resolved_takes_its_turn_itself(runtime, tmp_path):
    job = _job_of_three_batches(runtime, tmp_path)
    take_turn(runtime, job, 0)

    assert resolve_batch(runtime, job, 0) is False  # batch 1 not ready: nobody to hand to
    assert take_turn(runtime, job, 1) is True


def test_a_batch_is_resolved_once_however_often_it_is_delivered(runtime, tmp_path):
    from autods.db.models import Shard

    job = _job_of_three_batches(runtime, tmp_path)
    take_turn(runtime, job, 0)
    resolve_batch(runtime, job, 0)
    resolve_batch(runtime, job, 0)

    with session_scope(runtime.engine) as db:
        shards = db.scalars(select(Shard.name).where(Shard.job_id == job)).all()
    assert shards == ["shard-000000"]


def test_a_resolved_batch_is_counted_once_in_the_metrics(runtime, tmp_path, metrics_on):
    from autods.pipeline.status import job_status

    image_folder(tmp_path / "in", n_unique=6, n_exact=2, n_near=1, bad=True)
    job = _ingested_job(runtime, tmp_path, chunk_size=4, batch_size=100)
    take_turn(runtime, job, 0)

    resolve_batch(runtime, job, 0)
    resolve_batch(runtime, job, 0)  # a redelivered callback counts nothing

    scraped = metrics_on()
    status = job_status(runtime, job)
    items = [(dict(labels), n) for (name, labels), n in scraped.items()
             if name == "autods_items_total"]
    per_status: Counter[str] = Counter()
    for labels, n in items:
        per_status[labels["status"]] += n
    assert per_status == status.statuses == {"published": 6, "exact_duplicate": 2,
                                             "near_duplicate": 1, "failed": 3}
    assert {labels["reason"]: n for labels, n in items if labels["status"] == "failed"} == {
        "corrupt_image": 1, "not_an_image": 1, "empty": 1}
    assert by_label(scraped, "autods_duplicates_total", "rule") == status.rules == {
        "sha256": 2, "phash": 1}


def test_a_later_batch_drops_near_copies_of_what_an_earlier_one_published(runtime, tmp_path):
    """The first batch has nothing published to look up; the next looks up what it
    published. A progress poll counts the same published items without reading them."""
    from autods.db.models import Item
    from autods.pipeline.status import job_status

    image_folder(tmp_path / "in", n_unique=4, n_near=1)  # the near copy sorts last
    job = _ingested_job(runtime, tmp_path, chunk_size=2, batch_size=4)
    for batch_no in (0, 1):
        take_turn(runtime, job, batch_no)
        resolve_batch(runtime, job, batch_no)

    with session_scope(runtime.engine) as db:
        items = {uri.rsplit("/", 1)[1]: (item_id, status, duplicate_of, shard)
                 for uri, item_id, status, duplicate_of, shard in db.execute(
                     select(Item.uri, Item.id, Item.status, Item.duplicate_of,
                            Item.shard_name).where(Item.job_id == job))}
    original, copy = items["img_00003.jpg"], items["img_00003_znear.jpg"]
    assert copy[1:] == ("near_duplicate", original[0], None)
    assert original[1] == "published" and original[3] is not None
    full = job_status(runtime, job)
    assert full.statuses == {"published": 4, "near_duplicate": 1}
    progress = job_status(runtime, job, outcomes=False)
    assert progress.statuses == {"published": 4}
    assert (progress.reasons, progress.rules, progress.labelled) == ({}, {}, 0)
    assert progress.stages == full.stages


def test_statistics_are_refreshed_each_time_published_images_double(
        runtime, tmp_path, monkeypatch):
    """Each of three batches of 4 images doubles a band index planned from 2 images
    (4, 8, 16): each asks for fresh statistics, saying how many images it has published
    (``db.stats.refresh`` decides; its rule is tested on PostgreSQL)."""
    from autods.core import bandindex
    from autods.pipeline import resolve

    monkeypatch.setattr(bandindex, "MIN_PLAN_SIZE", 2)
    refreshed: list[tuple[int, int]] = []
    monkeypatch.setattr(resolve, "refresh",
                        lambda db, published: refreshed.append((batch_no, published)))
    job = _job_of_three_batches(runtime, tmp_path)
    for batch_no in range(3):
        take_turn(runtime, job, batch_no)
        resolve_batch(runtime, job, batch_no)
    assert refreshed == [(0, 4), (1, 8), (2, 12)]


def test_a_batch_step_decides_without_holding_the_write_lock(runtime, tmp_path, monkeypatch):
    """SQLite has one writer: while a batch step reads and decides, the chunks of the next
    batch must still be able to write (here: a write that may not wait at all)."""
    import sqlite3

    from autods.pipeline import resolve

    job = _job_of_three_batches(runtime, tmp_path)
    decide, written = resolve._decide, []

    def deciding(rt, db, job_id, batch_no):
        path = runtime.settings.database.url.removeprefix("sqlite:///")
        with sqlite3.connect(path, timeout=0) as other:
            other.execute("UPDATE jobs SET error = 'written while deciding' WHERE id = ?",
                          (job_id,))
        written.append(batch_no)
        return decide(rt, db, job_id, batch_no)

    monkeypatch.setattr(resolve, "_decide", deciding)
    take_turn(runtime, job, 0)
    resolve_batch(runtime, job, 0)
    assert written == [0]
    assert _states(runtime, job)[0] == BatchState.RESOLVED


def test_a_decision_read_before_another_job_published_is_made_again(runtime, tmp_path,
                                                                    monkeypatch):
    """Job B decides its batch while job A's batch publishes the original of B's near
    copy: B's step sees the dataset's shard counter moved, decides again under the
    dataset's lock, and drops the copy."""
    import shutil

    from autods.db.models import Item
    from autods.pipeline import resolve

    image_folder(tmp_path / "all", n_unique=2, n_near=1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "all" / "img_00001.jpg", tmp_path / "a")
    for name in ("img_00000.jpg", "img_00001_znear.jpg"):
        shutil.copy(tmp_path / "all" / name, tmp_path / "b")
    job_a = _ingested_job(runtime, tmp_path, chunk_size=4, batch_size=4, source="a")
    job_b = _ingested_job(runtime, tmp_path, chunk_size=4, batch_size=4, source="b")
    decide, decided = resolve._decide, []

    def deciding(rt, db, job_id, batch_no):
        decision = decide(rt, db, job_id, batch_no)
        decided.append(job_id)
        if decided == [job_b]:  # A publishes after B read, before B writes
            take_turn(rt, job_a, 0)
            resolve_batch(rt, job_a, 0)
        return decision

    monkeypatch.setattr(resolve, "_decide", deciding)
    take_turn(runtime, job_b, 0)
    resolve_batch(runtime, job_b, 0)

    assert decided == [job_b, job_a, job_b]
    with session_scope(runtime.engine) as db:
        items = {uri.rsplit("/", 1)[1]: (job, item_id, status, duplicate_of)
                 for uri, job, item_id, status, duplicate_of in db.execute(
                     select(Item.uri, Item.job_id, Item.id, Item.status, Item.duplicate_of))}
    original, copy = items["img_00001.jpg"], items["img_00001_znear.jpg"]
    assert original[:1] + original[2:] == (job_a, "published", None)
    assert copy == (job_b, copy[1], "near_duplicate", original[1])
    assert items["img_00000.jpg"][2] == "published"
