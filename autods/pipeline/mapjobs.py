"""Jobs over existing shards: read a version's shards, map their samples, write new shards.

Such a job has ``kind = "map"``: its parameters name the sample map, the source version and
the shards it rewrites. Each rewritten shard is a planned ``shards`` row whose ``info``
names its parent; writing one is idempotent like any shard (same name, same bytes), so the
job resumes the way a build does, and its last step publishes the next dataset version, in
which each new shard replaces its parent.

Forgetting samples is such a job: their keys are tombstoned, the shards holding them are
rewritten without them, and once the version is out their raw objects are deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update

from autods.core import packs
from autods.core.maps import map_samples, read_samples, sample_map
from autods.core.records import JobRefused, JobState, ShardInfo
from autods.core.shard import write_shard
from autods.core.validate import IMAGE_EXTENSIONS
from autods.core.versions import Version, locate, read_version
from autods.db.models import Asset, Dataset, GoldLabel, Item, Job, Shard, Tombstone, utcnow
from autods.db.session import require_current, session_scope
from autods.pipeline.runtime import Runtime
from autods.version import PIPELINE_VERSION

log = logging.getLogger(__name__)


class DatasetUnknown(LookupError):
    """No dataset of that name in the database."""


class ChangeInProgress(JobRefused):
    """Another job over the same dataset's shards has not finished: two rewrites of one
    shard would each drop what the other kept."""


@dataclass(slots=True)
class ForgetPlan:
    """What ``forget`` found: the job (None when no key was found), the keys it forgets and
    the keys no sample of the version has."""

    job_id: int | None
    found: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)


def _dataset(db, name: str) -> Dataset:
    ds = db.scalar(select(Dataset).where(Dataset.name == name))
    if ds is None:
        raise DatasetUnknown(f"no dataset {name!r} in the database")
    return ds


def dataset_name(rt: Runtime, ref: str) -> str:
    """A dataset's name from its name or its output location."""
    if "://" not in ref:
        return ref
    with session_scope(rt.engine) as db:
        name = db.scalar(select(Dataset.name).where(Dataset.output_url == ref.rstrip("/")))
    if name is None:
        raise DatasetUnknown(f"no dataset writes to {ref}")
    return name


def plan_forget(rt: Runtime, dataset: str, keys: list[str]) -> ForgetPlan:
    """Record a job that forgets ``keys`` from the latest version; keys it lacks are
    reported, not an error (they may be forgotten already)."""
    require_current(rt.engine)
    with session_scope(rt.engine) as db:
        output_url = _dataset(db, dataset).output_url
    store = rt.store(output_url)
    version = read_version(store)
    plan = ForgetPlan(None)
    by_shard: dict[str, list[str]] = {}
    for key in dict.fromkeys(keys):
        where = locate(store, version, key)
        if where is None:
            plan.missing.append(key)
        else:
            plan.found.append(key)
            by_shard.setdefault(where.shard, []).append(key)
    plan.shards = sorted(by_shard)
    if plan.found:
        plan.job_id = _create_map_job(rt, dataset, version, "forget",
                                      {"keys": plan.found}, plan.shards)
        _tombstone(rt, plan.job_id, plan.found)
    return plan


def _create_map_job(rt: Runtime, dataset: str, version: Version, name: str,
                    params: dict, parents: list[str]) -> int:
    payload = {"map": name, "params": params, "source_version": version.number}
    fingerprint = hashlib.sha256(json.dumps([dataset, payload], sort_keys=True).encode())
    with session_scope(rt.engine) as db:
        # The dataset's row is locked: shard numbers and the one-change rule hold across
        # planners.
        ds = db.scalar(select(Dataset).where(Dataset.name == dataset).with_for_update())
        if ds is None:
            raise DatasetUnknown(f"no dataset {dataset!r} in the database")
        db.execute(update(Dataset).where(Dataset.id == ds.id)
                   .values(next_shard_no=Dataset.next_shard_no))  # the lock, on SQLite too
        running = db.execute(select(Job.id, Job.fingerprint).where(
            Job.dataset_id == ds.id, Job.kind == "map", Job.status == JobState.RUNNING)).all()
        for job_id, fp in running:
            if fp == fingerprint.hexdigest():  # the same change, interrupted: resume it
                return job_id
        if running:
            raise ChangeInProgress(f"job {running[0].id} is still changing {dataset!r}; "
                                   "run this again when it has finished")
        job = Job(dataset_id=ds.id, kind="map", status=JobState.RUNNING,
                  sources=[rt.store(ds.output_url).url], params=payload,
                  fingerprint=fingerprint.hexdigest(),
                  n_items=sum(version.shard(p).count for p in parents), started_at=utcnow())
        db.add(job)
        db.flush()
        for parent in parents:
            source = version.shard(parent)
            db.add(Shard(dataset_id=ds.id, job_id=job.id, batch_no=0,
                         name=f"shard-{ds.next_shard_no:06d}", modality=source.modality,
                         ext=next((e for e in source.extensions if e in IMAGE_EXTENSIONS),
                                  "txt"),
                         info={"parent": parent, "parent_tar": source.tar_key,
                               "parent_manifest": source.manifest_json_key,
                               "parent_manifest_parquet": source.manifest_parquet_key}))
            ds.next_shard_no += 1
        return job.id


