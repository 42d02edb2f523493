"""Per-shard manifests and the dataset index.

Each shard gets two manifests next to its tar. ``manifest.json`` is small and meant for
planning without opening the tar: provenance, schema and per-field aggregates, so a
consumer can pick shards by time range, label mix or score range. ``manifest.parquet``
has one row per sample with its byte range in the tar, so a single sample can be fetched
with one ranged read and selected with any parquet-aware engine.

The dataset index follows ``wids``' shard-index format: shard urls are relative to the
directory holding the index, which is how ``wids`` resolves them, so a dataset folder
can be moved or mirrored as a whole.
"""

from __future__ import annotations

import io
import json
import logging
import math
import posixpath
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from autods.core.records import ShardInfo, ShardSample
from autods.core.storage import ObjectStore

logger = logging.getLogger(__name__)

MAX_CATEGORIES = 256
HISTOGRAM_BUCKETS = 10
TIME_FIELD = "ingested_at"
INDEX_KIND = "wids-shard-index-v1"
_RESERVED = ("__key__", "__offset__", "__size__")


@dataclass(frozen=True, slots=True)
class SampleSpan:
    """Where a sample lies in its tar: ``tar[offset:offset + size]`` is its members."""

    key: str
    offset: int
    size: int


def manifest_keys(prefix: str, name: str) -> tuple[str, str]:
    """The json and parquet manifest keys of shard ``name``."""
    return f"{prefix}/{name}.manifest.json", f"{prefix}/{name}.manifest.parquet"


def field_names(samples: list[ShardSample]) -> list[str]:
    """The shard's manifest fields, sorted; every sample must carry the same ones.

    One column set per shard keeps the parquet manifests of a dataset concatenable.
    """
    names = set(samples[0].fields) if samples else set()
    for sample in samples:
        if set(sample.fields) != names:
            raise ValueError(
                f"sample {sample.key!r} has fields {sorted(sample.fields)}, "
                f"the shard has {sorted(names)}"
            )
    clash = names.intersection(_RESERVED)
    if clash:
        raise ValueError(f"manifest fields {sorted(clash)} are reserved")
    return sorted(names)


def _column(name: str, values: list[Any]) -> pa.Array:
    """An arrow column with an inferred type; all-missing columns become strings.

    A null-typed column would not concatenate with the same field typed elsewhere.
    """
    if all(v is None for v in values):
        return pa.array(values, type=pa.string())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"manifest field {name!r} mixes incompatible types: {exc}") from exc


def manifest_table(samples: list[ShardSample], spans: list[SampleSpan]) -> pa.Table:
    """One row per sample: key, byte range in the tar, then every manifest field."""
    if [s.key for s in samples] != [s.key for s in spans]:
        raise ValueError("spans do not match samples")
    columns = {
        "__key__": pa.array([s.key for s in spans], type=pa.string()),
        "__offset__": pa.array([s.offset for s in spans], type=pa.int64()),
        "__size__": pa.array([s.size for s in spans], type=pa.int64()),
    }
    for name in field_names(samples):
        columns[name] = _column(name, [s.fields[name] for s in samples])
    return pa.table(columns)


def _categorical(labels: list[str], nulls: int) -> dict[str, Any]:
    counts = Counter(labels)
    aggregate: dict[str, Any] = {"type": "categorical", "cardinality": len(counts), "nulls": nulls}
    if len(counts) <= MAX_CATEGORIES:
        aggregate["values"] = dict(sorted(counts.items()))
    return aggregate


def _histogram(values: list[float], low: float, high: float) -> dict[str, list]:
    """Equal-width buckets over [low, high]; the last bucket includes ``high``.

    A constant column gets a single bucket, since equal widths of zero say nothing.
    """
    if low == high:
        return {"buckets": [low, high], "counts": [len(values)]}
    width = (high - low) / HISTOGRAM_BUCKETS
    edges = [low + i * width for i in range(HISTOGRAM_BUCKETS)] + [high]
    counts = [0] * HISTOGRAM_BUCKETS
    for value in values:
        counts[min(int((value - low) / width), HISTOGRAM_BUCKETS - 1)] += 1
    return {"buckets": edges, "counts": counts}


def _numeric(arrow_type: pa.DataType, raw: list[Any]) -> dict[str, Any]:
    """Range, mean and histogram; ``nulls`` counts missing and non-finite values.

    Values are turned into Python numbers first, so numpy scalars from upstream count
    (and serialize) like the plain ints and floats they stand for.
    """
    convert = int if pa.types.is_integer(arrow_type) else float
    values = [convert(v) for v in raw if v is not None]
    values = [v for v in values if math.isfinite(v)]
    nulls = len(raw) - len(values)
    if not values:
        return {"type": "numeric", "min": None, "max": None, "mean": None, "nulls": nulls,
                "histogram": {"buckets": [], "counts": []}}
    low, high = min(values), max(values)
    return {
        "type": "numeric",
        "min": low,
        "max": high,
        "mean": math.fsum(values) / len(values),
        "nulls": nulls,
        "histogram": _histogram(values, float(low), float(high)),
    }


