"""Query a dataset version from its manifests, without opening a tar.

A predicate is a SQL boolean expression over the manifest columns. First every shard whose
aggregates prove it cannot match is skipped (``autods.core.predicate``), from the version's
summary, one file; then DuckDB reads the remaining shards' ``manifest.parquet`` and filters
their rows. Shards of older schema versions lack newer columns: the read fills them with
nulls, so one query over the whole dataset never fails on schema differences.

A predicate from the network is data, not code: ``sandboxed`` runs it in a DuckDB that may
read only the listed manifests (no other file, no network, no extension) with its
configuration locked, under a row and a time limit.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from autods.core.predicate import Predicate, PredicateError, might_match, parse_predicate
from autods.core.records import ShardInfo
from autods.core.storage import LocalStore, ObjectStore
from autods.core.versions import Version, read_summary

#: Location columns every answer starts with.
LOCATION = ("key", "shard", "offset", "size")
_RESERVED = {"__key__": "key", "__offset__": "offset", "__size__": "size"}

# Arrow type names as manifests record them, and the DuckDB type a missing column takes.
_DUCKDB_TYPES = {
    "string": "VARCHAR", "large_string": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER",
    "double": "DOUBLE", "float": "FLOAT", "bool": "BOOLEAN",
    "list<item: string>": "VARCHAR[]", "list<element: string>": "VARCHAR[]",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """What a query from the network may use."""

    max_rows: int = 10_000
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Explain:
    shards_total: int
    shards_skipped: int
    shards_read: int
    rows: int


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The matching samples (``LOCATION`` columns, then the requested ones) and the plan."""

    table: pa.Table
    explain: Explain
    version: int | None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns_and_types(summary: dict[str, dict]) -> dict[str, str]:
    """Every manifest column of the version with its DuckDB type (first seen wins)."""
    types: dict[str, str] = {}
    for entry in summary.values():
        for name, arrow_type in entry.get("schema", {}).items():
            types.setdefault(name, _DUCKDB_TYPES.get(arrow_type, "VARCHAR"))
        for name in entry.get("fields", {}):
            types.setdefault(name, "VARCHAR")
    return types


def _check(pred: Predicate, types: dict[str, str], con: duckdb.DuckDBPyConnection) -> None:
    """Bind the predicate against the columns' types: unknown columns and expressions that
    are not boolean are refused before any manifest is read."""
    cols = ", ".join(f"{_quote(n)} {t}" for n, t in types.items()) or "__none__ VARCHAR"
    con.execute(f"CREATE TEMP TABLE __probe ({cols})")
    try:
        kind = con.sql(f"SELECT ({pred.sql}) AS p FROM __probe").types[0]
    except duckdb.Error as exc:
        raise PredicateError(str(exc).splitlines()[0]) from exc
    finally:
        con.execute("DROP TABLE __probe")
    if str(kind) not in ("BOOLEAN", '"NULL"', "NULL"):
        raise PredicateError(f"the predicate is {kind}, not a boolean expression")


def _select_columns(columns: Sequence[str] | None, types: dict[str, str]) -> list[str]:
    if not columns:
        return []
    if list(columns) == ["*"]:
        return list(types)
    unknown = [c for c in columns if c not in types]
    if unknown:
        raise PredicateError(f"unknown column(s): {', '.join(unknown)}")
    return list(dict.fromkeys(columns))


def _fetch_tables(store: ObjectStore, shards: list[ShardInfo]) -> pa.Table:
    """Manifests of a store DuckDB cannot read itself, fetched in parallel into one table."""
    def one(s: ShardInfo) -> pa.Table:
        t = pq.read_table(io.BytesIO(store.get(s.manifest_parquet_key)))
        return t.append_column("__shard__", pa.array([s.name] * t.num_rows, pa.string()))

    with ThreadPoolExecutor(8) as pool:
        tables = list(pool.map(one, shards))
    return pa.concat_tables(tables, promote_options="permissive")


def _connection(paths: list[str] | None, sandboxed: bool) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False,
                                 "allow_community_extensions": False})
    if sandboxed:
        con.execute("SET allowed_paths = ?", [paths or []])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


