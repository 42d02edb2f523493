"""Publish a batch: settle duplicates and labels in input order, then write its shards.

Runs as the batch chord's callback. Resolution happens strictly batch after batch (a batch
waits for its predecessor), so what survives depends only on input order; shard writing
after it is idempotent (same names, same bytes), so a redelivered callback just redoes it.
"""

from __future__ import annotations

import io
import json
import logging
from collections import defaultdict

import numpy as np
from PIL import Image
from sqlalchemy import func, select, update

from autods.core.dedup import Candidate, NearIndex, resolve
from autods.core.embed import npy_bytes
from autods.core.hashing import bands
from autods.core.label import ABSTAIN, fit_predict
from autods.core.manifest import write_index
from autods.core.records import ItemStatus, ShardInfo, ShardSample
from autods.core.shard import write_shard
from autods.db.models import (
    Asset,
    Batch,
    Chunk,
    Dataset,
    Feature,
    Item,
    Job,
    Label,
    LfVote,
    PhashBand,
    Shard,
    utcnow,
)
from autods.db.session import session_scope
from autods.pipeline.runtime import Runtime

log = logging.getLogger(__name__)

PIPELINE_VERSION = "autods-0.1"


class NotReady(Exception):  # noqa: N818 - a state, retried by the task
    """The previous batch has not been resolved yet; try again shortly."""


def _batch_chunks(db, job_id: int, batch_no: int) -> list[int]:
    return list(db.scalars(select(Chunk.chunk_no).where(
        Chunk.job_id == job_id, Chunk.batch_no == batch_no)))


def resolve_batch(rt: Runtime, job_id: int, batch_no: int) -> None:
    """Dedup verdicts, labels and shard plan for one batch, in one transaction."""
    with session_scope(rt.engine) as db:
        batch = db.scalar(select(Batch).where(Batch.job_id == job_id, Batch.batch_no == batch_no))
        if batch.resolved_at is not None:
            return
        if batch_no > 0 and db.scalar(select(Batch.resolved_at).where(
                Batch.job_id == job_id, Batch.batch_no == batch_no - 1)) is None:
            raise NotReady(f"job {job_id} batch {batch_no - 1} not resolved")
        job = db.get(Job, job_id)
        # Serialise resolution per dataset: concurrent jobs on one dataset take turns.
        dataset = db.scalar(select(Dataset).where(Dataset.id == job.dataset_id).with_for_update())
        chunks = _batch_chunks(db, job_id, batch_no)
        rows = db.execute(
            select(Item.id, Item.ordinal, Item.asset_id, Feature.phash, Asset.kept_item_id)
            .join(Asset, Asset.id == Item.asset_id)
            .outerjoin(Feature, Feature.asset_id == Item.asset_id)
            .where(Item.job_id == job_id, Item.chunk_no.in_(chunks), Item.status == "ingested")
            .order_by(Item.ordinal)
        ).all()
        candidates = [Candidate(r.id, r.ordinal, r.asset_id, r.phash) for r in rows]
        published = {r.asset_id: r.kept_item_id for r in rows if r.kept_item_id is not None}
        near = None
        if job.params.get("near_enabled", True):
            near = NearIndex(dataset.near_k)
            for item_id, phash in _published_neighbours(db, dataset, candidates):
                near.add(item_id, phash)
        verdicts = resolve(candidates, published, near)
        _record_verdicts(db, verdicts, {c.item_id: c.asset_id for c in candidates})
        kept = [v.item_id for v in verdicts if v.status == ItemStatus.PUBLISHED]
        if job.params.get("lfs"):
            _fit_labels(rt, db, job.params["lfs"], kept)
        _plan_shards(db, job, dataset, batch_no, kept)
        batch.resolved_at = utcnow()


