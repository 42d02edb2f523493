"""SQLAlchemy 2 models: the metadata that makes every task idempotent and every job resumable.

``assets`` holds each distinct content once per dataset (unique sha256), ``items`` holds each
job input with its own status and reason; an exact duplicate is an item pointing at an
asset that another item already published.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from autods.core.records import BatchState, ItemStatus, JobState


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    output_url: Mapped[str] = mapped_column(Text)
    near_k: Mapped[int] = mapped_column(Integer, default=4)
    # The pHash distance the band index answers for: the wider candidate radius that a
    # second check confirms; near_k for datasets made before it.
    band_k: Mapped[int | None] = mapped_column(Integer)
    # How many hashes the band index's layout is planned for (``bandindex.plan_size``); None:
    # exact bands, for datasets indexed before layouts were planned. ``banded``: how many
    # published images the index holds (counted when the layout is first planned).
    band_size: Mapped[int | None] = mapped_column(Integer)
    banded: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_shard_no: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def index_k(self) -> int:
        """The pHash distance its band index answers for (``band_k``, else ``near_k``)."""
        return self.band_k if self.band_k is not None else self.near_k


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    status: Mapped[str] = mapped_column(String(20), default=JobState.PENDING)
    sources: Mapped[list[Any]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    # "build" (sources in, samples out) or "map" (a version's shards in, new shards out).
    kind: Mapped[str] = mapped_column(String(20), default="build", server_default="build")
    # The dataset version this job published, once it has.
    version: Mapped[int | None] = mapped_column(Integer)
    n_items: Mapped[int] = mapped_column(Integer, default=0)
    n_chunks: Mapped[int] = mapped_column(Integer, default=0)
    n_batches: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Chunk(Base):
    """One task's worth of items; ``chunk_stages`` says which stages it has done."""

    __tablename__ = "chunks"
    __table_args__ = (UniqueConstraint("job_id", "chunk_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    chunk_no: Mapped[int] = mapped_column(Integer)
    batch_no: Mapped[int] = mapped_column(Integer)
    first_ordinal: Mapped[int] = mapped_column(Integer)
    n_items: Mapped[int] = mapped_column(Integer)


class ChunkStage(Base):
    """A chunk stage done: one row per (chunk, stage), so a new stage needs no migration.
    ``started_at`` splits the stage's time into queue wait and work (the report's plots)."""

    __tablename__ = "chunk_stages"

    chunk_id: Mapped[int] = mapped_column(ForeignKey("chunks.id"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(40), primary_key=True)
    done_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Batch(Base):
    """One chord: resolved (dedup + labels decided) strictly in order, then committed."""

    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("job_id", "batch_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    batch_no: Mapped[int] = mapped_column(Integer)
    n_chunks: Mapped[int] = mapped_column(Integer)
    # Its chunks are done and it waits for its predecessor to resolve, which hands over.
    ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    committed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the batch's chord was last sent; the stall watchdog re-sends a batch whose
    # chunks have not moved for a while after it.
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def state(self) -> BatchState:
        if self.committed_at is not None:
            return BatchState.COMMITTED
        if self.resolved_at is not None:
            return BatchState.RESOLVED
        return BatchState.READY if self.ready_at is not None else BatchState.RUNNING


class Asset(Base):
    """Distinct content within a dataset, stored once: ``nbytes`` at ``pack_offset`` of the
    pack ``storage_key`` (the chunk that met it first wrote it), or the whole object
    ``storage_key`` when ``pack_offset`` is null."""

    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("dataset_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str] = mapped_column(String(10))
    mime: Mapped[str] = mapped_column(String(50))
    ext: Mapped[str] = mapped_column(String(10))
    nbytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(Text)
    pack_offset: Mapped[int | None] = mapped_column(BigInteger)
    kept_item_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Item(Base):
    """One job input: where it came from, what happened to it, and why."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("job_id", "ordinal"),
        Index("ix_items_job_chunk", "job_id", "chunk_no"),
        Index("ix_items_asset", "asset_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    ordinal: Mapped[int] = mapped_column(Integer)
    chunk_no: Mapped[int] = mapped_column(Integer)
    modality: Mapped[str] = mapped_column(String(10))
    uri: Mapped[str] = mapped_column(Text)
    caption: Mapped[str | None] = mapped_column(Text)
    caption_uri: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    license: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id"))
    status: Mapped[str] = mapped_column(String(20), default=ItemStatus.PENDING)
    reason: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text)
    duplicate_of: Mapped[int | None] = mapped_column(BigInteger)
    dedup_rule: Mapped[str | None] = mapped_column(String(60))
    # The rule's measured similarity (pHash distance, Jaccard, cosine) to what it duplicates.
    dedup_score: Mapped[float | None] = mapped_column(Float)
    # train / val / test, decided once when the item is published and never again.
    split: Mapped[str | None] = mapped_column(String(10))
    shard_name: Mapped[str | None] = mapped_column(String(100))
    ingested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Feature(Base):
    """Per-asset features; ``error`` records an asset whose pixels could not be decoded."""

    __tablename__ = "features"

    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    phash: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(10))
    mode: Mapped[str | None] = mapped_column(String(10))
    # A second perceptual hash of the same thumbnail, confirming wide-radius pHash matches.
    check_hash: Mapped[int | None] = mapped_column(BigInteger)
    # The region print (autods.core.nearimage.thumbnail) that confirms near pairs.
    thumb: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Texts: sha256 of the normalised text, MinHash signature, detected language.
    text_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    minhash: Mapped[bytes | None] = mapped_column(LargeBinary)
    language: Mapped[str | None] = mapped_column(String(8))
    language_score: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(String(40))
    error_detail: Mapped[str | None] = mapped_column(Text)
    embedding_key: Mapped[str | None] = mapped_column(Text)
    embedding_row: Mapped[int | None] = mapped_column(Integer)
    embedding_model: Mapped[str | None] = mapped_column(String(200))


class PhashBand(Base):
    """The near-duplicate band index of published images (``pipeline.nearindex``): a hash
    within distance k of another shares a band value within that band's radius. Only the
    batch step writes it, for assets it has just published: no foreign keys (checking them
    cost as much as the insert).
    Bands ``0..`` are the pHash's; bands from ``CHECK_BAND_BASE`` on are the check hash's
    (``autods.core.nearimage.band_layouts``)."""

    __tablename__ = "phash_bands"

    dataset_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    band_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    asset_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class MinhashBand(Base):
    """The text near-duplicate LSH index: texts likely above the Jaccard threshold share
    one (band, value)."""

    __tablename__ = "minhash_bands"

    dataset_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    band_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    asset_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class LfVote(Base):
    """A row of the label matrix: one vote per labelling function, in the spec's order."""

    __tablename__ = "lf_votes"

    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True)
    votes: Mapped[list[Any]] = mapped_column(JSON)
    spec_version: Mapped[str] = mapped_column(String(40))


class Label(Base):
    __tablename__ = "labels"

    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True)
    label: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(100))
    probability: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(40))
    gold: Mapped[bool] = mapped_column(Boolean, default=False)


class Shard(Base):
    """A shard planned by a batch; it joins the dataset index once ``complete``."""

    __tablename__ = "shards"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    batch_no: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    modality: Mapped[str] = mapped_column(String(10))
    ext: Mapped[str] = mapped_column(String(10))
    count: Mapped[int] = mapped_column(Integer, default=0)
    nbytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Tombstone(Base):
    """A sample forgotten on request: its key and content hash, never its content. The
    asset row stays (without its object), so the same content is not published again."""

    __tablename__ = "tombstones"
    __table_args__ = (UniqueConstraint("dataset_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    key: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str | None] = mapped_column(String(64))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class GoldLabel(Base):
    """A label a person gave a sample (by its key), with who and when; the latest import
    of a key wins. Gold overrides every model and calibrates the label model."""

    __tablename__ = "gold_labels"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(100))
    annotator: Mapped[str] = mapped_column(String(200))
    annotated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    origin: Mapped[str] = mapped_column(String(300))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LabelModelRow(Base):
    """A label model fitted on one dataset version (``source_version``): its version tag,
    the LF module, and in ``info`` its weights, class balance and LF report."""

    __tablename__ = "label_models"
    __table_args__ = (Index("ix_label_models_dataset", "dataset_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    version: Mapped[str] = mapped_column(String(40))
    source_version: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    lfs: Mapped[str] = mapped_column(String(200))
    info: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class S3Event(Base):
    """An object-created notification already turned into a job item (replays are no-ops)."""

    __tablename__ = "s3_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(1100), unique=True)
    bucket: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(String(100))
    claim: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
