"""Shard skipping over a whole version at once.

A version's ``summary.parquet`` holds one row per shard and, per manifest field, a few
columns: the aggregate's kind, its null count, its range (numbers, and times as epoch
seconds), its distinct values (categorical fields and sets, when few) and the aggregate
itself as JSON. The common predicate shapes (comparisons, IN, BETWEEN, IS NULL with AND, OR
and NOT) are decided here for every shard in one pass of array operations, in the same
three-valued logic as ``autods.core.predicate``; a shape decided only there (LIKE, list
functions, Bloom filters) sends the shards still standing to ``might_match`` one by one.
Both are sound: a shard is skipped only when its aggregates prove that no row matches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from autods.core.predicate import (
    CAST_SLACK,
    COMPARISONS,
    FLIP,
    NUMBER_SLACK,
    TEXT_SLACK,
    Const,
    Predicate,
    column_name,
    constant,
    might_match,
    parse_time,
)

SEP = "::"
PARTS = ("kind", "type", "nulls", "min", "max", "values", "agg")
_FLOATS = frozenset({"double", "float", "halffloat"})


def part(field: str, name: str) -> str:
    return f"{field}{SEP}{name}"


def _epoch(text: Any) -> float | None:
    if text is None:
        return None
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return value.timestamp()


def _row(field: str, aggregate: dict[str, Any], arrow_type: str | None) -> dict[str, Any]:
    kind = aggregate.get("type")
    low = high = None
    if kind == "numeric":
        low, high = aggregate.get("min"), aggregate.get("max")
    elif kind == "time":
        low, high = _epoch(aggregate.get("min")), _epoch(aggregate.get("max"))
    values = None
    if kind == "categorical" and "values" in aggregate:
        values = sorted(aggregate["values"])
    elif kind == "set" and "all_values" in aggregate:
        values = list(aggregate["all_values"])
    return {part(field, "kind"): kind, part(field, "type"): arrow_type,
            part(field, "nulls"): aggregate.get("nulls"),
            part(field, "min"): None if low is None else float(low),
            part(field, "max"): None if high is None else float(high),
            part(field, "values"): values,
            part(field, "agg"): json.dumps(aggregate, sort_keys=True)}


_PART_TYPES = {"kind": pa.string(), "type": pa.string(), "nulls": pa.int64(), "min": pa.float64(),
               "max": pa.float64(), "values": pa.list_(pa.string()), "agg": pa.string()}


def summary_table(entries: Iterable[tuple[str, str, dict[str, Any]]]) -> pa.Table:
    """The per-shard summary rows of (shard name, its ``manifest.parquet`` key, its
    manifest summary) triples."""
    rows, fields = [], set()
    for name, parquet_key, entry in entries:
        row = {"shard": name, "manifest_parquet": parquet_key,
               "num_samples": int(entry["num_samples"]),
               "schema_version": int(entry.get("schema_version", 1)),
               "schema": json.dumps(entry.get("schema", {}), sort_keys=True)}
        types = entry.get("schema", {})
        for field, aggregate in entry.get("fields", {}).items():
            row.update(_row(field, aggregate, types.get(field)))
            fields.add(field)
        rows.append(row)
    columns: dict[str, pa.Array] = {
        "shard": pa.array([r["shard"] for r in rows], pa.string()),
        "manifest_parquet": pa.array([r["manifest_parquet"] for r in rows], pa.string()),
        "num_samples": pa.array([r["num_samples"] for r in rows], pa.int64()),
        "schema_version": pa.array([r["schema_version"] for r in rows], pa.int64()),
        "schema": pa.array([r["schema"] for r in rows], pa.string()),
    }
    for field in sorted(fields):
        for name, kind in _PART_TYPES.items():
            key = part(field, name)
            columns[key] = pa.array([r.get(key) for r in rows], kind)
    return pa.table(columns)


def with_field(table: pa.Table, field: str, aggregate: dict[str, Any]) -> pa.Table:
    """``table`` with ``field`` summed up the same way in every shard."""
    row = _row(field, aggregate, None)
    for name, kind in _PART_TYPES.items():
        table = table.append_column(part(field, name),
                                    pa.array([row[part(field, name)]] * table.num_rows, kind))
    return table


def _names(table: pa.Table, field: str) -> list[str]:
    """The summary's fields that ``field`` names: DuckDB matches names without regard to
    case, so there may be several."""
    suffix = SEP + "agg"
    return [c[: -len(suffix)] for c in table.column_names
            if c.endswith(suffix) and c[: -len(suffix)].lower() == field.lower()]


def entry_of(table: pa.Table, i: int, fields: Iterable[str]) -> dict[str, Any]:
    """Row ``i`` as the ``might_match`` summary of the given fields (every field each
    names; ``might_match`` treats a name that means two columns as unknown)."""
    out: dict[str, Any] = {"num_samples": table["num_samples"][i].as_py(), "fields": {}}
    for field in fields:
        for name in _names(table, field):
            if (agg := table[part(name, "agg")][i].as_py()) is not None:
                out["fields"][name] = json.loads(agg)
    return out


# --- The vectorized evaluator -------------------------------------------------------------

@dataclass
class _Tri:
    """Per shard: may some row make the expression TRUE, FALSE, NULL."""

    t: np.ndarray
    f: np.ndarray
    n: np.ndarray


class _Columns:
    """The summary columns of the fields a predicate reads, as numpy arrays."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.size = table.num_rows
        self.refine = False
        self._cache: dict[str, dict[str, Any]] = {}
        self.num_samples = table["num_samples"].to_numpy()

    def get(self, field: str) -> dict[str, Any]:
        if field not in self._cache:
            self._cache[field] = self._load(field)
        return self._cache[field]

    def _load(self, field: str) -> dict[str, Any]:
        name = next(iter(_names(self.table, field)), None)
        if name is None:  # no shard has the column: NULL everywhere
            kind = np.full(self.size, None, dtype=object)
            return {"kind": kind, "present": np.zeros(self.size, bool),
                    "nulls": self.num_samples.astype(np.int64), "nan": np.zeros(self.size, bool),
                    "bool": np.zeros(self.size, bool), "min": None, "max": None,
                    "values": None}
        kind = np.array(self.table[part(name, "kind")].to_pylist(), dtype=object)
        types = np.array(self.table[part(name, "type")].to_pylist(), dtype=object)
        nulls = self.table[part(name, "nulls")].fill_null(0).to_numpy()
        present = kind != None  # noqa: E711 - elementwise
        return {"kind": kind, "present": present,
                "nulls": np.where(present, nulls, self.num_samples),
                # A float column's "nulls" count NaN and infinities, which DuckDB compares
                # as values (NaN above every number): such a column may hold anything.
                "nan": np.isin(types, list(_FLOATS)) & (nulls > 0),
                "bool": types == "bool",
                "min": self.table[part(name, "min")].to_numpy(zero_copy_only=False),
                "max": self.table[part(name, "max")].to_numpy(zero_copy_only=False),
                "values": self.table[part(name, "values")]}