def _tombstone(rt: Runtime, job_id: int, keys: list[str]) -> None:
    """One tombstone per key: the key and its content hash, never the content. A key an
    earlier, failed forget left a tombstone for is this job's now, so this job finishes
    the work (the version lists it, its objects are deleted)."""
    with session_scope(rt.engine) as db:
        dataset_id = db.scalar(select(Job.dataset_id).where(Job.id == job_id))
        known = set(db.scalars(select(Tombstone.key).where(Tombstone.dataset_id == dataset_id,
                                                           Tombstone.key.in_(keys))))
        if known:
            db.execute(update(Tombstone).where(Tombstone.dataset_id == dataset_id,
                                               Tombstone.key.in_(known))
                       .values(job_id=job_id))
        for key in keys:
            if key in known:
                continue
            sha = db.scalar(select(Asset.sha256).where(Asset.dataset_id == dataset_id,
                                                       Asset.sha256.startswith(key)))
            db.add(Tombstone(dataset_id=dataset_id, key=key, sha256=sha, job_id=job_id))


def pending_rewrites(rt: Runtime, job_id: int) -> list[int]:
    with session_scope(rt.engine) as db:
        return list(db.scalars(select(Shard.id).where(
            Shard.job_id == job_id, Shard.complete.is_(False)).order_by(Shard.name)))


def rewrite_shard(rt: Runtime, shard_id: int) -> str:
    """Write one planned shard from its parent through the job's map; idempotent."""
    with session_scope(rt.engine) as db:
        shard = db.get(Shard, shard_id)
        if shard.complete:
            return shard.name
        job = db.get(Job, shard.job_id)
        dataset = db.get(Dataset, job.dataset_id)
        name, info, params, out_url = shard.name, dict(shard.info), dict(job.params), \
            dataset.output_url
        provenance = {"dataset": dataset.name, "job": job.id,
                      "pipeline_version": PIPELINE_VERSION, "modality": shard.modality,
                      "parent_shards": [info["parent"]]}
    store = rt.store(out_url)
    parent = ShardInfo(name=info["parent"], count=0, nbytes=0, sha256="",
                       tar_key=info["parent_tar"], manifest_json_key=info["parent_manifest"],
                       manifest_parquet_key=info["parent_manifest_parquet"],
                       modality=provenance["modality"])
    samples = map_samples(read_samples(store, parent),
                          sample_map(params["map"], {**params["params"], "shard": info["parent"]},
                                     store))
    values: dict = {"complete": True, "count": len(samples)}
    if samples:
        written = write_shard(samples, name, store, provenance)
        values.update(nbytes=written.nbytes, sha256=written.sha256, info={
            **info, "tar": written.tar_key, "manifest": written.manifest_json_key,
            "manifest_parquet": written.manifest_parquet_key,
            "extensions": written.extensions})
    with session_scope(rt.engine) as db:
        db.execute(update(Shard).where(Shard.id == shard_id).values(**values))
    log.info("shard %s rewritten from %s: %d samples", name, info["parent"], len(samples))
    return name


def delete_forgotten(rt: Runtime, job_id: int) -> int:
    """Delete the stored bytes and gold labels of the job's tombstoned samples (after its
    version is out); their asset rows stay, without bytes, so the content is refused if it
    comes again. A pack that other assets still use has the forgotten ranges overwritten
    with zeros instead; bytes another asset uses at the same place (another dataset that
    stored the same pack) are kept."""
    with session_scope(rt.engine) as db:
        rows = db.execute(select(Asset.id, Asset.storage_key, Asset.pack_offset, Asset.nbytes)
                          .join(Tombstone, (Tombstone.dataset_id == Asset.dataset_id)
                                & (Tombstone.sha256 == Asset.sha256))
                          .where(Tombstone.job_id == job_id, Asset.storage_key != "")).all()
        ids = [r.id for r in rows]
        used = set(db.execute(select(Asset.storage_key, Asset.pack_offset).where(
            Asset.storage_key.in_({r.storage_key for r in rows}), Asset.id.not_in(ids))).all())
    store = rt.store()
    used_keys = {key for key, _ in used}
    for key in {r.storage_key for r in rows} - used_keys:
        store.delete(key)
    blanks: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in rows:
        if r.storage_key in used_keys and r.pack_offset is not None \
                and (r.storage_key, r.pack_offset) not in used:
            blanks[r.storage_key].append((r.pack_offset, r.nbytes))
    for key, ranges in blanks.items():
        packs.blank(store, key, ranges)
    # Recorded after the deletes: a finalize that dies between them deletes again. A text
    # sample's content and every caption live in the items' rows too: cleared as well.
    with session_scope(rt.engine) as db:
        if ids:
            db.execute(update(Asset).where(Asset.id.in_(ids)).values(storage_key=""))
            db.execute(update(Item).where(Item.asset_id.in_(ids))
                       .values(text=None, caption=None))
        # What people said of a forgotten sample goes with it (the annotator too).
        keys = select(Tombstone.key).where(Tombstone.job_id == job_id)
        db.execute(delete(GoldLabel).where(
            GoldLabel.dataset_id == select(Job.dataset_id).where(Job.id == job_id)
            .scalar_subquery(), GoldLabel.key.in_(keys)))
    return len(rows)