def _as_utc(value: datetime | date | str) -> datetime:
    """A timezone-aware UTC datetime; naive values are taken to be UTC already."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def aggregate_field(arrow_type: pa.DataType, values: list[Any]) -> dict[str, Any]:
    """Summarize one field, choosing the summary from its inferred arrow type."""
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return _numeric(arrow_type, values)
    present = [v for v in values if v is not None]
    nulls = len(values) - len(present)
    if pa.types.is_boolean(arrow_type):
        return _categorical(["true" if v else "false" for v in present], nulls)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return _categorical(present, nulls)
    if pa.types.is_list(arrow_type) and pa.types.is_string(arrow_type.value_type):
        items = {item for v in present for item in v if item is not None}
        return {"type": "set", "all_values": sorted(items), "nulls": nulls}
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        times = [_as_utc(v) for v in present]
        return {"type": "time", "min": min(times).isoformat() if times else None,
                "max": max(times).isoformat() if times else None, "nulls": nulls}
    return {"type": "other", "arrow_type": str(arrow_type), "nulls": nulls}


def _time_range(samples: list[ShardSample]) -> tuple[str | None, str | None]:
    """The shard's ``ingested_at`` range as ISO UTC strings, for time-based selection."""
    times = [_as_utc(s.fields[TIME_FIELD]) for s in samples
             if s.fields.get(TIME_FIELD) is not None]
    if not times:
        return None, None
    return min(times).isoformat(), max(times).isoformat()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(
        document, sort_keys=True, indent=2, allow_nan=False, default=_json_default
    ).encode("utf-8")


def build_manifest(
    name: str,
    samples: list[ShardSample],
    table: pa.Table,
    provenance: dict[str, Any],
    size_bytes: int,
    sha256: str,
) -> dict[str, Any]:
    """The ``manifest.json`` document; computed facts override same-named provenance keys."""
    fields = table.column_names[len(_RESERVED):]
    time_min, time_max = _time_range(samples)
    header: dict[str, Any] = {
        "dataset": None,
        "job": None,
        "pipeline_version": None,
        "created_at": datetime.now(UTC).isoformat(),
        **provenance,
        "shard": name,
        "schema": {f: str(table.schema.field(f).type) for f in fields},
        "num_samples": len(samples),
        "size_bytes": size_bytes,
        "sha256": sha256,
        "time_min": time_min,
        "time_max": time_max,
    }
    aggregates = {
        f: aggregate_field(table.schema.field(f).type, [s.fields[f] for s in samples])
        for f in fields
    }
    return {**header, "aggregates": aggregates}


def write_manifests(
    store: ObjectStore,
    prefix: str,
    name: str,
    samples: list[ShardSample],
    spans: list[SampleSpan],
    provenance: dict[str, Any],
    size_bytes: int,
    sha256: str,
) -> tuple[str, str]:
    """Write both manifests of shard ``name``; return their keys (json, parquet)."""
    json_key, parquet_key = manifest_keys(prefix, name)
    table = manifest_table(samples, spans)
    manifest = build_manifest(name, samples, table, provenance, size_bytes, sha256)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    store.put(parquet_key, buffer.getvalue())
    store.put(json_key, _dumps(manifest))
    logger.info("wrote manifests for shard %s (%d fields)", name, len(manifest["schema"]))
    return json_key, parquet_key


def _relative(key: str, index_dir: str) -> str:
    return posixpath.relpath(key, index_dir or ".")


def index_entry(shard: ShardInfo, index_dir: str) -> dict[str, Any]:
    """One ``shardlist`` entry; paths are relative to the index's folder, as wids expects."""
    return {
        "url": _relative(shard.tar_key, index_dir),
        "nsamples": shard.count,
        "filesize": shard.nbytes,
        "sha256": shard.sha256,
        "modality": shard.modality,
        # The member extensions of every sample in the shard: readers that take one
        # schema per load (Hugging Face datasets) load each layout on its own.
        "extensions": list(shard.extensions),
        "manifest": _relative(shard.manifest_json_key, index_dir),
        "manifest_parquet": _relative(shard.manifest_parquet_key, index_dir),
    }


def write_index(
    store: ObjectStore, shards: list[ShardInfo], dataset: str, key: str = "index.json"
) -> str:
    """Write the dataset's shard index at ``key`` and return ``key``.

    Shards are listed by name so the index, and every reader's sample numbering, does not
    depend on the order shards happened to finish in.
    """
    names = [s.name for s in shards]
    if len(set(names)) != len(names):
        raise ValueError("duplicate shard names in index")
    index_dir = posixpath.dirname(key)
    document = {
        "__kind__": INDEX_KIND,
        "wids_version": 1,
        "name": dataset,
        "shardlist": [index_entry(s, index_dir) for s in sorted(shards, key=lambda s: s.name)],
    }
    store.put(key, _dumps(document))
    logger.info("wrote index %s: %d shards", key, len(shards))
    return key
