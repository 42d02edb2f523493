"""Resolve a batch: settle duplicates and labels in input order, and plan its shards.

What survives must depend only on input order, so batches resolve strictly one after
another. A batch whose chunks are done marks itself ready; if its predecessor has not
resolved yet it stops there, and the predecessor hands over when it resolves. Both sides
write first and read second in one transaction, so whichever commits last sees the
other: exactly one of them goes on, and nothing polls.

A batch step decides before it writes: it reads its candidates and their published
neighbours and settles them in a read-only transaction, then claims the batch and writes
the outcome in a short one. SQLite has one writer at a time, and a step that held the
write lock while it read and decided (seconds, once the dataset holds tens of thousands
of images) stopped every chunk of the next batch at its first write. What was decided
stands only if nothing was published in the dataset in between: the dataset's shard
counter, which every publishing step advances, is read with the decision and checked
under the dataset's lock; if it moved, the step decides again under the lock.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import exists, func, select, update

from autods import metrics
from autods.core.dedup import (
    Candidate,
    ImageNearRule,
    SemanticRule,
    TextExactRule,
    TextNearRule,
    Verdict,
    resolve,
    rule_family,
)
from autods.core.label import ABSTAIN, fit_predict
from autods.core.records import ItemStatus, Modality
from autods.core.splits import Stratified, by_key, parse_fractions
from autods.core.textdedup import TextNearIndex, from_bytes
from autods.db.inlist import one_of
from autods.db.models import (
    Asset,
    Batch,
    Dataset,
    Feature,
    Item,
    Job,
    Label,
    LfVote,
    MinhashBand,
    Shard,
    utcnow,
)
from autods.db.session import session_scope
from autods.db.stats import refresh
from autods.db.upsert import update_rows
from autods.pipeline import nearindex
from autods.pipeline.chunks import batch_chunks
from autods.pipeline.embed import load_vectors
from autods.pipeline.options import JobOptions
from autods.pipeline.runtime import Runtime
from autods.pipeline.semantic import StoredSemanticIndex


def _batch(job_id: int, batch_no: int):
    return (Batch.job_id == job_id) & (Batch.batch_no == batch_no)


def take_turn(rt: Runtime, job_id: int, batch_no: int) -> bool:
    """Mark the batch ready; True when it may resolve now (its predecessor has resolved).

    False means the predecessor is still open and will hand over when it resolves.
    """
    with session_scope(rt.engine) as db:
        # Always a write, even when redelivered: the write is what orders the two sides.
        db.execute(update(Batch).where(_batch(job_id, batch_no))
                   .values(ready_at=func.coalesce(Batch.ready_at, utcnow())))
        if batch_no == 0:
            return True
        previous = db.scalar(select(Batch.resolved_at).where(_batch(job_id, batch_no - 1)))
        return previous is not None


def resolve_batch(rt: Runtime, job_id: int, batch_no: int) -> bool:
    """Dedup verdicts, labels and shard plan for one batch: decided from a read-only
    transaction, written in one.

    Returns True when the next batch is ready and unresolved: the caller hands over to it.
    A batch resolved before (a redelivered callback) is not resolved again, but still
    hands over, in case the first delivery died before it could.
    """
    with session_scope(rt.engine) as db:
        resolved = db.scalar(select(Batch.resolved_at).where(_batch(job_id, batch_no)))
        decision = None if resolved is not None else _decide(rt, db, job_id, batch_no)
    counts = None
    with session_scope(rt.engine) as db:
        # Claim it: of two deliveries at once, the second waits on the row and finds it
        # resolved. The claim rolls back with everything else if resolving fails.
        claimed = db.execute(update(Batch).where(_batch(job_id, batch_no),
                                                 Batch.resolved_at.is_(None))
                             .values(resolved_at=utcnow())).rowcount
        if claimed:
            counts = _write(rt, db, job_id, batch_no, decision)
        after = db.execute(select(Batch.ready_at, Batch.resolved_at)
                           .where(_batch(job_id, batch_no + 1)).with_for_update()).first()
    if counts is not None:  # counted once the resolution is committed
        metrics.record_batch(counts)
    return after is not None and after.ready_at is not None and after.resolved_at is None


def lock_dataset(db, dataset_id: int) -> Dataset:
    """The dataset's row, locked until the transaction ends: concurrent jobs on one dataset
    resolve in turns. ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: the foreign-key checks of
    the rows ingest inserts meanwhile (assets) take a key-share lock on the same row, which
    ``FOR UPDATE`` would make wait for the whole batch step."""
    return db.scalar(select(Dataset).where(Dataset.id == dataset_id)
                     .with_for_update(key_share=True))


@dataclass
class _Decision:
    """What a batch step settled from what it read, and the dataset's shard counter then
    (``next_shard_no``: every step that publishes a sample advances it)."""

    shard_counter: int
    options: JobOptions
    rows: list[Any]
    verdicts: list[Verdict]
    kept: list[int]
    semantic: list[StoredSemanticIndex]
    labels: list[dict[str, Any]]


def _decide(rt: Runtime, db, job_id: int, batch_no: int) -> _Decision:
    """Read the batch's candidates and what they may duplicate, settle them in input
    order, and fit its labels; nothing is written."""
    job = db.get(Job, job_id)
    options = JobOptions.from_params(job.params)
    dataset = db.get(Dataset, job.dataset_id)
    shard_counter = dataset.next_shard_no
    rows = db.execute(
        select(Item.id, Item.ordinal, Item.asset_id, Asset.modality, Asset.ext, Asset.sha256,
               Asset.kept_item_id, Feature.phash, Feature.check_hash, Feature.thumb,
               Feature.text_sha256,
               Feature.minhash, Feature.embedding_key, Feature.embedding_row)
        .join(Asset, Asset.id == Item.asset_id)
        .outerjoin(Feature, Feature.asset_id == Item.asset_id)
        .where(Item.job_id == job_id, Item.chunk_no.in_(batch_chunks(job_id, batch_no)),
               Item.status == ItemStatus.INGESTED)
        .order_by(Item.ordinal)
    ).all()
    candidates = [Candidate(r.id, r.ordinal, r.asset_id, r.phash, r.check_hash, r.thumb,
                            r.text_sha256,
                            from_bytes(r.minhash) if r.minhash and options.text_near else None)
                  for r in rows]
    published = {r.asset_id: r.kept_item_id for r in rows if r.kept_item_id is not None}
    rules, semantic = _rules(rt, db, dataset, options, candidates, rows)
    verdicts = resolve(candidates, published, rules)
    kept = [v.item_id for v in verdicts if v.status == ItemStatus.PUBLISHED]
    labels = _fit_labels(rt, db, options.lfs, kept) if options.lfs else []
    return _Decision(shard_counter, options, rows, verdicts, kept, semantic, labels)


def _write(rt: Runtime, db, job_id: int, batch_no: int,
           decision: _Decision | None) -> metrics.BatchCounts | None:
    """The claimed batch's outcome, under the dataset's lock; decided again here when
    something was published since ``decision`` was read (or it was not read)."""
    job = db.get(Job, job_id)
    dataset = lock_dataset(db, job.dataset_id)
    if decision is None or decision.shard_counter != dataset.next_shard_no:
        decision = _decide(rt, db, job_id, batch_no)
    options, rows, kept = decision.options, decision.rows, decision.kept
    by_item = {r.id: r for r in rows}
    for index in decision.semantic:
        index.save(rt.store())
    names = _store_labels(db, decision.labels) if options.lfs else {}
    splits = _split(db, dataset, options, kept, {r.id: r.sha256 for r in rows},
                    names) if options.split else {}
    shards = _plan_shards(db, job_id, options.shard_size, dataset, batch_no, by_item, kept)
    _record_verdicts(db, decision.verdicts, {r.id: r.asset_id for r in rows}, shards, splits)
    if nearindex.add_published(db, dataset, [
            (r.asset_id, r.phash, r.check_hash) for r in map(by_item.get, kept)
            if r.phash is not None]):
        refresh(db, dataset.banded)
    return (_counts(db, job_id, batch_chunks(job_id, batch_no), decision.verdicts)
            if metrics.enabled() else None)


def _counts(db, job_id: int, chunks, verdicts) -> metrics.BatchCounts:
    """For the metrics: the batch's items by final status and reason (the stages before
    settled rejects and filters, the verdicts the rest), its dropped duplicates by rule
    family, and the probability of each label it gave."""
    in_batch = (Item.job_id == job_id) & Item.chunk_no.in_(chunks)
    items = {(status, reason or ""): n for status, reason, n in db.execute(
        select(Item.status, Item.reason, func.count()).where(in_batch)
        .group_by(Item.status, Item.reason)).all()}
    rules = Counter(rule_family(v.rule) or "other" for v in verdicts if v.rule)
    confidences = db.scalars(select(Label.probability).join(Item, Item.id == Label.item_id)
                             .where(in_batch, Label.label >= 0)).all()
    return metrics.BatchCounts(items, dict(rules), confidences)


def _rules(rt: Runtime, db, dataset: Dataset, options: JobOptions,
           candidates: list[Candidate], rows) -> tuple[list, list[StoredSemanticIndex]]:
    """The job's duplicate rules, each holding the published samples it may match.

    A dataset with nothing published yet (a first build, or its first batch) has no
    neighbour to look up: each band lookup would only find the batch's own new assets,
    a probe per candidate and band, most of a first batch's time.
    """
    rules: list = []
    texts = [c for c, r in zip(candidates, rows, strict=True) if r.modality == Modality.TEXT]
    anything = db.scalar(select(exists().where(Asset.dataset_id == dataset.id,
                                               Asset.kept_item_id.is_not(None))))
    if options.near_enabled:
        near = ImageNearRule(dataset.near_k)
        if anything:
            for item_id, phash, check, thumb in nearindex.neighbours(db, dataset, candidates):
                near.add_published(item_id, phash, check, thumb)
        rules.append(near)
    if texts:
        rules.append(TextExactRule(_published_texts(db, dataset, texts) if anything else {}))
    if texts and options.text_near:
        index = TextNearIndex(rt.minhasher(options.minhash_threshold))
        if anything:
            for item_id, signature in _published_minhashes(db, dataset, texts, index.hasher):
                index.add(item_id, signature)
        rules.append(TextNearRule(index))
    semantic: list[StoredSemanticIndex] = []
    if options.semantic:
        wanted = {Modality.TEXT: options.semantic_texts, Modality.IMAGE: options.semantic_images}
        for modality, on in wanted.items():
            mine = [(c, r) for c, r in zip(candidates, rows, strict=True)
                    if r.modality == modality and r.embedding_key is not None]
            if not on or not mine:
                continue
            vectors = load_vectors(rt.store(), [(r.embedding_key, r.embedding_row)
                                                for _, r in mine])
            for (cand, _), vector in zip(mine, vectors, strict=True):
                cand.vector = vector
            stored = StoredSemanticIndex.load(rt, db, dataset.id, modality, vectors.shape[1])
            semantic.append(stored)
            rules.append(SemanticRule(stored.index, options.semantic_threshold,
                                      stored.published))
    return rules, semantic


def _published_texts(db, dataset: Dataset, texts: list[Candidate]) -> dict[str, int]:
    """Normalised-text hash -> the published item, for the batch's texts' hashes."""
    wanted = sorted({c.text_sha256 for c in texts if c.text_sha256})
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 5000):
        found.update(db.execute(
            select(Feature.text_sha256, Asset.kept_item_id)
            .join(Asset, Asset.id == Feature.asset_id)
            .where(Asset.dataset_id == dataset.id, Asset.kept_item_id.is_not(None),
                   one_of(db, Feature.text_sha256, wanted[start:start + 5000]))
            .order_by(Asset.kept_item_id.desc())).all())
    return found


def _published_minhashes(db, dataset: Dataset, texts: list[Candidate], hasher):
    """(item, signature) of published texts sharing an LSH band with a candidate."""
    per_band: dict[int, set[int]] = defaultdict(set)
    for c in texts:
        if c.minhash is not None:
            for n, v in enumerate(hasher.band_values(c.minhash)):
                per_band[n].add(v)
    seen: set[int] = set()
    for band_no, values in sorted(per_band.items()):
        ordered = sorted(values)
        for start in range(0, len(ordered), 5000):
            rows = db.execute(
                select(Asset.kept_item_id, Feature.minhash)
                .join(MinhashBand, MinhashBand.asset_id == Asset.id)
                .join(Feature, Feature.asset_id == Asset.id)
                .where(MinhashBand.dataset_id == dataset.id, MinhashBand.band_no == band_no,
                       one_of(db, MinhashBand.value, ordered[start:start + 5000]),
                       Asset.kept_item_id.is_not(None), Feature.minhash.is_not(None))
            ).all()
            for item_id, signature in rows:
                if item_id not in seen:
                    seen.add(item_id)
                    yield item_id, from_bytes(signature)


def _record_verdicts(db, verdicts, asset_of: dict[int, int], shards: dict[int, str],
                     splits: dict[int, str]) -> None:
    """Each item's verdict, shard and split in one update (every row names the same
    columns, so it is one statement), then each published asset's item."""
    rows = [
        {"id": v.item_id, "status": v.status, "duplicate_of": v.duplicate_of,
         "dedup_rule": v.rule, "dedup_score": v.score,
         "reason": None if v.status == ItemStatus.PUBLISHED else v.status,
         "shard_name": shards.get(v.item_id), "split": splits.get(v.item_id)}
        for v in verdicts
    ]
    if rows:
        update_rows(db, Item, rows)
    kept = [{"id": asset_of[v.item_id], "kept_item_id": v.item_id}
            for v in verdicts if v.status == ItemStatus.PUBLISHED]
    if kept:
        update_rows(db, Asset, kept)


