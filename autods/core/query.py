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

import functools
import io
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from autods.core.predicate import Predicate, PredicateError, parse_predicate
from autods.core.prune import PARTS, part, surviving, with_field
from autods.core.schema import SAMPLE
from autods.core.storage import LocalStore, ObjectStore
from autods.core.versions import Summary, Version

#: Location columns every answer starts with.
LOCATION = ("key", "shard", "offset", "size")
_NO_EXTENSIONS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                  "allow_community_extensions": False}

# Arrow type names as manifests record them, and the DuckDB type a missing column takes.
_DUCKDB_TYPES = {
    "string": "VARCHAR", "large_string": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER",
    "double": "DOUBLE", "float": "FLOAT", "bool": "BOOLEAN",
    "list<item: string>": "VARCHAR[]", "list<element: string>": "VARCHAR[]",
    "list<l: string>": "VARCHAR[]",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """What a query from the network may use."""

    max_rows: int = 10_000
    timeout_s: float = 10.0
    memory: str = "1GB"
    threads: int = 2


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


def _duckdb_types(columns: dict[str, str]) -> dict[str, str]:
    """Every manifest column of the version with the DuckDB type a missing one takes."""
    return {name: _DUCKDB_TYPES.get(arrow_type, "VARCHAR") for name, arrow_type in
            columns.items()}


def _check(pred: Predicate, types: dict[str, str]) -> None:
    """Bind the predicate against the columns' types: unknown columns and expressions that
    are not boolean are refused before any manifest is read."""
    problem = _problem(pred.clause, tuple(types.items()))
    if problem is not None:
        raise PredicateError(problem)


@functools.lru_cache(maxsize=512)
def _problem(clause: str, types: tuple[tuple[str, str], ...]) -> str | None:
    """What is wrong with ``clause`` over columns of these types, or None (a pure function
    of its arguments, so answers are kept). Binding runs nothing, so the shared database
    serves for predicates from anywhere."""
    cols = ", ".join(f"NULL::{t} AS {_quote(n)}" for n, t in types) or "NULL AS __none__"
    with _shared().cursor() as con:
        try:
            kind = con.sql(f"SELECT {clause} AS p FROM (SELECT {cols}) LIMIT 0").types[0]
        except duckdb.Error as exc:
            return str(exc).splitlines()[0]
    if str(kind) not in ("BOOLEAN", '"NULL"', "NULL"):
        return f"the predicate is {kind}, not a boolean expression"
    return None


def _select_columns(columns: Sequence[str] | None, types: dict[str, str]) -> list[str]:
    if not columns:
        return []
    if list(columns) == ["*"]:
        return list(types)
    unknown = [c for c in columns if c not in types]
    if unknown:
        raise PredicateError(f"unknown column(s): {', '.join(unknown)}")
    return list(dict.fromkeys(columns))


def _fetch_tables(store: ObjectStore, shards: list[tuple[str, str]]) -> pa.Table:
    """Manifests of a store DuckDB cannot read itself, fetched in parallel into one table."""
    def one(shard: tuple[str, str]) -> pa.Table:
        name, key = shard
        t = pq.read_table(io.BytesIO(store.get(key)))
        return t.append_column("__shard__", pa.array([name] * t.num_rows, pa.string()))

    with ThreadPoolExecutor(8) as pool:
        tables = list(pool.map(one, shards))
    return pa.concat_tables(tables, promote_options="permissive")


@functools.cache
def _shared() -> duckdb.DuckDBPyConnection:
    """One in-process database for trusted queries; each query runs on its own cursor.
    Opening a database costs tens of milliseconds, more than a selective query."""
    return duckdb.connect(config=_NO_EXTENSIONS)


def _connection(paths: list[str], limits: Limits | None) -> duckdb.DuckDBPyConnection:
    """A cursor of the shared database, or for a sandboxed query a database of its own
    that can read ``paths`` and nothing else, within ``limits``, configuration locked."""
    if limits is None:
        return _shared().cursor()
    con = duckdb.connect(config={**_NO_EXTENSIONS, "memory_limit": limits.memory,
                                 "threads": limits.threads})
    con.execute("SET allowed_paths = ?", [paths])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def run_query(store: ObjectStore, version: Version, predicate: str | Predicate, *,
              columns: Sequence[str] | None = None, limit: int | None = None,
              limits: Limits | None = None) -> QueryResult:
    """The samples of ``version`` matching ``predicate``; ``limits`` sandboxes the run."""
    pred = predicate if isinstance(predicate, Predicate) else parse_predicate(predicate)
    shards = Summary(store, version)
    # The declared fields exist even in a version with no shard yet (null everywhere).
    types = _duckdb_types({**{f.name: str(f.arrow_type) for f in SAMPLE.queryable()},
                           **shards.columns})
    _check(pred, {**types, **_RESERVED_TYPES})
    wanted = _select_columns(columns, types)
    referenced = _actual(pred.columns, types)
    needed = {*referenced, *wanted}  # every column the SQL below names
    parts = [part(f, p) for f in referenced for p in PARTS]
    parts += [part(f, "kind") for f in wanted]
    summary = shards.read(["shard", "manifest_parquet", "num_samples", *parts])
    reads_location = any(c in _RESERVED_TYPES for c in pred.columns)
    mask = surviving(pred, _with_location(summary) if reads_location else summary)
    picked = summary.filter(pa.array(mask))
    survivors = list(zip(picked["shard"].to_pylist(), picked["manifest_parquet"].to_pylist(),
                         strict=True))
    present = {f for f in needed if part(f, "kind") in picked.column_names
               and pc.any(pc.is_valid(picked[part(f, "kind")])).as_py()}
    if limits is not None:
        limit = min(limit or limits.max_rows, limits.max_rows)
    local = isinstance(store, LocalStore)
    paths = {str(store.local_path(key)): name for name, key in survivors} if local else {}
    con = _connection(list(paths), limits)
    try:
        table = _read(store, con, survivors, paths, types, needed - present, pred, wanted,
                      limit, limits)
    finally:
        con.close()
    explain = Explain(summary.num_rows, summary.num_rows - len(survivors), len(survivors),
                      table.num_rows)
    return QueryResult(table, explain, version.number)


def _actual(names: frozenset[str], types: dict[str, str]) -> list[str]:
    """The manifest columns the lower-cased ``names`` refer to (DuckDB ignores case)."""
    lower = {n.lower(): n for n in types}
    return [lower[n] for n in names if n in lower]


_RESERVED_TYPES = {"__key__": "VARCHAR", "__offset__": "BIGINT", "__size__": "BIGINT"}


def _with_location(summary: pa.Table) -> pa.Table:
    """The summary with the location columns, which every row of every shard has."""
    for name in _RESERVED_TYPES:
        summary = with_field(summary, name, {"type": "other", "nulls": 0})
    return summary


def _empty(wanted: list[str], types: dict[str, str],
           con: duckdb.DuckDBPyConnection) -> pa.Table:
    cols = ", ".join([f"NULL::VARCHAR AS {n}" for n in ("key", "shard")]
                     + [f"NULL::BIGINT AS {n}" for n in ("offset", "size")]
                     + [f"NULL::{types[c]} AS {_quote(c)}" for c in wanted])
    return con.sql(f"SELECT {cols} LIMIT 0").to_arrow_table()


def _read(store: ObjectStore, con: duckdb.DuckDBPyConnection,
          survivors: list[tuple[str, str]], paths: dict[str, str], types: dict[str, str],
          missing: set[str], pred: Predicate, wanted: list[str],
          limit: int | None, limits: Limits | None) -> pa.Table:
    if not survivors:
        return _empty(wanted, types, con)
    conventional = bool(paths) and all(path.endswith(f"/{name}.manifest.parquet")
                                       for path, name in paths.items())
    timer = threading.Timer(limits.timeout_s, con.interrupt) if limits else None
    if timer:
        timer.start()
    try:
        source, params = _source(store, con, survivors, paths, types, missing, conventional)
        projection = ", ".join(["__key__ AS key", "__shard__ AS shard", "__offset__ AS offset",
                                "__size__ AS size"] + [_quote(c) for c in wanted])
        sql = f"SELECT {projection} FROM {source} WHERE {pred.clause}"
        if limit is not None:
            sql = f"SELECT * FROM ({sql}\n) LIMIT {int(limit)}"
        table = con.sql(sql, params=params).to_arrow_table()
    except duckdb.InterruptException as exc:
        raise PredicateError(f"the query ran past {limits.timeout_s:g} s") from exc
    except duckdb.Error as exc:
        raise PredicateError(str(exc).splitlines()[0]) from exc
    finally:
        if timer:
            timer.cancel()
    return _shard_names(table, paths) if paths and not conventional else table


def _source(store: ObjectStore, con: duckdb.DuckDBPyConnection,
            survivors: list[tuple[str, str]], paths: dict[str, str], types: dict[str, str],
            missing: set[str], conventional: bool) -> tuple[str, list]:
    """The relation of the surviving manifests' rows, with ``__shard__``: read by DuckDB
    from local files, or fetched through the store."""
    # Columns no surviving shard has are all null; they still have to exist for DuckDB.
    fill = "".join(f", NULL::{types[c]} AS {_quote(c)}" for c in sorted(missing))
    if not paths:
        con.register("__manifests", _fetch_tables(store, survivors))
        return f"(SELECT *{fill} FROM __manifests)", []
    # The shard's name is its manifest's file name, worked out once per file by DuckDB
    # (a file name is one value per batch of rows), else mapped from the file afterwards.
    shard = (r"regexp_replace(parse_filename(__file__), '\.manifest\.parquet$', '')"
             if conventional else "__file__")
    # Unified by name: columns of shards of one schema may still come in other orders.
    union = "true" if len(paths) > 1 else "false"
    return (f"(SELECT *, {shard} AS __shard__{fill} FROM read_parquet(?, "
            f"union_by_name = {union}, filename = '__file__'))", [list(paths)])


def _shard_names(table: pa.Table, paths: dict[str, str]) -> pa.Table:
    """The ``shard`` column read as file names, turned into shard names."""
    files = table["shard"].combine_chunks().dictionary_encode()
    names = pa.array([paths[f] for f in files.dictionary.to_pylist()], pa.string())
    shard = pa.DictionaryArray.from_arrays(files.indices, names).cast(pa.string())
    return table.set_column(table.schema.get_field_index("shard"), "shard", shard)
