"""The labelling loop over a published version: LF report, review candidates, relabel.

Everything here reads the version's shards (tars and manifests), never the raw inputs: the
LFs run again on what was published (so a changed LF module takes effect), the vectors are
the shards' ``.npy`` members, and gold labels come from the database by sample key. One
label model is fitted on every vote of the version; ``plan_relabel`` then records a job
over the version's shards that writes every sample's new label (``autods.core.maps``),
keeping the older version intact.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select

from autods.core.label import ABSTAIN, LabelSpec, apply_lfs, data_point
from autods.core.labelmodel import (
    Assignment,
    FittedLabelModel,
    assign,
    fit_label_model,
    gold_digest,
    gold_vector,
    review_order,
)
from autods.core.lfreport import LfReport, lf_report
from autods.core.maps import read_samples
from autods.core.records import JobRefused, Modality
from autods.core.versions import Version, read_version
from autods.db.models import GoldLabel, Job, LabelModelRow, utcnow
from autods.db.session import session_scope
from autods.pipeline.mapjobs import _create_map_job, _dataset
from autods.pipeline.runtime import Runtime

log = logging.getLogger(__name__)

#: Manifest fields an LF sees, besides the text and caption.
_POINT_FIELDS = ("modality", "width", "height", "format", "mode", "nbytes", "source",
                 "license", "embedding_model")


class NoLabellingFunctions(JobRefused):
    """Relabelling needs an LF module and none was given or used by an earlier job."""


@dataclass(slots=True)
class VersionSamples:
    """What the loop needs of each sample of a version, in shard order."""

    keys: list[str]
    shards: list[str]
    points: list[SimpleNamespace]
    vectors: np.ndarray | None  # NaN rows where a sample has no vector
    groups: np.ndarray  # each row's vector space (embedding model and width), as a code
    texts: list[str]
    modalities: list[str]


def read_version_samples(store, version: Version) -> VersionSamples:
    """Every sample of ``version``: its LF data point, vector and display text."""
    keys, shards, points, texts, modalities = [], [], [], [], []
    vectors: list[np.ndarray | None] = []
    for shard in version.shards:
        for sample in read_samples(store, shard):
            f = sample.fields
            text = sample.members.get("txt", b"").decode("utf-8")
            is_text = f.get("modality") == Modality.TEXT
            vector = (np.load(io.BytesIO(sample.members["npy"]), allow_pickle=False)
                      if "npy" in sample.members else None)
            # The source's own fields, as the build's LFs saw them (the .json member).
            meta = json.loads(sample.members["json"]).get("meta", {}) \
                if "json" in sample.members else {}
            points.append(data_point(
                caption=None if is_text else (f.get("caption") or text or None),
                text=text if is_text else None, meta=meta, embedding=vector,
                **{k: f.get(k) for k in _POINT_FIELDS}))
            keys.append(sample.key)
            shards.append(shard.name)
            texts.append(text)
            modalities.append(str(f.get("modality")))
            vectors.append(vector)
    matrix, groups = _vector_matrix(vectors, [p.embedding_model for p in points])
    return VersionSamples(keys, shards, points, matrix, groups, texts, modalities)


def _vector_matrix(vectors: list[np.ndarray | None], models: list[str | None]
                   ) -> tuple[np.ndarray | None, np.ndarray]:
    """One matrix of every vector, zero-padded to the widest (NaN rows: no vector), and
    the code of each row's vector space: images and texts of one dataset embed apart."""
    spaces = {(m, v.shape[0]) for m, v in zip(models, vectors, strict=True) if v is not None}
    code = {space: i for i, space in enumerate(sorted(spaces, key=str))}
    groups = np.array([code[(m, v.shape[0])] if v is not None else -1
                       for m, v in zip(models, vectors, strict=True)], np.int64)
    if not spaces:
        return None, groups
    matrix = np.full((len(vectors), max(d for _, d in spaces)), np.nan, np.float32)
    for i, v in enumerate(vectors):
        if v is not None:
            matrix[i] = 0.0
            matrix[i, :v.shape[0]] = v
    return matrix, groups


def gold_labels(rt: Runtime, dataset: str) -> dict[str, str]:
    with session_scope(rt.engine) as db:
        ds = _dataset(db, dataset)
        return dict(db.execute(select(GoldLabel.key, GoldLabel.label)
                               .where(GoldLabel.dataset_id == ds.id)).all())


def store_gold(rt: Runtime, dataset: str, labels, origin: str) -> int:
    """Store gold labels (``GoldLabel`` records of ``autods.core.labelstudio``); a key
    labelled again takes the newer label. Returns how many were stored."""
    latest = {g.key: g for g in sorted(labels, key=lambda g: g.created_at)}
    with session_scope(rt.engine) as db:
        ds = _dataset(db, dataset)
        # Replaced in one transaction: a concurrent import sees the old or the new labels.
        keys = list(latest)
        for start in range(0, len(keys), 1000):
            db.execute(GoldLabel.__table__.delete().where(
                GoldLabel.dataset_id == ds.id, GoldLabel.key.in_(keys[start:start + 1000])))
        rows = [{"dataset_id": ds.id, "key": g.key, "label": g.label,
                 "annotator": g.annotator, "annotated_at": g.created_at, "origin": origin,
                 "imported_at": utcnow()} for g in latest.values()]
        if rows:
            db.execute(GoldLabel.__table__.insert(), rows)
    return len(rows)