def _fit_labels(rt: Runtime, db, lfs: str, kept: list[int]) -> list[dict[str, Any]]:
    """Fit the LabelModel on the batch's published items: one label row per item that
    has votes (``name`` None: every LF abstained)."""
    spec = rt.label_spec(lfs)
    votes = dict(db.execute(select(LfVote.item_id, LfVote.votes)
                            .where(one_of(db, LfVote.item_id, kept))).all()) if kept else {}
    ids = [i for i in kept if i in votes]
    matrix = np.array([votes[i] for i in ids], dtype=np.int64).reshape(len(ids), len(spec.lfs))
    labels, confidence = fit_predict(spec, matrix, rt.settings.label.epochs,
                                     rt.settings.label.seed)
    return [{"item_id": i, "label": int(lab),
             "name": spec.labels[lab] if lab != ABSTAIN else None,
             "probability": float(conf), "model_version": spec.version, "gold": False}
            for i, lab, conf in zip(ids, labels, confidence, strict=True)]


def _store_labels(db, rows: list[dict[str, Any]]) -> dict[int, str | None]:
    """The batch's label rows in place of any earlier ones; returns each item's label
    name."""
    db.execute(Label.__table__.delete().where(one_of(db, Label.item_id,
                                                     [r["item_id"] for r in rows])))
    if rows:
        db.execute(Label.__table__.insert(), rows)
    return {r["item_id"]: r["name"] for r in rows}


