"""The sample format: what one published input becomes inside a shard.

Pure: it takes what the database knows of a sample and the bytes the store holds, and
returns the members (``.jpg``/``.png``/... or ``.txt``, the caption, ``.json``, ``.npy``,
``.cls``) and the manifest fields. Two runs over the same inputs give the same bytes.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from PIL import Image

from autods.core.embed import npy_bytes
from autods.core.hashing import hash_hex
from autods.core.label import ABSTAIN
from autods.core.records import Modality, ShardSample
from autods.core.schema import SAMPLE, extra_column

#: Fields of the ``.json`` member that are "" rather than null when absent.
_TEXT_FIELDS = ("source", "license", "format", "mode", "label", "label_model", "caption",
                "split", "embedding_model", "language", "label_source")
#: Manifest fields that differ between runs and so stay out of the ``.json`` member.
_RUN_FIELDS = ("job", "ingested_at")


@dataclass(slots=True)
class SampleRecord:
    """What the database knows of one published sample (its item, asset, features and
    label). ``label`` is None when the sample has no label row."""

    sha256: str
    modality: str
    ext: str
    nbytes: int
    uri: str
    ordinal: int
    job_id: int
    caption: str | None = None
    source: str | None = None
    license: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    ingested_at: datetime | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    mode: str | None = None
    phash: int | None = None
    label: int | None = None
    label_name: str | None = None
    confidence: float | None = None
    label_model: str | None = None
    label_source: str | None = None
    split: str | None = None
    embedding_model: str | None = None
    language: str | None = None

    @property
    def key(self) -> str:
        """The sample key: the first 24 hex digits of the content hash (no dots)."""
        return self.sha256[:24]


def build_sample(rec: SampleRecord, data: bytes, *, vector: np.ndarray | None = None,
                 labelled: bool = False, resize: int | None = None) -> ShardSample:
    """The members and manifest fields of one sample.

    ``data`` is the stored image or text; ``vector`` the embedding (``.npy``) when the job
    embeds; ``labelled`` adds ``.cls`` and the label fields (``-1`` when every LF abstained).
    """
    members: dict[str, bytes] = {}
    if rec.modality == Modality.IMAGE:
        members[rec.ext] = maybe_resize(data, resize)
        members["txt"] = (rec.caption or "").encode()
    else:
        members["txt"] = data
    fields = {
        "sha256": rec.sha256, "uri": rec.uri, "modality": rec.modality,
        "source": rec.source, "license": rec.license, "nbytes": rec.nbytes,
        "width": rec.width, "height": rec.height, "format": rec.format, "mode": rec.mode,
        "phash": hash_hex(rec.phash) if rec.phash is not None else None,
        "has_caption": bool(rec.caption), "ordinal": rec.ordinal, "job": rec.job_id,
        "ingested_at": rec.ingested_at.isoformat() if rec.ingested_at else None,
        "split": rec.split, "language": rec.language,
        "embedding_model": rec.embedding_model if vector is not None else None,
    }
    if labelled:
        has_label = rec.label is not None
        fields["label_id"] = rec.label if has_label else ABSTAIN
        fields["label"] = rec.label_name if has_label else None
        fields["confidence"] = rec.confidence if has_label else None
        fields["label_model"] = rec.label_model if has_label else None
        voted = has_label and rec.label != ABSTAIN
        fields["label_prob"] = fields["confidence"] if voted else None
        fields["label_source"] = rec.label_source if voted else None
    members["json"] = sample_json(rec.key, fields, rec.caption, rec.meta or {})
    fields["caption"] = rec.caption
    fields.update(meta_fields(rec.meta or {}))
    if vector is not None:
        members["npy"] = npy_bytes(vector)
    if labelled:
        members["cls"] = str(fields["label_id"]).encode()
    return ShardSample(key=rec.key, members=members, fields=fields)


def meta_fields(meta: dict[str, Any]) -> dict[str, Any]:
    """A source's own fields (``metadata.jsonl`` keys) as manifest columns, so they can be
    queried: scalars and lists of strings as they are, anything else as its JSON text."""
    out: dict[str, Any] = {}
    for name, value in meta.items():
        if value is None:
            continue
        if not (isinstance(value, str | int | float | bool)
                or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            value = json.dumps(value, sort_keys=True, ensure_ascii=False)
        out[extra_column(name, SAMPLE)] = value
    return out


def sample_json(key: str, fields: dict[str, Any], caption: str | None,
                meta: dict[str, Any]) -> bytes:
    """The ``.json`` member: type-stable and reproducible.

    Readers that infer a schema from the first samples (Hugging Face ``datasets``) fail
    when a field is null there and a string later, so text fields are "" when absent and an
    abstained label has confidence 0.0 (its ``label_id`` is -1); null user values are
    dropped. What differs between runs (job id, times) stays in the manifest only, so a
    re-run or a resumed run writes byte-identical shards.
    """
    doc = {k: v for k, v in fields.items() if k not in _RUN_FIELDS}
    doc["caption"] = caption
    for name in _TEXT_FIELDS:
        if name in doc and doc[name] is None:
            doc[name] = ""
    for name in ("confidence", "label_prob"):
        if name in doc and doc[name] is None:
            doc[name] = 0.0
    doc["key"] = key
    doc["meta"] = {k: v for k, v in meta.items() if v is not None}
    return json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()


def maybe_resize(data: bytes, resize: int | None) -> bytes:
    """Original bytes unless a maximum side is asked for and exceeded; then re-encode once,
    in the image's own format."""
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
