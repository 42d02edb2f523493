"""Gather a dataset's report from the rows every stage recorded and the stored objects.

The scope is every job of the dataset, the jobs that built it up to one version, or one
job. Galleries read the staged originals (the same objects the shards were written from)
and shrink them to thumbnails; the embedding map projects a deterministic sample of the
stored vectors on their two principal axes. Counts come from SQL aggregates, so a report
of a million inputs reads a few thousand rows, not a million.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import case, func, select
from sqlalchemy.orm import aliased

from autods.core import charts
from autods.core.dedup import rule_family
from autods.core.lfreport import LfReport, summary_rows, table_rows
from autods.core.packs import StoredRef, read_one
from autods.core.records import ItemStatus
from autods.core.report import (
    Cluster,
    FunnelRow,
    Group,
    ReportPage,
    Tile,
    image_thumbnail,
    render,
    text_snippet,
)
from autods.db.models import Asset, Batch, Chunk, ChunkStage, Feature, Item, Job, Label
from autods.db.session import session_scope
from autods.pipeline.explain import KEY_DIGITS
from autods.pipeline.mapjobs import _dataset
from autods.pipeline.options import JobOptions
from autods.pipeline.runtime import Runtime
from autods.pipeline.stagetable import stages_for

log = logging.getLogger(__name__)

#: How much each gallery shows: enough to judge a rule or a reason, little enough that a
#: report of a million inputs stays a few MB.
CLUSTERS = 12
CLUSTER_MEMBERS = 6
REJECT_EXAMPLES = 6
LABEL_EXAMPLES = 8
SLOWEST = 10
#: Points on the embedding map, and how many of them carry a thumbnail for the hover box.
MAP_POINTS = 2000
MAP_THUMBS = 600

_DROPPED = (ItemStatus.EXACT_DUPLICATE, ItemStatus.NEAR_DUPLICATE,
            ItemStatus.SEMANTIC_DUPLICATE)


@dataclass(frozen=True, slots=True)
class Scope:
    dataset_id: int
    jobs: list[Job]
    description: str

    @property
    def job_ids(self) -> list[int]:
        return [j.id for j in self.jobs]


def _scope(db, dataset: str, version: int | None, job: int | None) -> Scope:
    ds = _dataset(db, dataset)
    jobs = list(db.scalars(select(Job).where(Job.dataset_id == ds.id, Job.kind == "build")
                           .order_by(Job.id)))
    if job is not None:
        jobs = [j for j in jobs if j.id == job]
        if not jobs:
            raise LookupError(f"no build job {job} in dataset {dataset!r}")
        return Scope(ds.id, jobs, f"job {job}")
    if version is not None:
        jobs = [j for j in jobs if j.version is not None and j.version <= version]
        if not jobs:
            raise LookupError(f"no version {version} of dataset {dataset!r}")
        return Scope(ds.id, jobs, f"version {version} ({len(jobs)} job(s))")
    return Scope(ds.id, jobs, f"all {len(jobs)} job(s)")


class _Thumbs:
    """Tiles for items, each staged object read and shrunk once."""

    def __init__(self, rt: Runtime) -> None:
        self.store = rt.store()
        self.cache: dict[StoredRef, tuple[str | None, str | None]] = {}

    def tile(self, uri: str, sha: str | None, modality: str | None, stored: StoredRef | None,
             text: str | None = None, note: str | None = None) -> Tile:
        image = snippet = None
        if stored is not None:
            if stored not in self.cache:
                self.cache[stored] = self._preview(stored, modality)
            image, snippet = self.cache[stored]
        if snippet is None and text:
            snippet = text_snippet(text)
        return Tile(uri=uri, key=sha[:KEY_DIGITS] if sha else None, image=image, text=snippet,
                    note=note)

    def _preview(self, stored: StoredRef, modality: str | None
                 ) -> tuple[str | None, str | None]:
        try:
            data = read_one(self.store, stored)
        except Exception as exc:  # noqa: BLE001 - a missing object costs a preview only
            log.warning("no preview of %s: %s", stored.key, exc)
            return None, None
        return (None, text_snippet(data)) if modality == "text" else (image_thumbnail(data),
                                                                       None)


#: The columns that say where an asset's bytes are (see ``_stored``).
_STORED = (Asset.storage_key, Asset.pack_offset, Asset.nbytes)


def _stored(row) -> StoredRef | None:
    """Where a row's asset bytes are; None for an item without stored content (or one whose
    content was forgotten)."""
    if not row.storage_key:
        return None
    return StoredRef.of(row)


def _funnel(db, scope: Scope) -> list[FunnelRow]:
    rows = db.execute(select(Item.status, Item.reason, Item.dedup_rule, func.count())
                      .where(Item.job_id.in_(scope.job_ids))
                      .group_by(Item.status, Item.reason, Item.dedup_rule)).all()
    total = sum(r[3] for r in rows)
    by_status: Counter[str] = Counter()
    reasons: Counter[tuple[str, str]] = Counter()
    rules: Counter[str] = Counter()
    for st, reason, rule, n in rows:
        by_status[st] += n
        if st in (ItemStatus.FAILED, ItemStatus.FILTERED):
            reasons[(st, reason or "unknown")] += n
        elif st in _DROPPED:
            rules[_rule(rule) or st] += n
    share = (lambda n: n / total) if total else (lambda n: 0.0)
    out = [FunnelRow("inputs", "every listed input", total, share(total))]
    out += [FunnelRow("rejected", r, n, share(n))
            for (st, r), n in sorted(reasons.items(), key=lambda kv: -kv[1])
            if st == ItemStatus.FAILED]
    out += [FunnelRow("duplicate", f"rule {r}", n, share(n))
            for r, n in sorted(rules.items(), key=lambda kv: -kv[1])]
    out += [FunnelRow("filtered", r, n, share(n))
            for (st, r), n in sorted(reasons.items(), key=lambda kv: -kv[1])
            if st == ItemStatus.FILTERED]
    unfinished = by_status[ItemStatus.PENDING] + by_status[ItemStatus.INGESTED]
    if unfinished:
        out.append(FunnelRow("in progress", "not decided yet", unfinished, share(unfinished)))
    out.append(FunnelRow("published", "samples in shards", by_status[ItemStatus.PUBLISHED],
                         share(by_status[ItemStatus.PUBLISHED])))
    return out


def _rule(recorded: str | None) -> str | None:
    """A recorded ``dedup_rule`` shown by its rule's name (the text as is if it names none)."""
    return None if recorded is None else rule_family(recorded) or recorded