def _published_neighbours(db, dataset: Dataset, candidates: list[Candidate]):
    """(item, pHash) of already published assets sharing a band with any candidate."""
    per_band: dict[int, set[int]] = defaultdict(set)
    for c in candidates:
        if c.phash is not None:
            for n, v in enumerate(bands(c.phash, dataset.near_k)):
                per_band[n].add(v)
    # One band at a time, so each lookup is a range of the (dataset, band, value) index
    # rather than a row-value list the planner may answer with a scan.
    seen: set[int] = set()
    for band_no, values in sorted(per_band.items()):
        ordered = sorted(values)
        for start in range(0, len(ordered), 5000):
            rows = db.execute(
                select(Asset.kept_item_id, Feature.phash)
                .join(PhashBand, PhashBand.asset_id == Asset.id)
                .join(Feature, Feature.asset_id == Asset.id)
                .where(PhashBand.dataset_id == dataset.id, PhashBand.band_no == band_no,
                       PhashBand.value.in_(ordered[start:start + 5000]),
                       Asset.kept_item_id.is_not(None))
            ).all()
            for item_id, phash in rows:
                if item_id not in seen:
                    seen.add(item_id)
                    yield item_id, phash


def _record_verdicts(db, verdicts, asset_of: dict[int, int]) -> None:
    rows = [
        {"id": v.item_id, "status": v.status.value, "duplicate_of": v.duplicate_of,
         "dedup_rule": v.rule,
         "reason": None if v.status == ItemStatus.PUBLISHED else v.status.value}
        for v in verdicts
    ]
    if rows:
        db.execute(update(Item), rows)
    kept = [{"id": asset_of[v.item_id], "kept_item_id": v.item_id}
            for v in verdicts if v.status == ItemStatus.PUBLISHED]
    if kept:
        db.execute(update(Asset), kept)


def _fit_labels(rt: Runtime, db, lfs: str, kept: list[int]) -> None:
    """Fit the LabelModel on the batch's published items and store one label per item."""
    spec = rt.label_spec(lfs)
    votes = dict(db.execute(select(LfVote.item_id, LfVote.votes)
                            .where(LfVote.item_id.in_(kept))).all()) if kept else {}
    ids = [i for i in kept if i in votes]
    matrix = np.array([votes[i] for i in ids], dtype=np.int64).reshape(len(ids), len(spec.lfs))
    labels, confidence = fit_predict(spec, matrix, rt.settings.label.epochs,
                                     rt.settings.label.seed)
    db.execute(Label.__table__.delete().where(Label.item_id.in_(ids)))
    if ids:
        db.execute(Label.__table__.insert(), [
            {"item_id": i, "label": int(lab),
             "name": spec.labels[lab] if lab != ABSTAIN else None,
             "probability": float(conf), "model_version": spec.version, "gold": False}
            for i, lab, conf in zip(ids, labels, confidence, strict=True)
        ])


def _plan_shards(db, job: Job, dataset: Dataset, batch_no: int, kept: list[int]) -> None:
    """Group published items by member layout, cut into shards, allocate shard numbers.

    A shard holds one modality and one image extension, so every sample in it has the
    same member extensions (what Hugging Face ``datasets`` and ``wids`` require).
    """
    if not kept:
        return
    rows = db.execute(
        select(Item.id, Item.ordinal, Item.modality, Asset.ext)
        .join(Asset, Asset.id == Item.asset_id).where(Item.id.in_(kept)).order_by(Item.ordinal)
    ).all()
    size = job.params["shard_size"]
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for r in rows:
        groups[(r.modality, r.ext)].append(r.id)
    assignments = []
    for (modality, ext), ids in sorted(groups.items()):
        for start in range(0, len(ids), size):
            name = f"shard-{dataset.next_shard_no:06d}"
            dataset.next_shard_no += 1
            members = ids[start:start + size]
            db.add(Shard(dataset_id=dataset.id, job_id=job.id, batch_no=batch_no, name=name,
                         modality=modality, ext=ext, count=len(members)))
            assignments += [{"id": i, "shard_name": name} for i in members]
    db.execute(update(Item), assignments)