def run_query(store: ObjectStore, version: Version, predicate: str | Predicate, *,
              columns: Sequence[str] | None = None, limit: int | None = None,
              limits: Limits | None = None) -> QueryResult:
    """The samples of ``version`` matching ``predicate``; ``limits`` sandboxes the run."""
    pred = predicate if isinstance(predicate, Predicate) else parse_predicate(predicate)
    summary = read_summary(store, version)
    types = _columns_and_types(summary)
    wanted = _select_columns(columns, types)
    survivors = [s for s in version.shards if might_match(pred, _with_location(summary[s.name]))]
    if limits is not None:
        limit = min(limit or limits.max_rows, limits.max_rows)
    local = isinstance(store, LocalStore)
    paths = {str(store.local_path(s.manifest_parquet_key)): s.name
             for s in survivors} if local else {}
    con = _connection(list(paths), sandboxed=limits is not None)
    try:
        _check(pred, {**types, **_RESERVED_TYPES}, con)
        table = _read(store, con, survivors, paths, summary, types, pred, wanted, limit,
                      limits)
    finally:
        con.close()
    explain = Explain(len(version.shards), len(version.shards) - len(survivors),
                      len(survivors), table.num_rows)
    return QueryResult(table, explain, version.number)


_RESERVED_TYPES = {"__key__": "VARCHAR", "__offset__": "BIGINT", "__size__": "BIGINT"}
_NEVER_NULL = {name: {"type": "other", "nulls": 0} for name in _RESERVED_TYPES}


def _with_location(entry: dict) -> dict:
    """A shard's summary with the location columns, which every row has, for pruning."""
    return {**entry, "fields": {**entry.get("fields", {}), **_NEVER_NULL}}


def _empty(wanted: list[str], types: dict[str, str], con) -> pa.Table:
    cols = ", ".join([f"NULL::VARCHAR AS {n}" for n in ("key", "shard")]
                     + [f"NULL::BIGINT AS {n}" for n in ("offset", "size")]
                     + [f"NULL::{types[c]} AS {_quote(c)}" for c in wanted])
    return con.sql(f"SELECT {cols} LIMIT 0").to_arrow_table()


def _read(store: ObjectStore, con: duckdb.DuckDBPyConnection, survivors: list[ShardInfo],
          paths: dict[str, str], summary: dict[str, dict], types: dict[str, str],
          pred: Predicate, wanted: list[str], limit: int | None,
          limits: Limits | None) -> pa.Table:
    if not survivors:
        return _empty(wanted, types, con)
    present = {c for s in survivors for c in summary[s.name].get("schema", {})}
    # Columns no surviving shard has are all null; they still have to exist for DuckDB.
    fill = "".join(f", NULL::{types[c]} AS {_quote(c)}" for c in
                   sorted((pred.columns | set(wanted)) & set(types) - present))
    if paths:
        source = (f"(SELECT *, filename AS __shard__{fill} FROM read_parquet(?, "
                  "union_by_name = true, filename = true))")
        params: list = [list(paths)]
    else:
        con.register("__manifests", _fetch_tables(store, survivors))
        source = f"(SELECT *{fill} FROM __manifests)"
        params = []
    projection = ", ".join(["__key__ AS key", "__shard__ AS shard", "__offset__ AS offset",
                            "__size__ AS size"] + [_quote(c) for c in wanted])
    sql = f"SELECT {projection} FROM {source} WHERE ({pred.sql})"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    timer = threading.Timer(limits.timeout_s, con.interrupt) if limits else None
    if timer:
        timer.start()
    try:
        table = con.sql(sql, params=params).to_arrow_table()
    except duckdb.InterruptException as exc:
        raise PredicateError(f"the query ran past {limits.timeout_s:g} s") from exc
    except duckdb.Error as exc:
        raise PredicateError(str(exc).splitlines()[0]) from exc
    finally:
        if timer:
            timer.cancel()
    return _shard_names(table, paths) if paths else table


def _shard_names(table: pa.Table, paths: dict[str, str]) -> pa.Table:
    """The ``shard`` column read as file names, turned into shard names."""
    files = table["shard"].combine_chunks().dictionary_encode()
    names = pa.array([paths[f] for f in files.dictionary.to_pylist()], pa.string())
    shard = pa.DictionaryArray.from_arrays(files.indices, names).cast(pa.string())
    return table.set_column(table.schema.get_field_index("shard"), "shard", shard)
