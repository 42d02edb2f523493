"""Shard skipping over a whole version at once: never a matching shard skipped (checked
against DuckDB on generated shards), and the same pruning power on the common shapes."""

from __future__ import annotations

from collections import Counter

import duckdb
import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autods.core.predicate import parse_predicate
from autods.core.prune import summary_table, surviving
from tests.core.test_predicate import SCHEMA, manifest_fields, predicates, rows


def _summary(tables: list[pa.Table], blooms: list[tuple[bool, bool]]) -> pa.Table:
    return summary_table(
        (f"shard-{i}", f"shards/shard-{i}.manifest.parquet",
         {"num_samples": t.num_rows,
          "schema": {f.name: str(f.type) for f in t.schema if f.name != "gone"},
          "fields": manifest_fields(t, *bloom)})
        for i, (t, bloom) in enumerate(zip(tables, blooms, strict=True)))


def test_pruning_a_version_never_skips_a_matching_shard() -> None:
    stats: Counter[str] = Counter()

    @settings(max_examples=100, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(st.tuples(rows, st.booleans(), st.booleans()), min_size=1, max_size=4),
           st.lists(predicates, min_size=1, max_size=4))
    def check(shards, sqls) -> None:
        tables = [pa.Table.from_pylist([{**r, "gone": None} for r in data], schema=SCHEMA)
                  for data, _, _ in shards]
        summary = _summary(tables, [(a, b) for _, a, b in shards])
        for sql in sqls:
            mask = surviving(parse_predicate(sql), summary)
            for i, table in enumerate(tables):
                con = duckdb.connect()
                con.register("samples", table)
                matches = con.sql(f"SELECT count(*) FROM samples WHERE ({sql}\n)").fetchall()
                con.close()
                assert mask[i] or not matches[0][0], (sql, table.to_pylist())
                stats["checked"] += 1
                stats["pruned"] += not mask[i]

    check()
    assert stats["pruned"] >= stats["checked"] // 20, stats


def _one(fields: dict, n: int = 3, schema: dict | None = None) -> pa.Table:
    return summary_table([("s", "k", {"num_samples": n, "schema": schema or {},
                                      "fields": fields})])


def test_a_float_column_with_nan_may_match_any_comparison() -> None:
    nan_shard = _one({"score": {"type": "numeric", "min": 0.2, "max": 0.2, "mean": 0.2,
                                "nulls": 1, "histogram": {"buckets": [], "counts": []}}},
                     schema={"score": "double"})
    for sql in ("score > 0.5", "score <> 0.2", "score IS NOT NULL"):
        assert surviving(parse_predicate(sql), nan_shard).tolist() == [True], sql
    int_shard = _one({"width": {"type": "numeric", "min": 2, "max": 2, "mean": 2,
                                "nulls": 1, "histogram": {"buckets": [], "counts": []}}},
                     schema={"width": "int64"})
    assert surviving(parse_predicate("width > 5"), int_shard).tolist() == [False]


def test_boolean_text_that_duckdb_casts_is_not_taken_literally() -> None:
    shard = _one({"flag": {"type": "categorical", "cardinality": 1, "nulls": 0,
                           "values": {"true": 3}}}, schema={"flag": "bool"})
    for sql in ("flag = 'TRUE'", "flag = 't'", "flag IN ('1')", "flag = true", "flag"):
        assert surviving(parse_predicate(sql), shard).tolist() == [True], sql
    assert surviving(parse_predicate("flag = false"), shard).tolist() == [False]


def test_column_names_match_without_regard_to_case() -> None:
    shard = _one({"Title": {"type": "categorical", "cardinality": 1, "nulls": 0,
                            "values": {"x": 3}},
                  "Tags": {"type": "set", "nulls": 0, "all_values": ["dog"]}})
    for sql, expected in (("title = 'x'", True), ("TITLE = 'y'", False),
                          ("list_contains(tags, 'dog')", True),
                          ("list_contains(Tags, 'cat')", False),
                          ("Title LIKE 'x%'", True), ("title LIKE 'y%'", False)):
        assert surviving(parse_predicate(sql), shard).tolist() == [expected], sql


def test_a_categorical_known_only_by_its_bloom_filter_is_still_pruned() -> None:
    from autods.core.bloom import BloomFilter

    shard = _one({"url": {"type": "categorical", "cardinality": 300, "nulls": 0,
                          "bloom": BloomFilter.of([f"u{i}" for i in range(300)]).to_json()}},
                 n=300)
    assert surviving(parse_predicate("url = 'u7'"), shard).tolist() == [True]
    assert surviving(parse_predicate("url = 'nowhere'"), shard).tolist() == [False]
    assert isinstance(surviving(parse_predicate("url = 'u7'"), shard), np.ndarray)


def test_a_shard_of_one_value_near_the_constant_is_kept_for_not_equal() -> None:
    """The constant's slack (a time literal's zone, a float's rounding) widens what may
    match, never what must: ``<>`` is true for a value 500 µs or 1e-7 away."""
    from datetime import datetime

    from tests.core.test_predicate import SCHEMA

    base = dict.fromkeys(SCHEMA.names)
    near = [{**base, "ts": datetime(2025, 1, 1, 0, 0, 1, 500), "score": 0.2000001}]
    same = [{**base, "ts": datetime(2025, 1, 1, 0, 0, 1), "score": 0.0}]
    summary = _summary([pa.Table.from_pylist(data, schema=SCHEMA) for data in (near, same)],
                       [(False, False)] * 2)
    for sql, expected in (("TIMESTAMP '2025-01-01 00:00:01' <> ts", [True, True]),
                          ("score <> 0.2", [True, True]), ("score <> 0", [True, False]),
                          ("score = 0.2", [True, False])):
        assert surviving(parse_predicate(sql), summary).tolist() == expected, sql
        for i, data in enumerate((near, same)):
            con = duckdb.connect()
            con.register("samples", pa.Table.from_pylist(data, schema=SCHEMA))
            hits = con.sql(f"SELECT count(*) FROM samples WHERE {sql}").fetchall()[0][0]
            assert expected[i] or not hits, (sql, i)
