"""Versions, the key index, queries checked against a brute-force scan, views and gc, on
datasets written by the real shard writer."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile

import duckdb
import pyarrow as pa
import pyarrow.parquet  # noqa: F401 - pa.parquet below
import pytest

from autods.core.predicate import PredicateError
from autods.core.query import Limits
from autods.core.storage import LocalStore
from autods.core.versions import keys_key, list_versions, read_version
from autods.dataset import Dataset
from tests.dsgen import write_dataset


@pytest.fixture
def ds(tmp_path) -> Dataset:
    store = LocalStore(tmp_path / "ds")
    write_dataset(store, n_shards=6, per_shard=40, seed=1)
    return Dataset(store)


def _all_rows(ds: Dataset, version: int | None = None) -> list[dict]:
    """Every manifest row of a version, read with DuckDB over every parquet file."""
    v = ds.version(version)
    files = [str(ds.store.local_path(s.manifest_parquet_key)) for s in v.shards]
    con = duckdb.connect()
    return con.sql("SELECT * FROM read_parquet(?, union_by_name = true)", params=[files]) \
        .to_arrow_table().to_pylist()


def test_a_version_lists_its_shards_and_index_json_is_the_latest(ds):
    v = ds.version()
    assert v.number == 1 and v.num_samples == 240 and len(v.shards) == 6
    index = json.loads(ds.store.get("index.json"))
    assert index["version"] == 1
    assert [e["url"] for e in index["shardlist"]] == [f"shards/shard-{i:06d}.tar"
                                                      for i in range(6)]
    # The version file is a wids index too: its urls are relative to its own folder.
    doc = json.loads(ds.store.get("versions/v000001.json"))
    assert doc["shardlist"][0]["url"] == "../shards/shard-000000.tar"


PREDICATES = [
    "label = 'cat'",
    "label = 'cat' AND width >= 512",
    "label IN ('dog', 'bird') OR confidence > 0.9",
    "caption ILIKE '%beach%' AND NOT (height < 100)",
    "label IS NULL",
    "width BETWEEN 100 AND 200 AND source <> 'web'",
    "ingested_at >= '2026-01-20'",
]


@pytest.mark.parametrize("predicate", PREDICATES)
def test_query_answers_exactly_what_a_brute_force_scan_answers(ds, predicate):
    rows = _all_rows(ds)
    con = duckdb.connect()
    con.register("t", pa.Table.from_pylist(rows))
    expected = {r[0] for r in con.execute(f"SELECT __key__ FROM t WHERE {predicate}").fetchall()}
    result = ds.query(predicate, columns=["label", "width"])
    keys = result.table["key"].to_pylist()
    assert set(keys) == expected and len(keys) == len(expected)
    assert result.table.column_names == ["key", "shard", "offset", "size", "label", "width"]
    assert result.explain.shards_total == 6
    assert result.explain.shards_read + result.explain.shards_skipped == 6


def test_each_answer_points_at_the_samples_bytes(ds):
    result = ds.query("label = 'dog'")
    for row in result.table.to_pylist()[:10]:
        tar = ds.store.get(ds.version().shard(row["shard"]).tar_key)
        data = tar[row["offset"]:row["offset"] + row["size"]]
        with tarfile.open(fileobj=io.BytesIO(data + bytes(1024))) as t:
            names = t.getnames()
        assert names == [f"{row['key']}.txt", f"{row['key']}.json"]


def test_shards_whose_aggregates_cannot_match_are_skipped(tmp_path):
    store = LocalStore(tmp_path / "ds")
    write_dataset(store, n_shards=3, per_shard=20, seed=2)
    # Three more shards of another schema history: no label fields at all.
    write_dataset(store, n_shards=3, per_shard=20, seed=3, start_shard=3, labelled=False)
    result = Dataset(store).query("label = 'cat'")
    assert result.explain.shards_skipped >= 3
    assert set(result.table["shard"].to_pylist()) <= {f"shard-{i:06d}" for i in range(3)}
    # A predicate on the field the older shards lack still reads every row of the rest.
    assert Dataset(store).query("label IS NULL").table.num_rows >= 60


@pytest.mark.parametrize("bad", ["1; DROP TABLE x", "label = 'cat') UNION SELECT 1 --",
                                 "no_such_column = 1", "width + 1", "",
                                 "(SELECT 1) = 1"])
def test_what_is_not_a_boolean_expression_over_columns_is_refused(ds, bad):
    with pytest.raises(PredicateError):
        ds.query(bad)


def test_a_sandboxed_query_reads_no_other_file_and_keeps_its_row_limit(ds, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with pytest.raises(PredicateError):
        ds.query(f"EXISTS (SELECT * FROM read_csv('{secret}'))", limits=Limits())
    result = ds.query("width > 0", limits=Limits(max_rows=7))
    assert result.table.num_rows == 7


def test_get_reads_one_sample_by_key(ds):
    row = ds.query("label = 'bird'", limit=1).table.to_pylist()[0]
    members = ds.get(row["key"])
    assert set(members) == {"txt", "json"}
    assert json.loads(members["json"]) == {"key": row["key"]}
    assert hashlib.sha256(members["txt"]).hexdigest().startswith(row["key"])
    with pytest.raises(KeyError):
        ds.get("0" * 24)


def test_the_key_index_is_sorted_in_small_row_groups(ds):
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(ds.store.local_path(keys_key(1)))
    keys = pf.read().column("key").to_pylist()
    assert keys == sorted(keys) and len(keys) == 240


def test_the_key_index_is_written_in_key_order_a_row_group_at_a_time(tmp_path, monkeypatch):
    """Row groups in key order that do not overlap (what lets a lookup read one), for a
    version's new shards (sorted in runs, spilled, merged) and the parent's kept ones
    alike: the rows of every shard's manifest, each found."""
    import pyarrow.parquet as pq

    from autods.core import versions

    monkeypatch.setattr(versions, "KEY_ROW_GROUP", 32)
    monkeypatch.setattr(versions, "KEY_RUN", 50)  # runs of two shards, then one
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    store = LocalStore(tmp_path / "ds")
    write_dataset(store, n_shards=3, per_shard=40, seed=3)
    write_dataset(store, n_shards=2, per_shard=30, seed=4, start_shard=3, job=2)
    pf = pq.ParquetFile(store.local_path(keys_key(2)))
    bounds = [(pf.metadata.row_group(i).column(0).statistics.min,
               pf.metadata.row_group(i).column(0).statistics.max)
              for i in range(pf.metadata.num_row_groups)]
    assert len(bounds) == 6  # 180 keys, 32 a group
    assert all(lo <= hi < next_lo for (lo, hi), (next_lo, _) in
               zip(bounds, bounds[1:], strict=False))
    table = pf.read()
    assert table["key"].to_pylist() == sorted(table["key"].to_pylist())
    ds = Dataset(store)
    expected = sorted((key, s.name, offset) for s in ds.version(2).shards
                      for key, offset in zip(*pq.read_table(
                          store.local_path(s.manifest_parquet_key),
                          columns=["__key__", "__offset__"]).to_pydict().values(), strict=True))
    assert sorted(zip(table["key"].to_pylist(), table["shard"].to_pylist(),
                      table["offset"].to_pylist(), strict=True)) == expected
    assert len(expected) == 180
    for row in table.to_pylist()[::17]:
        assert hashlib.sha256(ds.get(row["key"])["txt"]).hexdigest().startswith(row["key"])
    assert not list(scratch.iterdir())  # the local file went to the store