def _full(size: int, value: bool) -> np.ndarray:
    return np.full(size, value, dtype=bool)


def _any(cols: _Columns) -> _Tri:
    cols.refine = True
    return _Tri(_full(cols.size, True), _full(cols.size, True), _full(cols.size, True))


def _not(a: _Tri) -> _Tri:
    return _Tri(a.f, a.t, a.n)


def _and(a: _Tri, b: _Tri) -> _Tri:
    return _Tri(a.t & b.t, a.f | b.f, (a.n & (b.t | b.n)) | (b.n & (a.t | a.n)))


def _or(a: _Tri, b: _Tri) -> _Tri:
    return _Tri(a.t | b.t, a.f & b.f, (a.n & (b.f | b.n)) | (b.n & (a.f | a.n)))


def _contains(values: pa.ChunkedArray, text: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per shard: does its value list hold ``text``; is the list exactly ``[text]``."""
    values = values.combine_chunks()
    flat = pc.list_flatten(values)
    parents = pc.list_parent_indices(values).to_numpy()
    hits = pc.equal(flat, text).fill_null(False).to_numpy(zero_copy_only=False)
    hit = np.bincount(parents[hits], minlength=size) > 0
    lengths = pc.list_value_length(values).fill_null(0).to_numpy(zero_copy_only=False)
    return hit, hit & (lengths == 1)


def _operand(kind: str, const: Const) -> tuple[float, float] | str | None:
    """``const`` as a range of floats (numbers, times) or a text; None when not comparable."""
    if kind == "numeric" and const.kind == "number":
        slack = abs(const.value) * NUMBER_SLACK
        return const.value - slack, const.value + slack
    if kind == "time":
        if const.kind == "time":
            return ((const.value - CAST_SLACK).timestamp(),
                    (const.value + CAST_SLACK).timestamp())
        if const.kind == "string" and (instant := parse_time(const.value)) is not None:
            return (instant - TEXT_SLACK).timestamp(), (instant + TEXT_SLACK).timestamp()
    if kind == "categorical":
        if const.kind == "string":
            return const.value
        if const.kind == "bool":
            return "true" if const.value else "false"
    return None


def _boolean_text(const: Const) -> bool:
    """Whether ``const`` compares with a boolean column the way its text says: DuckDB
    casts 't', 'TRUE', '1'... too, which only ``might_match`` reasons about."""
    return const.kind == "bool" or (const.kind == "string" and const.value in ("true", "false"))


def _compare(cols: _Columns, field: str, op: str, const: Const | None) -> _Tri:
    if op == "<>":
        return _not(_compare(cols, field, "=", const))
    if const is None:
        return _any(cols)
    c = cols.get(field)
    size = cols.size
    nonnull = c["present"] & ((c["nulls"] < cols.num_samples) | c["nan"])
    n = c["nulls"] > 0
    if const.kind == "null":
        return _Tri(_full(size, False), _full(size, False), _full(size, True))
    t, f = _full(size, True), _full(size, True)
    known = np.zeros(size, bool)
    for kind in ("numeric", "time", "categorical"):
        mask = c["kind"] == kind
        if not mask.any():
            continue
        operand = _operand(kind, const)
        if operand is None:
            continue
        if isinstance(operand, str):
            if op != "=":
                continue
            if not _boolean_text(const):
                mask = mask & ~c["bool"]
            listed = c["values"].is_valid().to_numpy(zero_copy_only=False)
            hit, only = _contains(c["values"], operand, size)
            t = np.where(mask, ~listed | hit, t)
            f = np.where(mask, ~(listed & only), f)
            mask = mask & listed  # values a Bloom filter holds: decided by might_match
        else:
            lo, hi = operand
            low, high = np.nan_to_num(c["min"], nan=np.inf), np.nan_to_num(c["max"], nan=-np.inf)
            low, high = np.where(c["nan"], -np.inf, low), np.where(c["nan"], np.inf, high)
            may_true, may_false = {
                "=": (low <= hi) & (high >= lo), "<": low < hi, "<=": low <= hi,
                ">": high > lo, ">=": high >= lo}[op], {
                # Equality is certain only when the shard's one value and the constant are
                # the same point, as in ``predicate._ORDER``: the slack widens what may
                # match, never what must (``ts <> t`` keeps a shard of one time near t).
                "=": ~((low == high) & (low == lo) & (high == hi)), "<": high >= lo,
                "<=": high > lo, ">": low <= hi, ">=": low < hi}[op]
            t = np.where(mask, may_true, t)
            f = np.where(mask, may_false, f)
        known |= mask
    if (c["present"] & ~known).any():
        cols.refine = True
    return _Tri(t & nonnull, f & nonnull, n)


def _truth(node: Any, cols: _Columns) -> _Tri:
    if not isinstance(node, dict):
        return _any(cols)
    kind, node_type = node.get("class"), node.get("type")
    children = node.get("children") or []
    if kind == "CONJUNCTION" and children and node_type in ("CONJUNCTION_AND", "CONJUNCTION_OR"):
        combine = _and if node_type == "CONJUNCTION_AND" else _or
        out = _truth(children[0], cols)
        for child in children[1:]:
            out = combine(out, _truth(child, cols))
        return out
    if node_type == "OPERATOR_NOT" and len(children) == 1:
        return _not(_truth(children[0], cols))
    if node_type in ("OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL") and len(children) == 1:
        if (name := column_name(children[0])) is None:
            return _any(cols)
        c = cols.get(name)
        out = _Tri(c["nulls"] > 0,
                   c["present"] & ((c["nulls"] < cols.num_samples) | c["nan"]),
                   _full(cols.size, False))
        return out if node_type == "OPERATOR_IS_NULL" else _not(out)
    if kind == "COMPARISON" and node_type in COMPARISONS:
        op = COMPARISONS[node_type]
        if (name := column_name(node.get("left"))) is not None:
            return _compare(cols, name, op, constant(node.get("right")))
        if (name := column_name(node.get("right"))) is not None:
            return _compare(cols, name, FLIP[op], constant(node.get("left")))
    if node_type == "COMPARE_IN" and len(children) >= 2 and (name := column_name(children[0])):
        out = _Tri(_full(cols.size, False), _full(cols.size, True), _full(cols.size, False))
        for child in children[1:]:
            out = _or(out, _compare(cols, name, "=", constant(child)))
        return out
    if kind == "BETWEEN" and (name := column_name(node.get("input"))):
        return _and(_compare(cols, name, ">=", constant(node.get("lower"))),
                    _compare(cols, name, "<=", constant(node.get("upper"))))
    return _any(cols)


def surviving(pred: Predicate, table: pa.Table) -> np.ndarray:
    """Per shard of the summary ``table``: may some row match ``pred``."""
    cols = _Columns(table)
    if any(len(_names(table, f)) > 1 for f in pred.columns):  # one name, two columns
        mask, cols.refine = cols.num_samples > 0, True
    else:
        mask = _truth(pred.tree, cols).t & (cols.num_samples > 0)
    if cols.refine:
        for i in np.flatnonzero(mask):
            mask[i] = might_match(pred, entry_of(table, i, pred.columns))
    return mask