def _label_name(name: str | None, label: int | None) -> str:
    if name:
        return name
    return "unlabelled" if label is None else ("abstain" if label < 0 else str(label))


def _clusters(db, scope: Scope, thumbs: _Thumbs) -> tuple[list[Cluster], int]:
    sizes = db.execute(select(Item.duplicate_of, func.count())
                       .where(Item.job_id.in_(scope.job_ids), Item.status.in_(_DROPPED),
                              Item.duplicate_of.is_not(None))
                       .group_by(Item.duplicate_of)
                       .order_by(func.count().desc(), Item.duplicate_of)).all()
    out = []
    for kept_id, size in sizes[:CLUSTERS]:
        kept = db.execute(select(Item.uri, Item.text, Asset.sha256, Asset.modality,
                                 *_STORED)
                          .outerjoin(Asset, Asset.id == Item.asset_id)
                          .where(Item.id == kept_id)).one_or_none()
        members = db.execute(select(Item.uri, Item.text, Asset.sha256, Asset.modality,
                                    *_STORED, Item.dedup_rule, Item.dedup_score)
                             .outerjoin(Asset, Asset.id == Item.asset_id)
                             .where(Item.duplicate_of == kept_id,
                                    Item.job_id.in_(scope.job_ids))
                             .order_by(Item.job_id, Item.ordinal)
                             .limit(CLUSTER_MEMBERS)).all()
        if kept is None:
            continue
        absorbed = [thumbs.tile(m.uri, m.sha256, m.modality, _stored(m), m.text,
                                note=f"{_rule(m.dedup_rule) or '?'}"
                                + (f" {m.dedup_score:.3g}" if m.dedup_score is not None
                                   else ""))
                    for m in members]
        out.append(Cluster(thumbs.tile(kept.uri, kept.sha256, kept.modality,
                                       _stored(kept), kept.text, note="kept"),
                           absorbed, size))
    return out, len(sizes)


