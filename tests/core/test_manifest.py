"""Manifests summarize shards correctly, and the index resolves the way wids resolves it."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autods.core.bloom import BloomFilter
from autods.core.manifest import write_index
from autods.core.records import ShardSample
from autods.core.schema import SAMPLE
from autods.core.shard import write_shard
from autods.core.storage import LocalStore

PROVENANCE = {
    "dataset": "demo",
    "job": "job-7",
    "pipeline_version": "0.1.0",
    "created_at": "2024-05-01T12:00:00+00:00",
    "source": "unit-test",
    "num_samples": 999,  # computed facts must win over provenance
}
LABELS = ["cat", "dog", "cat", "bird", "cat", "dog", "cat", "cat", "dog", "cat", "cat"]


def sample(i: int, **fields) -> ShardSample:
    return ShardSample(
        key=f"s{i:03d}",
        members={"txt": f"text {i}".encode(), "cls": str(i % 3).encode()},
        fields=fields,
    )


def rich_samples() -> list[ShardSample]:
    """Eleven samples covering every aggregate kind, with gaps."""
    return [
        sample(
            i,
            label=LABELS[i],
            score=None if i == 4 else float(i),
            width=np.int64(100 + i),
            constant=7,
            nsfw=i % 4 == 0,
            tags=["a", "b"] if i % 2 else ["c"],
            ingested_at=f"2024-01-{i + 1:02d}T08:00:00Z" if i != 3 else None,
            note=None,
        )
        for i in range(11)
    ]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def manifest(store):
    info = write_shard(rich_samples(), "shard-000001", store, PROVENANCE, prefix="ds/shards")
    return info, json.loads(store.get(info.manifest_json_key))


def test_header_carries_provenance_and_computed_facts(store, manifest):
    info, doc = manifest
    tar = store.get(info.tar_key)
    assert info.manifest_json_key == "ds/shards/shard-000001.manifest.json"
    assert doc["shard"] == "shard-000001"
    assert (doc["dataset"], doc["job"], doc["pipeline_version"]) == ("demo", "job-7", "0.1.0")
    assert doc["created_at"] == "2024-05-01T12:00:00+00:00"
    assert doc["source"] == "unit-test"
    assert doc["num_samples"] == 11
    assert doc["size_bytes"] == len(tar)
    assert doc["sha256"] == hashlib.sha256(tar).hexdigest()
    assert doc["time_min"] == "2024-01-01T08:00:00+00:00"
    assert doc["time_max"] == "2024-01-11T08:00:00+00:00"
    assert (doc["schema_type"], doc["schema_version"]) == ("autods.sample", SAMPLE.version)
    assert doc["parent_shards"] == []
    # The schema's fields with their declared types, whether the samples have them or not.
    assert {f.name: doc["schema"][f.name] for f in SAMPLE.queryable()} == {
        f.name: str(f.arrow_type) for f in SAMPLE.queryable()}
    # Then the samples' own fields, with inferred types.
    extras = {k: v for k, v in doc["schema"].items() if SAMPLE.field(k) is None}
    assert extras == {
        "constant": "int64",
        "note": "string",
        "nsfw": "bool",
        "score": "double",
        "tags": "list<item: string>",
    }
    assert doc["aggregates"]["sha256"] == {"type": "other", "arrow_type": "string",
                                           "nulls": 11}


def test_created_at_defaults_to_now_in_utc(store):
    info = write_shard([sample(0, label="x")], "s", store, {"dataset": "demo"})
    doc = json.loads(store.get(info.manifest_json_key))
    created = datetime.fromisoformat(doc["created_at"])
    assert created.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert doc["job"] is None and doc["time_min"] is None and doc["time_max"] is None


def test_categorical_aggregates_count_values(manifest):
    _, doc = manifest
    agg = doc["aggregates"]
    assert agg["label"] == {"type": "categorical", "cardinality": 3, "nulls": 0,
                            "values": {"bird": 1, "cat": 7, "dog": 3}}
    assert agg["nsfw"] == {"type": "categorical", "cardinality": 2, "nulls": 0,
                           "values": {"false": 8, "true": 3}}
    assert agg["note"] == {"type": "categorical", "cardinality": 0, "nulls": 11, "values": {}}
    assert agg["tags"] == {"type": "set", "all_values": ["a", "b", "c"], "nulls": 0}


def test_numeric_aggregates_and_histograms(manifest):
    _, doc = manifest
    score = doc["aggregates"]["score"]
    present = [float(i) for i in range(11) if i != 4]
    assert score["type"] == "numeric"
    assert (score["min"], score["max"], score["nulls"]) == (0.0, 10.0, 1)
    assert score["mean"] == pytest.approx(sum(present) / len(present))
    hist = score["histogram"]
    assert hist["buckets"] == pytest.approx([float(i) for i in range(11)])
    assert sum(hist["counts"]) == len(present)
    assert hist["counts"] == [1, 1, 1, 1, 0, 1, 1, 1, 1, 2]  # 10.0 falls in the last bucket

    width = doc["aggregates"]["width"]
    assert (width["min"], width["max"], width["mean"]) == (100, 110, 105)
    assert sum(width["histogram"]["counts"]) == 11

    constant = doc["aggregates"]["constant"]
    assert constant["histogram"] == {"buckets": [7.0, 7.0], "counts": [11]}
    assert (constant["min"], constant["max"], constant["mean"]) == (7, 7, 7)


def test_numeric_without_values_and_non_finite_values(store):
    samples = [sample(0, x=None, y=float("nan")), sample(1, x=None, y=2.5)]
    info = write_shard(samples, "s", store, PROVENANCE)
    agg = json.loads(store.get(info.manifest_json_key))["aggregates"]
    assert agg["x"]["type"] == "categorical"  # all-missing columns are strings
    assert agg["y"] == {"type": "numeric", "min": 2.5, "max": 2.5, "mean": 2.5, "nulls": 1,
                        "histogram": {"buckets": [2.5, 2.5], "counts": [1]}}


def test_datetime_ingested_at_gives_utc_time_range(store):
    samples = [
        sample(0, ingested_at=datetime(2024, 3, 1, 10, 0, tzinfo=UTC)),
        sample(1, ingested_at=datetime(2024, 2, 1, 9, 30)),  # naive means UTC
    ]
    info = write_shard(samples, "s", store, PROVENANCE)
    doc = json.loads(store.get(info.manifest_json_key))
    assert (doc["time_min"], doc["time_max"]) == (
        "2024-02-01T09:30:00+00:00", "2024-03-01T10:00:00+00:00")
    assert doc["aggregates"]["ingested_at"] == {
        "type": "time", "min": doc["time_min"], "max": doc["time_max"], "nulls": 0}


def test_high_cardinality_keeps_the_count_and_a_bloom_filter(store):
    samples = [sample(i, url=f"https://example.com/{i}") for i in range(300)]
    info = write_shard(samples, "s", store, PROVENANCE)
    agg = json.loads(store.get(info.manifest_json_key))["aggregates"]["url"]
    assert (agg["type"], agg["cardinality"], agg["nulls"]) == ("categorical", 300, 0)
    assert "values" not in agg
    bloom = BloomFilter.from_json(agg["bloom"])
    assert all(f"https://example.com/{i}" in bloom for i in range(300))
    assert sum(f"https://example.org/{i}" in bloom for i in range(1000)) < 50


def test_parquet_has_one_typed_row_per_sample(store, manifest):
    info, _ = manifest
    table = pq.read_table(store.root / info.manifest_parquet_key)
    assert table.column_names == [
        "__key__", "__offset__", "__size__", *(f.name for f in SAMPLE.queryable()),
        "constant", "note", "nsfw", "score", "tags",
    ]
    assert table.schema.field("__offset__").type == pa.int64()
    assert table.schema.field("__size__").type == pa.int64()
    assert table.schema.field("note").type == pa.string()
    rows = table.to_pylist()
    assert [r["__key__"] for r in rows] == [f"s{i:03d}" for i in range(11)]
    assert [r["label"] for r in rows] == LABELS
    assert rows[4]["score"] is None and rows[3]["ingested_at"] is None
    assert rows[1]["tags"] == ["a", "b"]


def test_manifest_json_is_deterministic(tmp_path):
    docs = []
    for name in ("one", "two"):
        store = LocalStore(tmp_path / name)
        info = write_shard(rich_samples(), "same", store, PROVENANCE)
        docs.append(store.get(info.manifest_json_key))
    assert docs[0] == docs[1]


@pytest.mark.parametrize(
    "samples",
    [
        [sample(0, __size__=1)],  # reserved name
        [sample(0, width="wide")],  # not the schema's type
    ],
    ids=["reserved", "schema-type"],
)
def test_bad_fields_raise(samples, store):
    with pytest.raises(ValueError):
        write_shard(samples, "bad", store, PROVENANCE)


def test_a_sources_own_fields_may_differ_between_samples(store):
    """Metadata rows need not agree: a missing field is null, a field whose values disagree
    on a type is kept as JSON text, and nothing is lost."""
    samples = [sample(0, a=1, b="x"), sample(1, a="one"), sample(2, b="y")]
    info = write_shard(samples, "s", store, PROVENANCE)
    rows = pq.read_table(store.root / info.manifest_parquet_key).to_pylist()
    assert [r["a"] for r in rows] == ["1", '"one"', None]
    assert [r["b"] for r in rows] == ["x", None, "y"]


def _wids_resolve(index_path: Path, url: str) -> Path:
    """How wids turns a shardlist url into a location: joined onto the index's folder."""
    return Path(os.path.normpath(os.path.join(os.path.dirname(index_path), url)))