def test_a_pinned_version_reads_the_same_after_a_later_version_and_gc(ds):
    v1 = ds.version(1)
    digests = {s.name: hashlib.sha256(ds.store.get(s.tar_key)).hexdigest() for s in v1.shards}
    assert digests == {s.name: s.sha256 for s in v1.shards}
    write_dataset(ds.store, n_shards=2, per_shard=10, seed=9, start_shard=6, job=2)
    assert list_versions(ds.store) == [1, 2]
    assert ds.version(1).names == v1.names
    assert {s.name: hashlib.sha256(ds.store.get(s.tar_key)).hexdigest()
            for s in ds.version(1).shards} == digests
    assert ds.version().num_samples == 260 and ds.version().doc["parent"] == 1
    # Version 2 kept every shard of version 1, so gc deletes no shard, only the file.
    assert ds.gc(keep=1) == {"versions_removed": 1, "objects_deleted": 0}
    with pytest.raises(LookupError):
        read_version(ds.store, 1)
    assert ds.query("width > 0").table.num_rows == 260


def test_a_view_copies_byte_ranges_and_is_cached_by_predicate_and_version(ds):
    view, target = ds.materialize("label = 'cat'", "cats", shard_size=25)
    expected = ds.query("label = 'cat'").table
    assert not view.cached and view.version.num_samples == expected.num_rows
    for shard in target.version().shards:  # what the index says is what the tar holds
        data = target.store.get(shard.tar_key)
        assert (len(data), hashlib.sha256(data).hexdigest()) == (shard.nbytes, shard.sha256)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            assert len(tar.getnames()) == 2 * shard.count
    # Each sample's bytes in the view are its bytes in the source.
    for row in target.query("width > 0").table.to_pylist():
        src = ds.query(f"__key__ = '{row['key']}'").table.to_pylist()[0]
        src_bytes = ds.store.get_range(ds.version().shard(src["shard"]).tar_key,
                                       src["offset"], src["size"])
        view_bytes = target.store.get_range(target.version().shard(row["shard"]).tar_key,
                                            row["offset"], row["size"])
        assert view_bytes == src_bytes
    again, _ = ds.materialize("LABEL   =  'cat'", "cats")
    assert again.cached and again.version.number == view.version.number
    # A new source version makes a new view version.
    write_dataset(ds.store, n_shards=1, per_shard=30, seed=11, start_shard=6, job=2)
    newer, _ = ds.materialize("label = 'cat'", "cats")
    assert not newer.cached and newer.version.number == 2
    assert newer.version.num_samples == ds.query("label = 'cat'").table.num_rows


