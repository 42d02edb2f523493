"""Lineage of a sample: where its content came from, what every stage recorded about it,
and where it lies in each version of the dataset.

``autods why`` answers for an input; lineage follows the content. A sample is one asset
(one sha256 in the dataset), so its lineage gathers every input that carried those bytes,
in every job (an exact duplicate listed again by a later job included), each with its fate
from ``explain``, its LF votes and its label; then the asset's features, the gold label a
person gave it, and its shard, byte offset and size in every version that holds it. The
placements come from each version's key index and the shard's ``manifest.parquet`` (which
also carries the label that version gives it, a relabel's included), never from the tars.
Nothing here needs a broker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from autods.core.hashing import hash_hex
from autods.core.label import ABSTAIN, spec_version
from autods.core.lfreport import LfReport
from autods.core.records import LabellingModuleError
from autods.core.storage import ObjectStore
from autods.core.versions import (
    DatasetNotFound,
    RangeFile,
    list_versions,
    locate,
    read_version,
)
from autods.db.models import (
    Asset,
    Feature,
    GoldLabel,
    Item,
    Job,
    Label,
    LabelModelRow,
    LfVote,
    Tombstone,
)
from autods.db.session import session_scope
from autods.pipeline.explain import Fate, explain
from autods.pipeline.mapjobs import _dataset
from autods.pipeline.options import JobOptions
from autods.pipeline.runtime import Runtime

#: Manifest fields a version may set differently for the same sample (a relabel does).
_VERSION_FIELDS = ("label", "label_prob", "label_source", "label_model", "split")


def _json_ready(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Times as ISO text in UTC (SQLite hands them back without their zone)."""
    return {k: (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat()
            if isinstance(v, datetime) else v for k, v in pairs}


@dataclass(frozen=True, slots=True)
class Vote:
    """One labelling function's vote; ``lf`` and ``label`` are None where the spec the vote
    was cast under cannot be named again (its module changed or does not load here)."""

    lf: str | None
    vote: int
    label: str | None


@dataclass(frozen=True, slots=True)
class Votes:
    spec_version: str
    lfs_module: str | None
    votes: tuple[Vote, ...]


@dataclass(frozen=True, slots=True)
class LabelFacts:
    """The label the build's label model gave the input (``gold``: a person's)."""

    label: int
    name: str | None
    probability: float
    model_version: str
    gold: bool


@dataclass(frozen=True, slots=True)
class Input:
    """One job input that carried the content: where from, when, and what became of it."""

    fate: Fate
    source: str | None
    license: str | None
    ingested_at: datetime | None
    job_kind: str
    job_created_at: datetime | None
    job_started_at: datetime | None
    job_finished_at: datetime | None
    votes: Votes | None
    label: LabelFacts | None

    def to_dict(self) -> dict[str, Any]:
        """The fate's fields (every one, null when unset), its sentence, then the rest."""
        doc = asdict(self, dict_factory=_json_ready)
        return {**doc.pop("fate"), "summary": self.fate.sentence(), **doc}


@dataclass(frozen=True, slots=True)
class Features:
    """What preprocess and embed measured; ``error`` is why the pixels did not decode."""

    phash: str | None
    check_hash: str | None
    width: int | None
    height: int | None
    format: str | None
    mode: str | None
    language: str | None
    language_score: float | None
    text_sha256: str | None
    error: str | None
    error_detail: str | None
    embedding_model: str | None
    embedding_key: str | None
    embedding_row: int | None


@dataclass(frozen=True, slots=True)
class Gold:
    label: str
    annotator: str
    annotated_at: datetime
    origin: str
    imported_at: datetime


@dataclass(frozen=True, slots=True)
class Placement:
    """The sample in one version: ``tar[offset:offset + size]`` holds its members."""

    version: int | None
    kind: str
    job: int | None
    shard: str
    tar: str
    offset: int
    size: int
    label: str | None
    label_prob: float | None
    label_source: str | None
    label_model: str | None
    split: str | None


@dataclass(frozen=True, slots=True)
class Forgotten:
    job: int | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Lineage:
    """One content of the dataset and everything recorded about it. An input rejected
    before its bytes were hashed has no content: its lineage has no key and only inputs."""

    dataset: str
    key: str | None
    sha256: str | None
    modality: str | None
    mime: str | None
    ext: str | None  # the extension of its content's member in a shard
    nbytes: int | None
    inputs: tuple[Input, ...]
    features: Features | None
    gold: Gold | None
    versions: tuple[Placement, ...]
    forgotten: Forgotten | None

    def to_dict(self) -> dict[str, Any]:
        """Every key always present (null when unknown), so readers need no guessing."""
        doc = asdict(self, dict_factory=_json_ready)
        doc["inputs"] = [i.to_dict() for i in self.inputs]
        return doc


def lineage(rt: Runtime, dataset: str, ref: str) -> list[Lineage]:
    """The lineage of each content ``ref`` names (a URI, a sample key or a content hash
    prefix of at least 8 hex digits), in the order ``explain`` meets them: usually one, more
    when a URI was listed again with other bytes or a short prefix matches several. Empty
    when nothing matches; ``DatasetUnknown`` when there is no such dataset."""
    with session_scope(rt.engine) as db:
        ds = _dataset(db, dataset)
        dataset_id, output_url = ds.id, ds.output_url
    fates = explain(rt, dataset, ref)
    store = rt.store(output_url)
    names = _SpecNames(rt, dataset_id)
    found = []
    for key in dict.fromkeys(f.key for f in fates):
        if key is None:
            found.append(_unhashed(rt, dataset, dataset_id, [f for f in fates if f.key is None],
                                   names))
        else:
            found.append(_content(rt, dataset, dataset_id, key, store, names))
    return found


def _unhashed(rt: Runtime, dataset: str, dataset_id: int, fates: list[Fate],
              names: _SpecNames) -> Lineage:
    with session_scope(rt.engine) as db:
        inputs = _inputs(db, dataset_id, fates, names)
    return Lineage(dataset, None, None, None, None, None, None, inputs=inputs, features=None,
                   gold=None, versions=(), forgotten=None)


def _content(rt: Runtime, dataset: str, dataset_id: int, key: str, store: ObjectStore,
             names: _SpecNames) -> Lineage:
    # Every input of the content, not only those ``ref`` named: ``explain`` by its key.
    fates = [f for f in explain(rt, dataset, key) if f.key == key]
    with session_scope(rt.engine) as db:
        asset = db.scalar(select(Asset).where(Asset.dataset_id == dataset_id,
                                              Asset.sha256.startswith(key)))
        feature = db.get(Feature, asset.id)
        gold = db.get(GoldLabel, (dataset_id, key))
        stone = db.scalar(select(Tombstone).where(Tombstone.dataset_id == dataset_id,
                                                  Tombstone.key == key))
        inputs = _inputs(db, dataset_id, fates, names)
        facts = (asset.sha256, asset.modality, asset.mime, asset.ext, asset.nbytes)
        measured = _features(feature) if feature is not None else None
        given = Gold(gold.label, gold.annotator, gold.annotated_at, gold.origin,
                     gold.imported_at) if gold is not None else None
        forgotten = Forgotten(stone.job_id, stone.created_at) if stone is not None else None
    return Lineage(dataset, key, *facts, inputs=inputs, features=measured, gold=given,
                   versions=placements(store, key), forgotten=forgotten)


def _features(f: Feature) -> Features:
    return Features(
        phash=hash_hex(f.phash) if f.phash is not None else None,
        check_hash=hash_hex(f.check_hash) if f.check_hash is not None else None,
        width=f.width, height=f.height, format=f.format, mode=f.mode, language=f.language,
        language_score=f.language_score, text_sha256=f.text_sha256, error=f.error,
        error_detail=f.error_detail, embedding_model=f.embedding_model,
        embedding_key=f.embedding_key, embedding_row=f.embedding_row)


def _inputs(db: Session, dataset_id: int, fates: list[Fate], names: _SpecNames
            ) -> tuple[Input, ...]:
    """Each fate's input with its job's times, its votes and its label."""
    rows = db.execute(
        select(Item, Job, LfVote, Label)
        .join(Job, Job.id == Item.job_id)
        .outerjoin(LfVote, LfVote.item_id == Item.id)
        .outerjoin(Label, Label.item_id == Item.id)
        .where(Job.dataset_id == dataset_id,
               tuple_(Item.job_id, Item.ordinal).in_([(f.job, f.ordinal) for f in fates]))
    ).all()
    by_input = {(item.job_id, item.ordinal): (item, job, vote, label)
                for item, job, vote, label in rows}
    inputs = []
    for fate in fates:
        item, job, vote, label = by_input[(fate.job, fate.ordinal)]
        inputs.append(Input(
            fate, item.source, item.license, item.ingested_at, job.kind, job.created_at,
            job.started_at, job.finished_at,
            names.votes(db, JobOptions.from_params(job.params).lfs, vote)
            if vote is not None else None,
            LabelFacts(label.label, label.name, label.probability, label.model_version,
                       label.gold) if label is not None else None))
    return tuple(inputs)


class _SpecNames:
    """The LF and class names of the specs votes were cast under, looked up once each."""

    def __init__(self, rt: Runtime, dataset_id: int) -> None:
        self._rt, self._dataset_id = rt, dataset_id
        self._known: dict[tuple[str | None, str], tuple[list[str], list[str]] | None] = {}

    def votes(self, db: Session, module: str | None, row: LfVote) -> Votes:
        key = (module, row.spec_version)
        if key not in self._known:
            self._known[key] = self._lookup(db, module, row.spec_version)
        lfs, labels = self._known[key] or ([None] * len(row.votes), [])
        return Votes(row.spec_version, module, tuple(
            Vote(lf, int(v), labels[v] if v != ABSTAIN and v < len(labels) else None)
            for lf, v in zip(lfs, row.votes, strict=True)))

    def _lookup(self, db: Session, module: str | None, version: str
                ) -> tuple[list[str], list[str]] | None:
        """A label model fitted with the same spec names its LFs in its report (no user
        code runs); else the module itself, if it still is that spec."""
        if module is None:
            return None
        for info in db.scalars(select(LabelModelRow.info).where(
                LabelModelRow.dataset_id == self._dataset_id, LabelModelRow.lfs == module)
                .order_by(LabelModelRow.id.desc())):
            report = LfReport.from_dict(info)
            lfs, labels = [r.name for r in report.lfs], list(report.model.get("labels", []))
            if spec_version(module, labels, lfs) == version:
                return lfs, labels
        try:
            spec = self._rt.label_spec(module)
        except (LabellingModuleError, ImportError):
            return None
        return ([lf.name for lf in spec.lfs], spec.labels) if spec.version == version else None


def placements(store: ObjectStore, key: str) -> tuple[Placement, ...]:
    """Where sample ``key`` lies in every version that holds it, oldest first: the shard and
    byte range by the version's key index, the per-version fields by the shard's
    ``manifest.parquet`` (read once for the versions that share the shard)."""
    try:
        versions = [read_version(store, n) for n in list_versions(store)] or [
            read_version(store)]
    except DatasetNotFound:
        return ()
    rows: dict[str, dict[str, Any]] = {}
    found = []
    for version in versions:
        where = locate(store, version, key)
        if where is None:
            continue
        shard = version.shard(where.shard)
        if shard.manifest_parquet_key not in rows:
            rows[shard.manifest_parquet_key] = _manifest_row(store, shard.manifest_parquet_key,
                                                             key)
        row = rows[shard.manifest_parquet_key]
        found.append(Placement(
            version.number, version.doc.get("kind", "build"), version.doc.get("job"),
            shard.name, store.uri(shard.tar_key), where.offset, where.size,
            *(row.get(name) for name in _VERSION_FIELDS)))
    return tuple(found)


def _manifest_row(store: ObjectStore, parquet_key: str, key: str) -> dict[str, Any]:
    """The sample's row of a shard manifest, read by ranges (footer, then its row group)."""
    table = pq.read_table(RangeFile(store, parquet_key), filters=[("__key__", "==", key)])
    return table.slice(0, 1).to_pylist()[0]
