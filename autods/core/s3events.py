"""S3 / MinIO bucket notifications: which objects were created.

MinIO's webhook and AWS's S3 event format share the ``Records`` list; object keys arrive
URL-encoded (a space as ``+``). Only creations matter here: deletions and other events are
ignored, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus


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
        return f"{self.bucket}/{self.key}@{version}"[:1100]


def created_objects(payload: dict[str, Any]) -> list[CreatedObject]:
    """Objects created according to a notification payload, in record order."""
    found: list[CreatedObject] = []
    for record in payload.get("Records") or []:
        if not isinstance(record, dict):
            continue
        name = str(record.get("eventName", ""))
        if "ObjectCreated:" not in name:
            continue
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        obj = s3.get("object") or {}
        key = obj.get("key")
        if not bucket or not key:
            continue
        etag = obj.get("eTag") or obj.get("etag")
        found.append(CreatedObject(bucket=str(bucket), key=unquote_plus(str(key)),
                                   etag=str(etag).strip('"') if etag else None,
                                   sequencer=obj.get("sequencer")))
    return found
