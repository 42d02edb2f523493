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

from autods.core.bloom import BloomFilter
from autods.core.records import ShardInfo, ShardSample
from autods.core.schema import SAMPLE, Field, SampleSchema
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


def _check_fields(samples: list[ShardSample]) -> None:
    for sample in samples:
        clash = set(sample.fields).intersection(_RESERVED)
        if clash:
            raise ValueError(f"manifest fields {sorted(clash)} are reserved")


def _extra(name: str, values: list[Any]) -> pa.Array:
    """A source's own field: its inferred arrow type; all-missing becomes string, and a
    field whose values disagree on a type is kept as their JSON text rather than lost.

    A null-typed column would not concatenate with the same field typed elsewhere.
    """
    if all(v is None for v in values):
        return pa.array(values, type=pa.string())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        logger.warning("manifest field %r mixes types; stored as JSON text", name)
        return pa.array([None if v is None else json.dumps(v, sort_keys=True, default=str)
                         for v in values], type=pa.string())


def manifest_table(samples: list[ShardSample], spans: list[SampleSpan],
                   schema: SampleSchema = SAMPLE) -> pa.Table:
    """One row per sample: key, byte range in the tar, the schema's fields with the
    schema's types (null where a sample lacks one), then the sample's own extra fields."""
    if [s.key for s in samples] != [s.key for s in spans]:
        raise ValueError("spans do not match samples")
    _check_fields(samples)
    columns = {
        "__key__": pa.array([s.key for s in spans], type=pa.string()),
        "__offset__": pa.array([s.offset for s in spans], type=pa.int64()),
        "__size__": pa.array([s.size for s in spans], type=pa.int64()),
    }
    for f in schema.queryable():
        values = [s.fields.get(f.name) for s in samples]
        if f.aggregate == "time":
            values = [_as_utc(v).isoformat() if isinstance(v, datetime | date) else v
                      for v in values]
        try:
            columns[f.name] = pa.array(values, type=f.arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"manifest field {f.name!r} is not {f.type}: {exc}") from exc
    extras = sorted({k for s in samples for k in s.fields} - set(columns))
    for name in extras:
        columns[name] = _extra(name, [s.fields.get(name) for s in samples])
    return pa.table(columns)


def _categorical(labels: list[str], nulls: int) -> dict[str, Any]:
    """Value counts; past ``MAX_CATEGORIES`` values a Bloom filter, which still lets an
    equality test skip the shard."""
    counts = Counter(labels)
    aggregate: dict[str, Any] = {"type": "categorical", "cardinality": len(counts), "nulls": nulls}
    if len(counts) <= MAX_CATEGORIES:
        aggregate["values"] = dict(sorted(counts.items()))
    else:
        aggregate["bloom"] = BloomFilter.of(counts).to_json()
    return aggregate


def _set(values: list[list[str] | None]) -> dict[str, Any]:
    """The values a list field takes in the shard, or their Bloom filter when many."""
    present = [v for v in values if v is not None]
    items = sorted({item for v in present for item in v if item is not None})
    aggregate: dict[str, Any] = {"type": "set", "nulls": len(values) - len(present)}
    if len(items) <= MAX_CATEGORIES:
        aggregate["all_values"] = items
    else:
        aggregate["bloom"] = BloomFilter.of(items).to_json()
    return aggregate


def _time(values: list[Any]) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    times = [_as_utc(v) for v in present]
    return {"type": "time", "min": min(times).isoformat() if times else None,
            "max": max(times).isoformat() if times else None,
            "nulls": len(values) - len(present)}


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
        return _set(values)
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return _time(values)
    return {"type": "other", "arrow_type": str(arrow_type), "nulls": nulls}


def declared_aggregate(field: Field, values: list[Any]) -> dict[str, Any]:
    """Summarize a schema field the way its schema says."""
    if field.aggregate is None:
        return {"type": "other", "arrow_type": field.type,
                "nulls": sum(v is None for v in values)}
    if field.aggregate == "time":
        return _time(values)
    if field.aggregate == "set":
        return _set(values)
    return aggregate_field(field.arrow_type, values)