def _split(db, dataset: Dataset, options: JobOptions, kept: list[int],
           sha_of: dict[int, str], names: dict[int, str | None]) -> dict[int, str]:
    """Each published item's split, decided now (and stored with its verdict): it never
    changes after."""
    fractions = parse_fractions(options.split)
    if options.stratify:
        counts = db.execute(
            select(Label.name, Item.split, func.count())
            .join(Item, Item.id == Label.item_id).join(Job, Job.id == Item.job_id)
            .where(Job.dataset_id == dataset.id, Item.status == ItemStatus.PUBLISHED,
                   Item.split.is_not(None))
            .group_by(Label.name, Item.split)).all()
        dealer = Stratified(fractions, {(name, split): n for name, split, n in counts})
        splits = {i: dealer.assign(names.get(i)) for i in kept}
    else:
        splits = {i: by_key(sha_of[i][:24], fractions) for i in kept}
    return splits


def _plan_shards(db, job_id: int, shard_size: int, dataset: Dataset, batch_no: int,
                 rows: dict[int, Any], kept: list[int]) -> dict[int, str]:
    """Group published items by member layout, cut into shards, allocate shard numbers;
    returns each published item's shard.

    A shard holds one modality and one image extension, so every sample in it has the
    same member extensions (what Hugging Face ``datasets`` and ``wids`` require).
    """
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i in sorted(kept, key=lambda i: rows[i].ordinal):
        groups[(rows[i].modality, rows[i].ext)].append(i)
    assignments: dict[int, str] = {}
    for (modality, ext), ids in sorted(groups.items()):
        for start in range(0, len(ids), shard_size):
            name = f"shard-{dataset.next_shard_no:06d}"
            dataset.next_shard_no += 1
            members = ids[start:start + shard_size]
            db.add(Shard(dataset_id=dataset.id, job_id=job_id, batch_no=batch_no, name=name,
                         modality=modality, ext=ext, count=len(members)))
            assignments.update(dict.fromkeys(members, name))
    return assignments
