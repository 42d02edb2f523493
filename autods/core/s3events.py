"""S3 / MinIO bucket notifications: which objects were created.

MinIO's webhook and AWS's S3 event format share the ``Records`` list; object keys arrive
URL-encoded (a space as ``+``). Only creations matter here: deletions and other events are
ignored, never an error. Each record is taken on its own: a malformed one is reported with
its reason, and the good records beside it are still ingested (otherwise the sender would
redeliver the whole notification forever).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from autods.core.sources import BUCKET_PATTERN

#: S3's own limits: bucket names as sources check them, keys of at most 1024 UTF-8 bytes;
#: an ETag is a quoted hash, well under 100 characters.
_BUCKET = re.compile(BUCKET_PATTERN)
_MAX_KEY_BYTES = 1024
_MAX_ETAG = 100
_MAX_SEQUENCER = 100
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class MalformedEvent(ValueError):  # noqa: N818 - a verdict on input
    """The payload as a whole is not a notification (``Records`` is not a list)."""


@dataclass(frozen=True, slots=True)
class CreatedObject:
    bucket: str
    key: str
    etag: str | None
    sequencer: str | None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def dedup_key(self) -> str:
        """Same object version, same key: a redelivered event maps to the same string."""
        version = self.etag or self.sequencer or ""
        key = f"{self.bucket}/{self.key}@{version}"
        # The column holds 1100 characters; a longer name is hashed, never cut (two names
        # cut to one would make the second object a "duplicate" and lose it).
        return key if len(key) <= 1100 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass(slots=True)
class Notification:
    """What one delivery holds: created objects, records refused (index and reason), and
    how many records were about something else."""

    created: list[CreatedObject] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    ignored: int = 0


class _Bad(Exception):  # noqa: N818 - internal: one record's verdict
    pass


def parse_notification(payload: Any) -> Notification:
    """Every record of a notification payload, in order, each judged on its own."""
    if not isinstance(payload, dict):
        raise MalformedEvent("a notification is a JSON object")
    records = payload.get("Records")
    if records is None:
        return Notification()
    if not isinstance(records, list):
        raise MalformedEvent("Records must be a list")
    out = Notification()
    for index, record in enumerate(records):
        try:
            created = _created(record)
        except _Bad as bad:
            out.rejected.append((index, str(bad)))
            continue
        if created is None:
            out.ignored += 1
        else:
            out.created.append(created)
    return out


def _created(record: Any) -> CreatedObject | None:
    if not isinstance(record, dict):
        raise _Bad("a record must be an object")
    name = record.get("eventName", "")
    if not isinstance(name, str) or "ObjectCreated:" not in name:
        return None
    s3 = _object(record, "s3")
    bucket = _text(_object(s3, "bucket").get("name"), "bucket name")
    obj = _object(s3, "object")
    key = unquote_plus(_text(obj.get("key"), "object key"))
    if not _BUCKET.fullmatch(bucket):
        raise _Bad(f"not a valid bucket name: {bucket[:80]!r}")
    if _UNSTORABLE.search(key) or len(key.encode("utf-8")) > _MAX_KEY_BYTES:
        raise _Bad("object key has NUL or a lone surrogate, or is over 1024 bytes")
    etag = obj.get("eTag", obj.get("etag"))
    etag = _text(etag, "eTag").strip('"') if etag is not None else None
    if etag is not None and (len(etag) > _MAX_ETAG or _UNSTORABLE.search(etag)):
        raise _Bad("eTag over 100 characters or not storable text")
    sequencer = obj.get("sequencer")
    if sequencer is not None:
        sequencer = _text(sequencer, "sequencer")
        if len(sequencer) > _MAX_SEQUENCER or _UNSTORABLE.search(sequencer):
            raise _Bad("sequencer over 100 characters or not storable text")
    return CreatedObject(bucket=bucket, key=key, etag=etag or None, sequencer=sequencer)


def _object(parent: dict[str, Any], name: str) -> dict[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise _Bad(f"{name} must be an object")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad(f"{what} missing or not a string")
    if _UNSTORABLE.search(value):
        raise _Bad(f"{what} has NUL or a lone surrogate")
    return value