def _rejects(db, scope: Scope, total: int, thumbs: _Thumbs) -> list[Group]:
    counts = db.execute(select(Item.status, Item.reason, func.count())
                        .where(Item.job_id.in_(scope.job_ids),
                               Item.status.in_((ItemStatus.FAILED, ItemStatus.FILTERED)))
                        .group_by(Item.status, Item.reason)
                        .order_by(func.count().desc())).all()
    out = []
    for st, reason, n in counts:
        rows = db.execute(select(Item.uri, Item.text, Item.detail, Asset.sha256,
                                 Asset.modality, *_STORED)
                          .outerjoin(Asset, Asset.id == Item.asset_id)
                          .where(Item.job_id.in_(scope.job_ids), Item.status == st,
                                 Item.reason == reason if reason is not None
                                 else Item.reason.is_(None))
                          .order_by(Item.job_id, Item.ordinal).limit(REJECT_EXAMPLES)).all()
        examples = [thumbs.tile(r.uri, r.sha256, r.modality, _stored(r), r.text,
                                note=r.detail) for r in rows]
        out.append(Group(f"{st}: {reason or 'unknown'}", n, n / total if total else 0.0,
                         examples))
    return out


def _labels(db, scope: Scope, thumbs: _Thumbs) -> tuple[list[Group], str]:
    names = db.execute(select(Label.name, Label.label, func.count(), func.avg(Label.probability))
                       .join(Item, Item.id == Label.item_id)
                       .where(Item.job_id.in_(scope.job_ids),
                              Item.status == ItemStatus.PUBLISHED)
                       .group_by(Label.name, Label.label).order_by(Label.label)).all()
    total = sum(r[2] for r in names)
    groups = []
    for name, label, n, mean in names:
        rows = db.execute(select(Item.uri, Item.text, Asset.sha256, Asset.modality,
                                 *_STORED, Label.probability, Label.gold)
                          .join(Label, Label.item_id == Item.id)
                          .outerjoin(Asset, Asset.id == Item.asset_id)
                          .where(Item.job_id.in_(scope.job_ids),
                                 Item.status == ItemStatus.PUBLISHED, Label.label == label)
                          .order_by(Label.probability.desc(), Item.id)
                          .limit(LABEL_EXAMPLES)).all()
        examples = [thumbs.tile(r.uri, r.sha256, r.modality, _stored(r), r.text,
                                note=("gold" if r.gold else f"p={r.probability:.2f}"))
                    for r in rows]
        groups.append(Group(_label_name(name, label), n, n / total if total else 0.0, examples,
                            extra=f"mean confidence {mean:.2f}"))
    decile = case(*((Label.probability < (i + 1) / 10, i) for i in range(9)), else_=9)
    binned = db.execute(select(Label.label, decile, func.count())
                        .join(Item, Item.id == Label.item_id)
                        .where(Item.job_id.in_(scope.job_ids),
                               Item.status == ItemStatus.PUBLISHED)
                        .group_by(Label.label, decile)).all()
    chart = _confidence_chart(binned, {r[1]: _label_name(r[0], r[1]) for r in names})
    return groups, chart


def _confidence_chart(binned, names: dict[int, str]) -> str:
    """Samples per confidence decile, one line per label: where the labels are unsure.
    ``binned`` is (label, decile, samples) rows."""
    bins: dict[str, list[int]] = {names[k]: [0] * 10 for k in sorted(names)}
    for label, decile, n in binned:
        if label in names:
            bins[names[label]][decile] += n
    series = {name: [((i + 0.5) / 10, c) for i, c in enumerate(counts)]
              for name, counts in bins.items()}
    return charts.line_chart(series, x_label="label confidence", y_label="samples",
                             title="Label confidence by label")


def _lf_section(rt: Runtime, dataset: str, version: int | None
                ) -> tuple[list[list[str]], list[tuple[str, str]], str | None]:
    """The stored report of the newest label model, else a fit of the LFs over the
    version; neither is an error (a dataset may have no LFs)."""
    from autods.pipeline.relabel import fit_version, latest_report

    stored = latest_report(rt, dataset) if version is None else None
    try:
        report = (LfReport.from_dict(stored) if stored
                  else fit_version(rt, dataset, version=version).report())
    except Exception as exc:  # noqa: BLE001 - the rest of the report stands without LFs
        return [], [], f"No labelling-function report: {exc}"
    return table_rows(report), summary_rows(report), None