def lfs_of(rt: Runtime, dataset: str, lfs: str | None) -> str:
    """The LF module: the one given, else the latest one a job of the dataset used."""
    if lfs:
        return lfs
    with session_scope(rt.engine) as db:
        ds = _dataset(db, dataset)
        for params in db.scalars(select(Job.params).where(Job.dataset_id == ds.id)
                                 .order_by(Job.id.desc())):
            if (params or {}).get("lfs"):
                return params["lfs"]
    raise NoLabellingFunctions(f"no job of {dataset!r} used labelling functions: "
                               "name a module with --lfs")


@dataclass(slots=True)
class Fit:
    """A fitted version: the samples, label matrix, gold, models and their answers."""

    dataset: str
    output_url: str
    version: Version
    spec: LabelSpec
    samples: VersionSamples
    matrix: np.ndarray
    gold: np.ndarray
    model: FittedLabelModel
    assignment: Assignment

    def report(self) -> LfReport:
        return lf_report(self.matrix, self.model.lf_names, self.spec.labels, self.gold,
                         self.model.weights, self.assignment.label, self.assignment.source,
                         self.model.describe())


def fit_version(rt: Runtime, dataset: str, *, lfs: str | None = None,
                version: int | None = None, class_balance: list[float] | None = None,
                gold: dict[str, str] | None = None) -> Fit:
    """Apply the LFs to every sample of the version and fit its one label model (with the
    dataset's gold labels unless ``gold`` is given), then the end model."""
    with session_scope(rt.engine) as db:
        output_url = _dataset(db, dataset).output_url
    module = lfs_of(rt, dataset, lfs)
    spec = rt.label_spec(module)
    store = rt.store(output_url)
    ver = read_version(store, version)
    samples = read_version_samples(store, ver)
    prepare_embedding_lfs(rt, spec)
    matrix = apply_lfs(spec, samples.points)
    gold = gold_labels(rt, dataset) if gold is None else gold
    _check_gold(gold, spec.labels)
    y = gold_vector(samples.keys, gold, spec.labels)
    settings = rt.settings.label
    model = fit_label_model(spec, matrix, y, epochs=settings.epochs, seed=settings.seed,
                            class_balance=class_balance, gold_sha=gold_digest(
                                {k: v for k, v in gold.items() if k in set(samples.keys)}))
    assignment = assign(model, matrix, y, samples.vectors, settings.seed, samples.groups)
    return Fit(dataset, output_url, ver, spec, samples, matrix, y, model, assignment)


def _check_gold(gold: dict[str, str], labels: list[str]) -> None:
    unknown = sorted({v for v in gold.values()} - set(labels))
    if unknown:
        raise ValueError(f"gold labels {unknown} are not classes of the LF module "
                         f"({', '.join(labels)})")


def prepare_embedding_lfs(rt: Runtime, spec: LabelSpec) -> int:
    """Give zero-shot LFs the encoder of the vectors they will compare prompts with: the
    sentence model for texts, CLIP's text tower for images; returns how many there are."""
    from autods.core.zeroshot import bind_zero_shot

    return bind_zero_shot(spec.lfs, lambda modality: rt.text_embedder if modality == Modality.TEXT
                   else rt.embedder)


def review_candidates(fit: Fit, limit: int, by: str = "entropy") -> list[int]:
    """Row numbers of the samples a person should label first (none already gold)."""
    order = review_order(fit.assignment.probs, fit.matrix, fit.gold != ABSTAIN, by)
    return order[:limit].tolist()


def plan_relabel(rt: Runtime, dataset: str, *, lfs: str | None = None,
                 class_balance: list[float] | None = None) -> tuple[int, Fit]:
    """Fit the latest version and record the job that writes its labels into new shards;
    returns the job id. The labels travel as one Parquet object per shard next to the
    shards, so each rewrite reads only its own."""
    fit = fit_version(rt, dataset, lfs=lfs, class_balance=class_balance)
    a = fit.assignment
    table = pa.table({
        "key": fit.samples.keys,
        "shard": fit.samples.shards,
        "label_id": pa.array(a.label.tolist(), pa.int64()),
        "label": [fit.spec.labels[i] if i != ABSTAIN else None for i in a.label.tolist()],
        "label_prob": pa.array([p if s else None for p, s in zip(a.prob.tolist(), a.source,
                                                                  strict=True)], pa.float64()),
        "label_source": [str(s) if s else None for s in a.source],
    })
    prefix = f"labels/{fit.model.version}"
    store = rt.store(fit.output_url)
    for name in fit.version.names:
        part = table.filter(pc.equal(table["shard"], name)).drop_columns(["shard"])
        buf = io.BytesIO()
        pq.write_table(part, buf)
        store.put(f"{prefix}/{name}.parquet", buf.getvalue())
    key = prefix
    job_id = _create_map_job(rt, dataset, fit.version, "relabel",
                             {"assignments": key, "model": fit.model.version},
                             list(fit.version.names))
    report = fit.report().to_dict()
    with session_scope(rt.engine) as db:
        ds = _dataset(db, dataset)
        if db.scalar(select(LabelModelRow.id).where(LabelModelRow.job_id == job_id)) is None:
            db.add(LabelModelRow(dataset_id=ds.id, version=fit.model.version,
                                 source_version=fit.version.number, job_id=job_id,
                                 lfs=fit.spec.source, info=report))
    log.info("relabel of %s: model %s, job %d", dataset, fit.model.version, job_id)
    return job_id, fit


def latest_report(rt: Runtime, dataset: str) -> dict | None:
    """The LF report stored with the dataset's newest label model, if any."""
    with session_scope(rt.engine) as db:
        ds = _dataset(db, dataset)
        return db.scalar(select(LabelModelRow.info).where(LabelModelRow.dataset_id == ds.id)
                         .order_by(LabelModelRow.id.desc()).limit(1))