@pytest.mark.parametrize("index_key", ["index.json", "ds/index.json", "meta/v1/index.json"])
def test_index_lists_shards_by_name_with_relative_urls(store, index_key):
    shards = [
        write_shard([sample(i) for i in range(n)], name, store, {"modality": "text"},
                    prefix="ds/shards")
        for name, n in (("shard-000001", 3), ("shard-000000", 2))
    ]
    assert write_index(store, shards, "demo", key=index_key) == index_key
    index_path = store.root / index_key
    doc = json.loads(index_path.read_text())
    assert doc["__kind__"] == "wids-shard-index-v1"
    assert (doc["wids_version"], doc["name"]) == (1, "demo")
    entries = doc["shardlist"]
    assert [e["nsamples"] for e in entries] == [2, 3]
    for entry, info in zip(entries, sorted(shards, key=lambda s: s.name), strict=True):
        assert not entry["url"].startswith("/")
        tar = _wids_resolve(index_path, entry["url"])
        assert tar == store.root / info.tar_key
        assert hashlib.sha256(tar.read_bytes()).hexdigest() == entry["sha256"] == info.sha256
        assert entry["filesize"] == tar.stat().st_size
        assert entry["modality"] == "text"
        assert _wids_resolve(index_path, entry["manifest"]) == store.root / info.manifest_json_key
        parquet = _wids_resolve(index_path, entry["manifest_parquet"])
        assert parquet == store.root / info.manifest_parquet_key
    if index_key == "ds/index.json":
        assert entries[0]["url"] == posixpath.join("shards", "shard-000000.tar")


def test_index_rejects_duplicate_shard_names(store):
    info = write_shard([sample(0)], "dup", store, PROVENANCE)
    with pytest.raises(ValueError):
        write_index(store, [info, info], "demo")


def test_wids_reads_the_index(store, tmp_path):
    wids = pytest.importorskip("wids")
    shards = [
        write_shard([sample(i) for i in range(4)], "shard-000000", store, PROVENANCE),
        write_shard([sample(i) for i in range(4, 6)], "shard-000001", store, PROVENANCE),
    ]
    key = write_index(store, shards, "demo", key="ds/index.json")  # urls start with ../
    dataset = wids.ShardListDataset(
        str(store.root / key), cache_dir=str(tmp_path / "wids"), transformations=[]
    )
    assert len(dataset) == 6
    got = [dataset[i] for i in range(6)]
    assert [g["__key__"] for g in got] == [f"s{i:03d}" for i in range(6)]
    assert [g[".txt"].read() for g in got] == [f"text {i}".encode() for i in range(6)]
    assert [int(g[".cls"].read()) for g in got] == [i % 3 for i in range(6)]