def _timing(db, scope: Scope) -> dict[str, object]:
    rows = db.execute(select(Chunk.job_id, Chunk.chunk_no, Chunk.n_items, ChunkStage.stage,
                             ChunkStage.started_at, ChunkStage.done_at)
                      .join(ChunkStage, ChunkStage.chunk_id == Chunk.id)
                      .where(Chunk.job_id.in_(scope.job_ids))).all()
    if not rows:
        return {}
    origin = min([j.started_at or j.created_at for j in scope.jobs]
                 + [r.started_at or r.done_at for r in rows])
    order = {j.id: [s.name for s in stages_for(JobOptions.from_params(j.params))]
             for j in scope.jobs}
    by_chunk: dict[tuple[int, int], dict[str, tuple]] = defaultdict(dict)
    for r in rows:
        by_chunk[(r.job_id, r.chunk_no)][r.stage] = r
    done: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    waits: dict[str, list[tuple[float, float]]] = defaultdict(list)
    work: dict[str, list[float]] = defaultdict(list)
    slow: list[tuple[float, int, int, str, int, float | None]] = []
    for (job_id, chunk_no), stages in by_chunk.items():
        previous: datetime | None = None
        for name in order.get(job_id, []):
            r = stages.get(name)
            if r is None:
                break
            done[name].append((r.done_at, r.n_items))
            if r.started_at is not None:
                busy = (r.done_at - r.started_at).total_seconds()
                work[name].append(busy)
                wait = (r.started_at - previous).total_seconds() if previous else None
                if wait is not None:
                    waits[name].append(((r.started_at - origin).total_seconds(), wait))
                slow.append((busy, job_id, chunk_no, name, r.n_items, wait))
            previous = r.done_at
    stage_names = list(dict.fromkeys(n for names in order.values() for n in names if n in done))
    cumulative = {}
    stage_rows = [["stage", "chunks", "items", "work s (sum)", "work s (mean)",
                   "mean queue wait s", "items/s of work"]]
    for name in stage_names:
        total = 0
        pts = [(0.0, 0)]
        for at, n in sorted(done[name]):
            total += n
            pts.append(((at - origin).total_seconds(), total))
        cumulative[name] = pts
        busy = work.get(name, [])
        waited = [w for _, w in waits.get(name, [])]
        stage_rows.append([name, str(len(done[name])), f"{total:,}",
                           f"{sum(busy):.1f}" if busy else "-",
                           f"{sum(busy) / len(busy):.2f}" if busy else "-",
                           f"{sum(waited) / len(waited):.2f}" if waited else "-",
                           f"{total / sum(busy):,.0f}" if busy and sum(busy) > 0 else "-"])
    slowest = [["job", "chunk", "stage", "items", "work s", "queue wait s"]]
    for busy, job_id, chunk_no, name, n, wait in sorted(slow, reverse=True)[:SLOWEST]:
        slowest.append([str(job_id), str(chunk_no), name, str(n), f"{busy:.2f}",
                        "-" if wait is None else f"{wait:.2f}"])
    return {
        "throughput_chart": charts.line_chart(
            cumulative, x_label="seconds since the first job started", y_label="items done",
            title="Items done per stage over time", step=True),
        "wait_chart": charts.line_chart(
            {n: sorted(w) for n, w in waits.items() if w}, x_label="seconds since start",
            y_label="queue wait (s)", title="Queue wait of each chunk before each stage"),
        "stage_rows": stage_rows,
        "slowest": slowest,
        "batches": _batches(db, scope),
    }


def _batches(db, scope: Scope) -> list[list[str]]:
    out = [["job", "batch", "chunks", "chunks done → resolved s", "resolved → committed s"]]
    for b in db.scalars(select(Batch).where(Batch.job_id.in_(scope.job_ids))
                        .order_by(Batch.job_id, Batch.batch_no)):
        def span(a, z):
            return "-" if a is None or z is None else f"{(z - a).total_seconds():.2f}"
        out.append([str(b.job_id), str(b.batch_no), str(b.n_chunks),
                    span(b.ready_at, b.resolved_at), span(b.resolved_at, b.committed_at)])
    return out