def _time_range(table: pa.Table) -> tuple[str | None, str | None]:
    """The shard's ``ingested_at`` range as ISO UTC strings, for time-based selection."""
    if TIME_FIELD not in table.column_names:
        return None, None
    times = [_as_utc(v) for v in table.column(TIME_FIELD).to_pylist() if v is not None]
    if not times:
        return None, None
    return min(times).isoformat(), max(times).isoformat()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(
        document, sort_keys=True, indent=2, allow_nan=False, default=_json_default
    ).encode("utf-8")


def table_aggregates(table: pa.Table, schema: SampleSchema = SAMPLE) -> dict[str, Any]:
    """Every manifest field's aggregate: a schema field as declared, an extra one by type."""
    aggregates = {}
    for name in table.column_names[len(_RESERVED):]:
        values = table.column(name).to_pylist()
        declared = schema.field(name)
        aggregates[name] = (declared_aggregate(declared, values) if declared is not None
                            else aggregate_field(table.schema.field(name).type, values))
    return aggregates


def build_manifest(name: str, table: pa.Table, provenance: dict[str, Any], size_bytes: int,
                   sha256: str, schema: SampleSchema = SAMPLE) -> dict[str, Any]:
    """The ``manifest.json`` document; computed facts override same-named provenance keys."""
    fields = table.column_names[len(_RESERVED):]
    time_min, time_max = _time_range(table)
    header: dict[str, Any] = {
        "dataset": None,
        "job": None,
        "pipeline_version": None,
        "parent_shards": [],
        "created_at": datetime.now(UTC).isoformat(),
        **provenance,
        "shard": name,
        "schema_type": schema.name,
        "schema_version": schema.version,
        "schema": {f: str(table.schema.field(f).type) for f in fields},
        "num_samples": table.num_rows,
        "size_bytes": size_bytes,
        "sha256": sha256,
        "time_min": time_min,
        "time_max": time_max,
    }
    return {**header, "aggregates": table_aggregates(table, schema)}


def write_table_manifests(store: ObjectStore, prefix: str, name: str, table: pa.Table,
                          provenance: dict[str, Any], size_bytes: int, sha256: str,
                          schema: SampleSchema = SAMPLE) -> dict[str, Any]:
    """Write both manifests of shard ``name`` from its per-sample table; return the
    ``manifest.json`` document (``manifest_keys`` gives where both went)."""
    json_key, parquet_key = manifest_keys(prefix, name)
    manifest = build_manifest(name, table, provenance, size_bytes, sha256, schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    store.put(parquet_key, buffer.getvalue())
    store.put(json_key, dumps(manifest))
    logger.info("wrote manifests for shard %s (%d fields)", name, len(manifest["schema"]))
    return manifest


def write_manifests(
    store: ObjectStore,
    prefix: str,
    name: str,
    samples: list[ShardSample],
    spans: list[SampleSpan],
    provenance: dict[str, Any],
    size_bytes: int,
    sha256: str,
    schema: SampleSchema = SAMPLE,
) -> tuple[str, str]:
    """Write both manifests of shard ``name``; return their keys (json, parquet)."""
    write_table_manifests(store, prefix, name, manifest_table(samples, spans, schema),
                          provenance, size_bytes, sha256, schema)
    return manifest_keys(prefix, name)


def _relative(key: str, index_dir: str) -> str:
    return posixpath.relpath(key, index_dir or ".")


def index_entry(shard: ShardInfo, index_dir: str) -> dict[str, Any]:
    """One ``shardlist`` entry; paths are relative to the index's folder, as wids expects."""
    return {
        "name": shard.name,
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
    store: ObjectStore, shards: list[ShardInfo], dataset: str, key: str = "index.json",
    extra: dict[str, Any] | None = None,
) -> str:
    """Write the dataset's shard index at ``key`` and return ``key``; ``extra`` keys (a
    version's number, parent, job) go before the shard list.

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
        **(extra or {}),
        "shardlist": [index_entry(s, index_dir) for s in sorted(shards, key=lambda s: s.name)],
    }
    store.put(key, dumps(document))
    logger.info("wrote index %s: %d shards", key, len(shards))
    return key