def pending_shards(rt: Runtime, job_id: int, batch_no: int) -> dict[int, str]:
    """Id -> name of the batch's shards not yet complete (all of them on a first run)."""
    with session_scope(rt.engine) as db:
        return dict(db.execute(select(Shard.id, Shard.name).where(
            Shard.job_id == job_id, Shard.batch_no == batch_no, Shard.complete.is_(False))
            .order_by(Shard.name)).all())


def write_planned_shard(rt: Runtime, shard_id: int) -> str:
    """Write one planned shard and mark it complete; a complete one is left as it is.

    Each shard is written on its own (several at once across workers), and becomes
    complete only when its tar and manifests are in place.
    """
    with session_scope(rt.engine) as db:
        shard = db.get(Shard, shard_id)
        if shard.complete:
            return shard.name
        job = db.get(Job, shard.job_id)
        dataset = db.get(Dataset, job.dataset_id)
    info = _write_one(rt, job, dataset, shard)
    with session_scope(rt.engine) as db:
        db.execute(update(Shard).where(Shard.id == shard_id).values(
            complete=True, nbytes=info.nbytes, sha256=info.sha256, count=info.count,
            info={"tar": info.tar_key, "manifest": info.manifest_json_key,
                  "manifest_parquet": info.manifest_parquet_key,
                  "extensions": info.extensions}))
    return shard.name


def _write_one(rt: Runtime, job: Job, dataset: Dataset, shard: Shard) -> ShardInfo:
    with session_scope(rt.engine) as db:
        rows = db.execute(
            select(Item, Asset, Feature, Label)
            .join(Asset, Asset.id == Item.asset_id)
            .outerjoin(Feature, Feature.asset_id == Asset.id)
            .outerjoin(Label, Label.item_id == Item.id)
            .where(Item.job_id == job.id, Item.shard_name == shard.name)
            .order_by(Item.ordinal)
        ).all()
    store = rt.store()
    embed, labelled = job.params.get("embed", False), bool(job.params.get("lfs"))
    matrices: dict[str, np.ndarray] = {}
    samples = []
    for item, asset, feat, label in rows:
        samples.append(_sample(store, matrices, job, item, asset, feat, label, embed, labelled))
    provenance = {"dataset": dataset.name, "job": job.id, "pipeline_version": PIPELINE_VERSION,
                  "modality": shard.modality, "sources": job.sources}
    return write_shard(samples, shard.name, rt.store(dataset.output_url), provenance)


def _sample(store, matrices, job, item, asset, feat, label, embed: bool, labelled: bool
            ) -> ShardSample:
    data = store.get(asset.storage_key)
    key = asset.sha256[:24]
    members: dict[str, bytes] = {}
    if asset.modality == "image":
        members[asset.ext] = _maybe_resize(data, asset.ext, job.params.get("resize"))
        members["txt"] = (item.caption or "").encode()
    else:
        members["txt"] = data
    fields = {
        "sha256": asset.sha256, "uri": item.uri, "modality": asset.modality,
        "source": item.source, "license": item.license, "nbytes": asset.nbytes,
        "width": feat.width if feat else None, "height": feat.height if feat else None,
        "format": feat.format if feat else None, "mode": feat.mode if feat else None,
        "phash": f"{feat.phash & 0xFFFFFFFFFFFFFFFF:016x}" if feat and feat.phash is not None
        else None,
        "has_caption": bool(item.caption), "ordinal": item.ordinal, "job": job.id,
        "ingested_at": item.ingested_at.isoformat() if item.ingested_at else None,
    }
    if labelled:
        fields["label_id"] = label.label if label else ABSTAIN
        fields["label"] = label.name if label else None
        fields["confidence"] = label.probability if label else None
        fields["label_model"] = label.model_version if label else None
    members["json"] = _sample_json(key, fields, item.caption, item.meta or {})
    if embed:
        if feat is None or feat.embedding_key is None:
            raise RuntimeError(f"asset {asset.id} has no embedding")
        if feat.embedding_key not in matrices:
            matrices[feat.embedding_key] = np.load(io.BytesIO(store.get(feat.embedding_key)))
        members["npy"] = npy_bytes(matrices[feat.embedding_key][feat.embedding_row])
    if labelled:
        members["cls"] = str(fields["label_id"]).encode()
    return ShardSample(key=key, members=members, fields=fields)