def test_an_s3_dataset_is_queried_read_by_key_and_viewed_through_ranged_reads(s3_endpoint):
    """The same dataset on an S3 server: manifests fetched by the store, the key index and
    samples read by ranged GETs, a view written back to the bucket."""
    import boto3

    from autods.core.storage import open_store

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") \
        .create_bucket(Bucket="versions-test")
    store = open_store("s3://versions-test/pets", endpoint_url=s3_endpoint)
    write_dataset(store, n_shards=3, per_shard=30, seed=5)
    ds = Dataset(store)
    local = Dataset(LocalStore(__import__("tempfile").mkdtemp()))
    write_dataset(local.store, n_shards=3, per_shard=30, seed=5)
    remote = ds.query("label = 'fish' OR width < 100", columns=["label"]).table
    same = local.query("label = 'fish' OR width < 100", columns=["label"]).table
    assert remote.to_pylist() == same.to_pylist() and remote.num_rows > 0
    key = remote["key"][0].as_py()
    assert ds.get(key) == local.get(key)
    view, target = ds.materialize("label = 'fish'", "fish")
    assert target.store.url == "s3://versions-test/pets/views/fish"
    assert sorted(target.query("width > 0").table["key"].to_pylist()) == sorted(
        local.query("label = 'fish'").table["key"].to_pylist())
    assert view.version.num_samples == local.query("label = 'fish'").table.num_rows


def test_a_field_a_later_schema_added_is_null_in_older_shards_and_skips_them(tmp_path):
    from autods.core.schema import SAMPLE, SampleSchema
    from autods.core.shard import write_shard
    from autods.core.versions import write_version
    from tests.dsgen import sample

    store = LocalStore(tmp_path / "ds")
    rng = __import__("random").Random(8)
    older = SampleSchema(SAMPLE.name, 1, SAMPLE.fields)  # before ``caption`` was declared
    # Shards 0 and 1 were written by a writer that knew no caption.
    infos = [write_shard([sample(s * 10 + i, rng, caption=s >= 2) for i in range(10)],
                         f"shard-{s:06d}", store, {"modality": "text"},
                         schema=older if s < 2 else SAMPLE)
             for s in range(4)]

    write_version(store, "demo", infos, None, job=1, kind="build")
    ds = Dataset(store)
    old = pa.parquet.read_schema(ds.store.local_path(infos[0].manifest_parquet_key))
    assert "caption" not in old.names
    assert "caption" in ds.schema()["columns"]
    beach = ds.query("caption ILIKE '%beach%'", columns=["caption"])
    assert beach.explain.shards_skipped == 2 and beach.table.num_rows > 0
    assert set(beach.table["shard"].to_pylist()) <= {"shard-000002", "shard-000003"}
    unknown = ds.query("caption IS NULL")
    assert unknown.table.num_rows == 20 and unknown.explain.shards_read == 2
    # One glob read over every manifest of the dataset does not trip on the difference.
    rows = duckdb.sql(f"SELECT count(*), count(caption) FROM read_parquet("
                      f"'{tmp_path}/ds/shards/*.manifest.parquet', union_by_name=true)").fetchall()
    assert rows == [(40, 20)]


def test_labelled_and_unlabelled_shards_of_one_schema_have_the_same_columns(tmp_path):
    """What made a plain glob read fail before: label columns only in labelled shards."""
    store = LocalStore(tmp_path / "ds")
    write_dataset(store, n_shards=1, per_shard=5, seed=1, labelled=True)
    write_dataset(store, n_shards=1, per_shard=5, seed=2, labelled=False, start_shard=1)
    schemas = [pa.parquet.read_schema(p) for p in sorted(
        (tmp_path / "ds" / "shards").glob("*.manifest.parquet"))]
    assert schemas[0] == schemas[1]
    assert duckdb.sql(f"SELECT count(*) FROM '{tmp_path}/ds/shards/*.manifest.parquet'"
                      ).fetchall() == [(10,)]


def test_an_empty_version_answers_with_no_rows(tmp_path):
    from autods.core.versions import write_version

    store = LocalStore(tmp_path / "ds")
    write_version(store, "empty", [], None, job=1, kind="build")
    result = Dataset(store).query("label = 'cat' AND width > 3", columns=["label"])
    assert result.table.num_rows == 0 and result.explain.shards_total == 0
    assert result.table.column_names == ["key", "shard", "offset", "size", "label"]
