"""The record contract: what flows between stages.

Stages take and return these slotted dataclasses; nothing crosses a stage boundary as a
loose dict. A rejected input is data (a status and a reason), not an exception: the only
exceptions here are ``Rejected``, raised inside a stage and turned into a status at its
boundary, and ``TransientError``, which a task retries with backoff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Modality(StrEnum):
    IMAGE = "image"
    TEXT = "text"


class ItemStatus(StrEnum):
    """Lifecycle of one job input; all but the first two are final. ``filtered`` is good input
    that a job's quality filters turned away (the reason names the filter)."""

    PENDING = "pending"
    INGESTED = "ingested"
    FAILED = "failed"
    FILTERED = "filtered"
    PUBLISHED = "published"
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    SEMANTIC_DUPLICATE = "semantic_duplicate"


class JobState(StrEnum):
    """Lifecycle of a job; the last two are final."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)


class BatchState(StrEnum):
    """Lifecycle of a batch (one chord), in order: its chunks run, it waits for its turn,
    it is resolved (duplicates, labels, shard plan), its shards are committed."""

    RUNNING = "running"
    READY = "ready"
    RESOLVED = "resolved"
    COMMITTED = "committed"


class Reason(StrEnum):
    """Why an input was rejected or dropped; stored verbatim on the item row."""

    NOT_FOUND = "not_found"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    TOO_LARGE = "too_large"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    BLOCKED_SCHEME = "blocked_scheme"
    BLOCKED_PRIVATE_ADDRESS = "blocked_private_address"
    UNRESOLVABLE_HOST = "unresolvable_host"
    EMPTY = "empty"
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    FORMAT_MISMATCH = "format_mismatch"
    CORRUPT_IMAGE = "corrupt_image"
    DECOMPRESSION_BOMB = "decompression_bomb"
    INVALID_UTF8 = "invalid_utf8"
    TEXT_TOO_LONG = "text_too_long"
    BAD_RECORD = "bad_record"
    FORGOTTEN = "forgotten"  # content forgotten from the dataset on request (a tombstone)
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    SEMANTIC_DUPLICATE = "semantic_duplicate"


class Rejected(Exception):  # noqa: N818 - a verdict on input, not an error in autods
    """Bad input: never retried, recorded on the item with its reason."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class JobRefused(ValueError):  # noqa: N818 - a verdict on a request
    """A job that cannot start as asked; nothing of it is kept, and the message says why
    in one line."""


class SourceError(JobRefused):
    """A source that cannot be listed at all (missing, unsupported, a bucket that does not
    exist or may not be read): the job cannot be planned, and nothing of it is kept."""


class SourceNotFound(SourceError):  # noqa: N818 - a kind of SourceError
    """The source names a path or bucket that does not exist."""


class SourceDenied(SourceError):  # noqa: N818 - a kind of SourceError
    """The source exists but may not be read with the credentials at hand."""


class LabellingModuleError(JobRefused):
    """The labelling module named for a job cannot be used; found before any work starts."""


class OutputConflict(JobRefused):
    """The dataset exists and writes elsewhere than the ``output_url`` asked for."""


class TransientError(Exception):
    """A failure worth retrying (storage or network hiccup), never bad input."""


class StorageError(TransientError):
    """Our own object store failed ``operation`` (put, get, head ...): retried like any
    transient error, and told apart so that storage trouble can be counted on its own.
    Both are arguments, so the error survives pickling and Celery's JSON results."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(operation, message)
        self.operation, self.message = operation, message

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True)
class SourceItem:
    """One input as a source lists it, before anything is fetched.

    ``text`` holds the record for text inputs (they arrive inline); ``caption_uri`` points
    at a same-stem caption object that ingest reads (S3 sources).
    """

    ordinal: int
    uri: str
    modality: Modality = Modality.IMAGE
    caption: str | None = None
    caption_uri: str | None = None
    text: str | None = None
    license: str | None = None
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(slots=True)
class Fetched:
    """Raw bytes of an input and what the server or file name declared them to be."""

    data: bytes
    content_type: str | None = None
    declared_ext: str | None = None


@dataclass(slots=True)
class ImageInfo:
    """What validation learned from an image's header."""

    format: str
    mode: str
    width: int
    height: int
    ext: str
    mime: str


@dataclass(slots=True)
class ImageFeatures:
    """Per-asset features computed by preprocess."""

    phash: int
    width: int
    height: int
    format: str
    mode: str
    nbytes: int
    # A second perceptual hash of the same thumbnail (``autods.core.nearimage``).
    check: int | None = None
    # The region print of the same thumbnail (``autods.core.nearimage.thumbnail``).
    thumb: bytes | None = None


@dataclass(slots=True)
class ShardSample:
    """One sample to write: its key, member bytes by extension, and manifest fields."""

    key: str
    members: dict[str, bytes]
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ShardInfo:
    """What writing a shard produced, as recorded in the database and the index."""

    name: str
    count: int
    nbytes: int
    sha256: str
    tar_key: str
    manifest_json_key: str
    manifest_parquet_key: str
    modality: str
    extensions: list[str] = field(default_factory=list)