def _embedding_map(rt: Runtime, db, scope: Scope, thumbs: _Thumbs) -> tuple[str, str | None]:
    """The published samples of the most common embedding model on their first two
    principal components, coloured by label."""
    from autods.pipeline.embed import load_vectors

    label = aliased(Label)
    embedded = (Item.job_id.in_(scope.job_ids), Item.status == ItemStatus.PUBLISHED,
                Feature.embedding_key.is_not(None))
    # Counted in SQL, the first model met winning a tie: a large dataset's rows are not
    # all read for a map of MAP_POINTS.
    counts = db.execute(select(Feature.embedding_model, func.count())
                        .select_from(Item).join(Asset, Asset.id == Item.asset_id)
                        .join(Feature, Feature.asset_id == Asset.id).where(*embedded)
                        .group_by(Feature.embedding_model)
                        .order_by(func.count().desc(), func.min(Item.id))).all()
    if not counts:
        return "", None
    model, n_model = counts[0]
    numbered = (select(Item.uri, Item.text, Asset.sha256, Asset.modality, *_STORED,
                       Feature.embedding_key, Feature.embedding_row, label.name, label.label,
                       func.row_number().over(order_by=(Item.job_id, Item.ordinal))
                       .label("n"))
                .join(Asset, Asset.id == Item.asset_id)
                .join(Feature, Feature.asset_id == Asset.id)
                .outerjoin(label, label.item_id == Item.id)
                .where(*embedded, Feature.embedding_model == model).subquery())
    query = select(numbered).order_by(numbered.c.n)
    if n_model > MAP_POINTS:  # evenly spaced, so the same dataset gives the same map
        query = query.where(numbered.c.n.in_(
            sorted({i * n_model // MAP_POINTS + 1 for i in range(MAP_POINTS)})))
    rows = db.execute(query).all()
    if len(rows) < 3:
        return "", f"{len(rows)} embedded sample(s): too few for a map."
    vectors = load_vectors(thumbs.store, [(r.embedding_key, r.embedding_row) for r in rows])
    xy = _project(vectors.astype(np.float32))
    groups = sorted({_label_name(r.name, r.label) for r in rows})
    index = {g: i for i, g in enumerate(groups)}
    step = max(1, len(rows) // MAP_THUMBS)
    points = []
    for i, (r, (x, y)) in enumerate(zip(rows, xy, strict=True)):
        group = _label_name(r.name, r.label)
        tile = (thumbs.tile(r.uri, r.sha256, r.modality, _stored(r), r.text)
                if i % step == 0 else None)
        caption = f"{r.sha256[:12]} · {group} · {r.uri[-60:]}"
        if tile is not None and tile.text and not tile.image:
            caption += f" · {tile.text}"
        points.append(charts.MapPoint(float(x), float(y), index[group], caption,
                                      tile.image if tile else None))
    note = (f"{len(points):,} of {n_model:,} samples embedded by {model}"
            + (f"; {len(counts) - 1} other model(s) not shown" if len(counts) > 1 else "")
            + "; hover a point for its sample.")
    return charts.scatter(points, groups, title=f"Embeddings ({model}), first two principal "
                                                "components"), note


def _project(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components (a thin SVD of the centred matrix)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def build_page(rt: Runtime, dataset: str, *, version: int | None = None,
               job: int | None = None) -> ReportPage:
    """Everything the report shows for the scope (all jobs, up to a version, or one job)."""
    thumbs = _Thumbs(rt)
    with session_scope(rt.engine) as db:
        scope = _scope(db, dataset, version, job)
        funnel = _funnel(db, scope)
        total = funnel[0].count
        clusters, n_clusters = _clusters(db, scope, thumbs)
        rejects = _rejects(db, scope, total, thumbs)
        labels, label_chart = _labels(db, scope, thumbs)
        timing = _timing(db, scope)
        map_chart, map_note = _embedding_map(rt, db, scope, thumbs)
        facts = _facts(scope)
    lf_table, lf_summary, lf_note = _lf_section(rt, dataset, version)
    return ReportPage(dataset=dataset, scope=scope.description,
                      generated_at=datetime.now(UTC), funnel=funnel, clusters=clusters,
                      n_clusters=n_clusters, rejects=rejects, labels=labels,
                      label_chart=label_chart, lf_table=lf_table, lf_summary=lf_summary,
                      lf_note=lf_note, map_chart=map_chart, map_note=map_note, facts=facts,
                      **timing)


def _facts(scope: Scope) -> list[tuple[str, str]]:
    out = []
    for j in scope.jobs:
        took = ((j.finished_at - j.started_at).total_seconds()
                if j.finished_at and j.started_at else None)
        out.append((f"job {j.id}", f"{j.status}, {j.n_items:,} inputs"
                    + (f", version {j.version}" if j.version else "")
                    + (f", {took:.1f} s" if took is not None else "")))
    return out


def write_report(rt: Runtime, dataset: str, out: Path, *, version: int | None = None,
                 job: int | None = None) -> Path:
    """Render the report into ``out`` (one file, nothing beside it)."""
    out.write_text(render(build_page(rt, dataset, version=version, job=job)), "utf-8")
    return out