_TEXT_FIELDS = ("source", "license", "format", "mode", "label", "label_model", "caption")


def _sample_json(key: str, fields: dict, caption: str | None, meta: dict) -> bytes:
    """The ``.json`` member: type-stable and reproducible.

    Readers that infer a schema from the first samples (Hugging Face ``datasets``) fail
    when a field is null there and a string later, so text fields are "" when absent and an
    abstained label has confidence 0.0 (its ``label_id`` is -1); null user values are
    dropped. What differs between runs (job id, times) stays in the manifest only, so a
    re-run or a resumed run writes byte-identical shards.
    """
    doc = {k: v for k, v in fields.items() if k not in ("job", "ingested_at")}
    doc["caption"] = caption
    for name in _TEXT_FIELDS:
        if name in doc and doc[name] is None:
            doc[name] = ""
    if "confidence" in doc and doc["confidence"] is None:
        doc["confidence"] = 0.0
    doc["key"] = key
    doc["meta"] = {k: v for k, v in meta.items() if v is not None}
    return json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()


def _maybe_resize(data: bytes, ext: str, resize: int | None) -> bytes:
    """Original bytes unless the job asked for a maximum side; then re-encode once."""
    if not resize:
        return data
    img = Image.open(io.BytesIO(data))
    if max(img.size) <= resize:
        return data
    fmt = img.format
    img.thumbnail((resize, resize))
    out = io.BytesIO()
    img.save(out, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


def commit_batch(rt: Runtime, job_id: int, batch_no: int) -> bool:
    """Mark the batch committed; True when it was the job's last outstanding batch."""
    with session_scope(rt.engine) as db:
        # Commits of one job take turns, so exactly one of them sees nothing left.
        db.execute(select(Job.id).where(Job.id == job_id).with_for_update())
        db.execute(update(Batch).where(Batch.job_id == job_id, Batch.batch_no == batch_no,
                                       Batch.committed_at.is_(None))
                   .values(committed_at=utcnow()))
        left = db.scalar(select(func.count()).select_from(Batch).where(
            Batch.job_id == job_id, Batch.committed_at.is_(None)))
    return left == 0


def finalize_job(rt: Runtime, job_id: int) -> str:
    """Rewrite the dataset index from every complete shard and close the job."""
    with session_scope(rt.engine) as db:
        job = db.get(Job, job_id)
        dataset = db.get(Dataset, job.dataset_id)
        shards = list(db.scalars(select(Shard).where(
            Shard.dataset_id == dataset.id, Shard.complete.is_(True)).order_by(Shard.name)))
        infos = [
            ShardInfo(name=s.name, count=s.count, nbytes=s.nbytes or 0, sha256=s.sha256 or "",
                      tar_key=s.info["tar"], manifest_json_key=s.info["manifest"],
                      manifest_parquet_key=s.info["manifest_parquet"], modality=s.modality,
                      extensions=s.info.get("extensions", []))
            for s in shards
        ]
        key = write_index(rt.store(dataset.output_url), infos, dataset.name)
        if job.status != "succeeded":
            job.status = "succeeded"
            job.finished_at = utcnow()
    return key


def job_failed(rt: Runtime, job_id: int) -> bool:
    with session_scope(rt.engine) as db:
        return db.scalar(select(Job.status).where(Job.id == job_id)) == "failed"


def fail_job(rt: Runtime, job_id: int, error: str) -> None:
    with session_scope(rt.engine) as db:
        job = db.get(Job, job_id)
        if job.status not in ("succeeded", "failed"):
            job.status, job.error, job.finished_at = "failed", error[:4000], utcnow()

