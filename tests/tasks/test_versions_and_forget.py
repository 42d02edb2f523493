"""Versions across jobs and a job over shards (forget), through the canvas and a worker."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from sqlalchemy import select

import autods
from autods.core.labelstudio import GoldLabel
from autods.core.packs import StoredRef, read_one
from autods.core.records import JobState
from autods.db.models import Asset, Dataset, Job, Tombstone
from autods.db.session import session_scope
from autods.pipeline.mapjobs import plan_forget
from autods.pipeline.options import JobOptions
from autods.pipeline.plan import create_job
from autods.pipeline.relabel import gold_labels, store_gold
from autods.pipeline.status import job_status
from autods.progress import watch
from autods.tasks.canvas import dispatch
from tests.datagen import image_folder


def _run(rt, job_id: int):
    dispatch(rt, job_id)
    return watch(lambda: job_status(rt, job_id), interval=0.05, timeout=120)


def _build(rt, folder, out):
    job = create_job(rt, [str(folder)], "pets", JobOptions(chunk_size=4, batch_size=8,
                                                            shard_size=4, embed=False),
                     output_url=out.as_uri())
    status = _run(rt, job)
    assert status.status == JobState.SUCCEEDED, status.error
    return job


def test_each_job_publishes_a_version_and_forget_rewrites_only_what_it_must(
        runtime, memory_worker, tmp_path):
    out = tmp_path / "out"
    image_folder(tmp_path / "a", n_unique=6, seed0=100)
    image_folder(tmp_path / "b", n_unique=5, seed0=200)
    first = _build(runtime, tmp_path / "a", out)
    second = _build(runtime, tmp_path / "b", out)

    ds = autods.open_dataset("pets", settings=runtime.settings)  # by name, from the database
    v1, v2 = ds.version(1), ds.version(2)
    assert (v1.doc["job"], v2.doc["job"], v2.doc["parent"]) == (first, second, 1)
    assert v1.num_samples == 6 and v2.num_samples == 11
    assert set(v1.names) < set(v2.names)
    store = runtime.store()
    pinned = {s.name: hashlib.sha256(ds.store.get(s.tar_key)).hexdigest() for s in v1.shards}

    doomed = ds.query("ordinal = 0", columns=["sha256"]).table.to_pylist()
    keys = [r["key"] for r in doomed]
    forgotten_bytes = [ds.get(k)["jpg"] for k in keys]
    assert all(any(blob in store.get(k) for k in store.list("packs"))
               for blob in forgotten_bytes)
    assert len(keys) == 2  # the first input of each job
    kept_key = next(k for k in ds.query("ordinal = 1").table["key"].to_pylist())
    store_gold(runtime, "pets", [GoldLabel(k, "cat", "ann@example.org", datetime.now(UTC), 1)
                                 for k in (*keys, kept_key)], "test")
    plan = plan_forget(runtime, "pets", [*keys, "f" * 24])
    assert plan.missing == ["f" * 24] and sorted(plan.found) == sorted(keys)
    # Planning the same change again, before it ran, resumes it instead of adding a job.
    assert plan_forget(runtime, "pets", [*keys, "f" * 24]).job_id == plan.job_id
    status = _run(runtime, plan.job_id)
    assert status.status == JobState.SUCCEEDED, status.error

    v3 = ds.version()
    assert v3.number == 3 and v3.doc["kind"] == "map" and v3.num_samples == 9
    assert sorted(v3.doc["tombstones"]) == sorted(keys)
    # Only the two shards holding the forgotten samples were rewritten.
    assert len(v3.doc["removed"]) == len(plan.shards) == len(v3.doc["added"])
    for name in v3.doc["added"]:
        manifest = json.loads(ds.store.get(v3.shard(name).manifest_json_key))
        assert manifest["parent_shards"][0] in v3.doc["removed"]
        assert manifest["job"] == plan.job_id
    assert not set(keys) & set(ds.query("__key__ IS NOT NULL").table["key"].to_pylist())
    # Version 1 still reads the same bytes; the stored objects of the forgotten are gone.
    assert {s.name: hashlib.sha256(ds.store.get(s.tar_key)).hexdigest()
            for s in ds.version(1).shards} == pinned
    assert {k for k in ds.query("ordinal = 0", version=1).table["key"].to_pylist()} \
        == {keys[0]}
    with session_scope(runtime.engine) as db:
        stones = db.execute(select(Tombstone.key, Tombstone.sha256)).all()
        assets = db.execute(select(Asset.sha256, Asset.storage_key).where(
            Asset.sha256.in_([r["sha256"] for r in doomed]))).all()
        kinds = dict(db.execute(select(Job.id, Job.kind)).all())
    assert sorted(k for k, _ in stones) == sorted(keys)
    assert {sha for _, sha in stones} == {r["sha256"] for r in doomed}
    assert [key for _, key in assets] == ["", ""]
    # The forgotten bytes are in no stored object; every other asset still reads back.
    with session_scope(runtime.engine) as db:
        refs = {r.sha256: StoredRef.of(r) for r in db.execute(
            select(Asset.sha256, Asset.storage_key, Asset.pack_offset, Asset.nbytes)
            .where(Asset.storage_key != ""))}
    assert len(refs) == 9 and all(hashlib.sha256(read_one(store, ref)).hexdigest() == sha
                                  for sha, ref in refs.items())
    assert not [k for k in store.list("") for blob in forgotten_bytes if blob in store.get(k)]
    assert kinds == {first: "build", second: "build", plan.job_id: "map"}
    # Gold labels of forgotten samples are gone; others stay.
    assert set(gold_labels(runtime, "pets")) == {kept_key}

    # Forgetting what is already forgotten finds nothing and starts no job.
    again = plan_forget(runtime, "pets", keys)
    assert again.job_id is None and sorted(again.missing) == sorted(keys)


def test_forgotten_content_is_refused_again_and_shared_objects_are_kept(
        runtime, memory_worker, tmp_path):
    """Packs are content-addressed and shared by datasets that stored the same chunk:
    forgetting a sample in one keeps the bytes another still uses; the same content sent
    again to the dataset that forgot it is refused with a reason, and not stored again."""
    image_folder(tmp_path / "a", n_unique=3, seed0=300)
    _build(runtime, tmp_path / "a", tmp_path / "pets")
    other = create_job(runtime, [str(tmp_path / "a")], "others",
                       JobOptions(chunk_size=4, batch_size=8, shard_size=4, embed=False),
                       output_url=(tmp_path / "others").as_uri())
    assert _run(runtime, other).status == JobState.SUCCEEDED

    ds = autods.open_dataset(str(tmp_path / "pets"))
    row = ds.query("ordinal = 1", columns=["sha256"]).table.to_pylist()[0]
    plan = plan_forget(runtime, "pets", [row["key"]])
    assert _run(runtime, plan.job_id).status == JobState.SUCCEEDED
    # Both datasets stored the same chunks in the same packs: the other one still reads it.
    with session_scope(runtime.engine) as db:
        theirs = db.execute(select(Asset.storage_key, Asset.pack_offset, Asset.nbytes)
                            .join(Dataset, Dataset.id == Asset.dataset_id)
                            .where(Dataset.name == "others", Asset.sha256 == row["sha256"])).one()
    data = read_one(runtime.store(), StoredRef(*theirs))
    assert hashlib.sha256(data).hexdigest() == row["sha256"]
    assert row["key"] in set(autods.open_dataset(str(tmp_path / "others"))
                             .query("width > 0").table["key"].to_pylist())

    again = _build(runtime, tmp_path / "a", tmp_path / "pets")
    status = job_status(runtime, again)
    assert status.reasons.get("forgotten") == 1
    assert row["key"] not in set(ds.query("width > 0").table["key"].to_pylist())


def test_one_change_at_a_time_and_a_retried_forget_takes_over_the_tombstones(
        runtime, memory_worker, tmp_path):
    import pytest

    from autods.pipeline.mapjobs import ChangeInProgress

    image_folder(tmp_path / "a", n_unique=4, seed0=400)
    _build(runtime, tmp_path / "a", tmp_path / "pets")
    keys = autods.open_dataset(str(tmp_path / "pets")).query("width > 0").table["key"] \
        .to_pylist()
    first = plan_forget(runtime, "pets", keys[:1])  # planned, not sent
    with pytest.raises(ChangeInProgress, match=f"job {first.job_id}"):
        plan_forget(runtime, "pets", keys[1:2])
    with session_scope(runtime.engine) as db:  # the first one failed for good
        db.get(Job, first.job_id).status = JobState.FAILED
    retry = plan_forget(runtime, "pets", keys[:2])
    assert retry.job_id != first.job_id
    with session_scope(runtime.engine) as db:
        assert set(db.scalars(select(Tombstone.job_id))) == {retry.job_id}
    assert _run(runtime, retry.job_id).status == JobState.SUCCEEDED
    v = autods.open_dataset(str(tmp_path / "pets")).version()
    assert sorted(v.doc["tombstones"]) == sorted(keys[:2]) and v.num_samples == 2
