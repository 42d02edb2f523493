"""Row predicates: parse a user's SQL filter, and skip shards whose aggregates refute it.

A query selects samples with a DuckDB boolean expression over the per-sample columns,
e.g. ``label = 'cat' AND width >= 256 AND caption ILIKE '%beach%'``. Before any
per-sample parquet is read, each shard's ``manifest.json`` aggregates are checked: a shard
is skipped only when they *prove* no row satisfies the predicate.

Parsing uses DuckDB's own parser (``json_serialize_sql``) on the predicate wrapped as the
WHERE clause of ``SELECT * FROM samples``, and accepts the text only when the result is
exactly that query with nothing else around the expression. Type checking is left to the
caller, who binds the expression against the real columns.

Pruning evaluates the expression tree in SQL's three-valued logic over *sets* of truth
values: for every node, which of TRUE, FALSE and NULL some row of the shard could produce.
Each set may hold more than can really occur, never less, so a shard is skipped only when
TRUE is impossible at the root. Understood: AND, OR, NOT; comparisons, IN and BETWEEN of
a column with literals (also cast ones); IS [NOT] NULL; [NOT] [I]LIKE on known values;
``list_contains``, ``list_has_any`` and ``= ANY`` on list columns; boolean columns.
Literals are widened wherever DuckDB's coercions could move them (float rounding, the
session time zone, text order of ISO times). Whatever is not understood may be anything.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

import duckdb

from autods.core.bloom import BloomFilter

MAX_PREDICATE_CHARS = 10_000
# How deeply DuckDB's JSON AST may nest (about two levels per operator): deep enough for
# any sensible filter, shallow enough that walking it never exhausts Python's stack.
_MAX_DEPTH = 400
_TOO_DEEP = "the predicate is nested too deeply"
_TABLE = "samples"
_NOT_AN_EXPRESSION = (
    "the predicate must be a single boolean expression over the columns of "
    f"{_TABLE}, with no other SQL around it"
)
_FORBIDDEN = {
    "SUBQUERY": "subqueries are not allowed in a predicate",
    "PARAMETER": "prepared-statement parameters (?, $1) are not allowed in a predicate",
    "STAR": "* and COLUMNS(...) are not allowed in a predicate",
    "WINDOW": "window functions are not allowed in a predicate",
}
_LOCATION_KEYS = frozenset({"query_location", "query_location_length"})


class PredicateError(ValueError):
    """The text is not a single boolean SQL expression over columns."""


@dataclass(frozen=True)
class Predicate:
    """A validated predicate: the text, DuckDB's AST of it, and the columns it reads."""

    sql: str
    tree: dict
    columns: frozenset[str]

    def canonical(self) -> str:
        """The parse tree as JSON, without source positions and with column names
        lower-cased (DuckDB matches them without regard to case): equal for predicates
        that differ only in spacing or in the case of their names."""
        return json.dumps(_lower_columns(_strip(self.tree)), sort_keys=True)

    @property
    def clause(self) -> str:
        """The predicate in parentheses, to paste into SQL: the closing one on a line of
        its own, so a trailing ``--`` comment cannot swallow what comes after."""
        return f"({self.sql}\n)"


@functools.cache
def _parser() -> duckdb.DuckDBPyConnection:
    """One in-memory database for parsing; each call parses on its own cursor (thread-safe)."""
    return duckdb.connect()


def _serialize(where: str) -> dict:
    with _parser().cursor() as cursor:
        row = cursor.execute(
            # The newline ends a trailing ``--`` comment before the closing parenthesis,
            # so a comment can never swallow what follows the predicate.
            "SELECT json_serialize_sql(?)", [f"SELECT * FROM {_TABLE} WHERE ({where}\n)"]
        ).fetchone()
    return json.loads(row[0])


def _lower_columns(tree: Any) -> Any:
    if isinstance(tree, list):
        return [_lower_columns(v) for v in tree]
    if not isinstance(tree, dict):
        return tree
    out = {k: _lower_columns(v) for k, v in tree.items()}
    if out.get("class") == "COLUMN_REF":
        out["column_names"] = [c.lower() for c in out.get("column_names", [])]
    return out


def _strip(tree: Any) -> Any:
    """``tree`` without source positions, so that shapes compare equal across texts."""
    if isinstance(tree, dict):
        return {k: _strip(v) for k, v in tree.items() if k not in _LOCATION_KEYS}
    if isinstance(tree, list):
        return [_strip(v) for v in tree]
    return tree


def _shell(statement: dict) -> dict:
    """A parsed statement without its WHERE expression or source positions."""
    shell = _strip(statement)
    shell["node"]["where_clause"] = None
    return shell


@functools.cache
def _reference_shell() -> dict:
    """What ``SELECT * FROM samples WHERE (...)`` parses to around the expression."""
    return _shell(_serialize("TRUE")["statements"][0])


def _cut_unnest(subquery: dict) -> tuple[dict, Any]:
    """``subquery``, a ``SELECT unnest(e)``, with ``e`` cut out; and ``e``."""
    cut = copy.deepcopy(subquery)
    argument = cut["node"]["select_list"][0]["arguments"][0]
    expression, argument["expression"] = argument["expression"], None
    return cut, expression


@functools.cache
def _reference_membership() -> dict:
    """The subquery DuckDB builds for ``x = ANY(list)``, with ``list`` cut out."""
    tree = _serialize("NULL = ANY(NULL)")["statements"][0]["node"]["where_clause"]
    return _cut_unnest(_strip(tree["subquery"]))[0]


def _membership_list(node: dict) -> Any:
    """The list of ``x op ANY(list)``, or None when ``node`` is any other subquery.

    DuckDB spells list membership as a subquery over ``unnest(list)``; that one reads no
    table, so it is allowed where real subqueries are not.
    """
    if node.get("subquery_type") != "ANY":
        return None
    try:
        cut, expression = _cut_unnest(_strip(node["subquery"]))
    except (KeyError, IndexError, TypeError):
        return None
    return expression if cut == _reference_membership() else None


# Functions that read the engine's settings, environment or catalog: a row filter has no
# use for them, and over the network they would leak what the server is configured with.
_INTROSPECTION = ("current_", "getenv", "duckdb_", "pragma_", "version", "pg_", "has_",
                  "which_secret", "get_current")


def _introspects(name: str) -> bool:
    return name.lower().startswith(_INTROSPECTION)


def _collect_columns(tree: Any, bound: frozenset[str], columns: set[str], depth: int = 0) -> None:
    """Add the columns ``tree`` reads to ``columns``; reject what a row filter may not hold.

    ``bound`` are lambda parameters in scope, which look like columns but are not.
    """
    if depth > _MAX_DEPTH:
        raise PredicateError(_TOO_DEEP)
    if isinstance(tree, list):
        for item in tree:
            _collect_columns(item, bound, columns, depth + 1)
        return
    if not isinstance(tree, dict):
        return
    kind = tree.get("class")
    if kind == "SUBQUERY" and (listed := _membership_list(tree)) is not None:
        _collect_columns([tree.get("child"), listed], bound, columns, depth + 1)
    elif kind in _FORBIDDEN:
        raise PredicateError(_FORBIDDEN[kind])
    elif kind == "COLUMN_REF":
        names = tree.get("column_names") or []
        if len(names) != 1:
            raise PredicateError(
                f"column {'.'.join(names)!r} is qualified; use plain column names"
            )
        if names[0].lower() not in bound:
            columns.add(names[0].lower())
    elif kind == "FUNCTION" and _introspects(str(tree.get("function_name", ""))):
        raise PredicateError(f"{tree.get('function_name')}() reads the database's settings or "
                             "state, not a sample; it is not allowed in a predicate")
    elif kind == "LAMBDA":
        params: set[str] = set()
        _collect_columns(tree.get("lhs"), frozenset(), params, depth + 1)
        _collect_columns(tree.get("expr"), bound | params, columns, depth + 1)
    else:
        for value in tree.values():
            _collect_columns(value, bound, columns, depth + 1)


def parse_predicate(sql: str) -> Predicate:
    """Validate ``sql`` as one boolean expression over columns; raise ``PredicateError``.

    Parsing is pure, so the last few hundred answers are kept (a service or a notebook
    asks the same questions again); the predicates returned are not to be changed.
    """
    return _parse_text(sql.strip())


@functools.lru_cache(maxsize=512)
def _parse_text(text: str) -> Predicate:
    if not text:
        raise PredicateError("the predicate is empty")
    if len(text) > MAX_PREDICATE_CHARS:
        raise PredicateError(f"the predicate is longer than {MAX_PREDICATE_CHARS} characters")
    try:
        return _parse(text)
    except RecursionError as exc:  # reading or walking DuckDB's JSON
        raise PredicateError(_TOO_DEEP) from exc


def _parse(text: str) -> Predicate:
    doc = _serialize(text)
    if doc.get("error"):
        if doc.get("error_type") != "parser":
            raise PredicateError(_NOT_AN_EXPRESSION)
        message = " ".join(str(doc.get("error_message", "")).split())
        raise PredicateError(f"not a valid SQL expression: {message}")
    statements = doc.get("statements") or []
    node = statements[0].get("node") if len(statements) == 1 else None
    if not isinstance(node, dict) or node.get("type") != "SELECT_NODE":
        raise PredicateError(_NOT_AN_EXPRESSION)
    tree = node.get("where_clause")
    columns: set[str] = set()
    _collect_columns(tree, frozenset(), columns)  # first, for its more specific reasons
    if _shell(statements[0]) != _reference_shell():
        raise PredicateError(_NOT_AN_EXPRESSION)
    return Predicate(sql=text, tree=tree, columns=frozenset(columns))


# --- Three-valued outcome sets -------------------------------------------------------


class _Tri(IntEnum):
    """SQL truth values, ordered so that AND is min and OR is max (Kleene's logic)."""

    FALSE = 0
    NULL = 1
    TRUE = 2


_Outcomes = frozenset[_Tri]
_NONE: _Outcomes = frozenset()
_T: _Outcomes = frozenset({_Tri.TRUE})
_F: _Outcomes = frozenset({_Tri.FALSE})
_N: _Outcomes = frozenset({_Tri.NULL})
_BOOL: _Outcomes = _T | _F
_ANY: _Outcomes = frozenset(_Tri)


def _when(condition: bool, outcomes: _Outcomes) -> _Outcomes:
    return outcomes if condition else _NONE


def _not(a: _Outcomes) -> _Outcomes:
    return frozenset(_Tri(2 - x) for x in a)


def _and(a: _Outcomes, b: _Outcomes) -> _Outcomes:
    return frozenset(min(x, y) for x in a for y in b)


def _or(a: _Outcomes, b: _Outcomes) -> _Outcomes:
    return frozenset(max(x, y) for x in a for y in b)


# --- What an aggregate proves about a column --------------------------------------------

# A float literal, or a float column, may be rounded (to float32, to double) on the way
# to a comparison; widening by this relative margin keeps every such rounding inside.
NUMBER_SLACK = 1e-6
# A typed time literal may be read in the session time zone (at most 14 h off UTC).
CAST_SLACK = timedelta(days=1)
# A bare string literal against a string column of ISO times compares as text, which
# orders like the values' local dates: at most a day and 14 h off their UTC instants.
TEXT_SLACK = timedelta(days=3)
_ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)
_INF = math.inf


@dataclass(frozen=True)
class _Column:
    """What a shard's aggregate proves about one column.

    ``kind`` says how values compare: number, string, bool (as the texts "true" and
    "false", which order like DuckDB's booleans), time, set (a list of strings), opaque
    (only null-ness known), absent (NULL in every row) or unknown. ``ranges`` are closed
    ranges covering every non-NULL value, when known; ``members`` every element of a set
    column's lists, when known; ``bloom`` a filter holding every (element) value.
    """

    kind: str
    nulls: bool = True
    present: bool = True
    ranges: tuple[tuple[Any, Any], ...] | None = None
    members: frozenset[str] | None = None
    bloom: BloomFilter | None = None
    integral: bool = False

    def may_hold(self, value: str) -> bool:
        """Whether some (list element) value may equal ``value``, by the value summaries."""
        if self.members is not None:
            return value in self.members
        return self.bloom is None or value in self.bloom


_UNKNOWN = _Column("unknown")
_ABSENT = _Column("absent", nulls=True, present=False)


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _instant(text: Any) -> datetime:
    """An ISO time as an aware UTC datetime; naive times are UTC, as the manifest writes."""
    if not isinstance(text, str):
        raise TypeError(f"not an ISO time: {text!r}")
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _strings(values: Any) -> list[str]:
    if not all(isinstance(v, str) for v in values):
        raise TypeError("values must be strings")
    return list(values)


def _buckets(histogram: Any, low: float, high: float) -> tuple[tuple[float, float], ...]:
    """The non-empty histogram buckets, slightly widened; ``((low, high),)`` if unusable.

    Widening covers floating-point error in how values were assigned to buckets.
    """
    edges, counts = histogram.get("buckets"), histogram.get("counts")
    usable = (
        isinstance(edges, list)
        and isinstance(counts, list)
        and len(edges) == len(counts) + 1
        and all(_finite(e) for e in edges)
        and all(type(c) is int and c >= 0 for c in counts)
        and edges == sorted(edges)
        and edges[0] == low
        and edges[-1] == high
    )
    if not usable:
        return ((low, high),)
    slop = 1e-9 * max(abs(low), abs(high))
    ranges = tuple(
        (max(low, edges[i] - slop), min(high, edges[i + 1] + slop))
        for i, count in enumerate(counts)
        if count
    )
    return ranges or ((low, high),)


def _numeric(aggregate: dict, nulls: bool) -> _Column:
    low, high = aggregate["min"], aggregate["max"]
    if low is None and high is None:
        ranges: tuple[tuple[Any, Any], ...] = ()
    elif _finite(low) and _finite(high) and low <= high:
        ranges = _buckets(aggregate.get("histogram") or {}, low, high)
    else:
        raise ValueError(f"bad numeric range {low!r}..{high!r}")
    integral = type(low) is int and type(high) is int
    if nulls and not integral:
        # The writer counts NaN and infinities with the nulls; DuckDB orders NaN above
        # +inf, so both compare as +inf does with any finite constant.
        ranges += ((-_INF, -_INF), (_INF, _INF))
    return _Column("number", nulls, bool(ranges), ranges, integral=integral)


def _summarize(aggregate: dict, num_samples: int | None) -> _Column:
    count = aggregate["nulls"]
    if type(count) is not int or count < 0:
        raise ValueError(f"bad null count {count!r}")
    nulls = count > 0
    rows = num_samples is None or num_samples > count
    bloom = aggregate.get("bloom")
    bloom = None if bloom is None else BloomFilter.from_json(bloom)
    kind = aggregate["type"]
    if kind == "categorical":
        values = aggregate.get("values")
        if values is None:
            return _Column("string", nulls, rows, bloom=bloom)
        keys = sorted(_strings(values))
        is_bool = bool(keys) and set(keys) <= {"true", "false"}
        ranges = tuple((k, k) for k in keys)
        return _Column("bool" if is_bool else "string", nulls, bool(keys), ranges)
    if kind == "numeric":
        return _numeric(aggregate, nulls)
    if kind == "time":
        low, high = aggregate["min"], aggregate["max"]
        if low is None and high is None:
            return _Column("time", nulls, False, ())
        lo, hi = _instant(low), _instant(high)
        if lo > hi:
            raise ValueError(f"bad time range {low!r}..{high!r}")
        return _Column("time", nulls, True, ((lo, hi),))
    if kind == "set":
        listed = aggregate.get("all_values")
        members = None if listed is None else frozenset(_strings(listed))
        return _Column("set", nulls, rows, members=members, bloom=bloom)
    if kind == "other":
        return _Column("opaque", nulls, rows)
    return _UNKNOWN


class _Shard:
    """A shard's columns by lower-cased name, summarized on first use."""

    def __init__(self, shard: dict) -> None:
        n = shard.get("num_samples")
        self.num_samples = n if type(n) is int else None
        fields = shard.get("fields")
        self._fields: dict[str, Any] | None = None
        if isinstance(fields, dict):
            self._fields = {}
            for name, aggregate in fields.items():
                key = str(name).lower()
                # Two fields differing only in case: which one DuckDB binds is unclear.
                self._fields[key] = None if key in self._fields else aggregate
        self._columns: dict[str, _Column] = {}

    def column(self, name: str) -> _Column:
        if self._fields is None:
            return _UNKNOWN
        if name not in self._fields:
            return _ABSENT
        if name not in self._columns:
            aggregate = self._fields[name]
            try:
                column = _UNKNOWN if aggregate is None else _summarize(aggregate, self.num_samples)
            except (KeyError, TypeError, ValueError, AttributeError):
                column = _UNKNOWN  # a malformed aggregate proves nothing
            self._columns[name] = column
        return self._columns[name]


# --- Constants --------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    """A literal: kind null, number, string, bool or time; integers are ``exact``."""

    kind: str
    value: Any = None
    exact: bool = False


_TEXT_TYPES = frozenset({"VARCHAR", "TEXT", "STRING", "CHAR", "BPCHAR"})
_TIME_TYPES = frozenset({
    "TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE", "DATETIME", "DATE",
    "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_US", "TIMESTAMP_NS",
})
_FLOAT_TYPES = frozenset({"DOUBLE", "FLOAT", "REAL", "FLOAT4", "FLOAT8"})
_INTEGER_TYPES = frozenset({
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT", "INT", "INT1", "INT2", "INT4", "INT8", "DECIMAL",
    "NUMERIC",
})


def parse_time(text: str) -> datetime | None:
    if not _ISO_TIME.fullmatch(text):
        return None
    try:
        return _instant(text)
    except ValueError:
        return None


def _literal(literal: Any) -> Const | None:
    if not isinstance(literal, dict):
        return None
    kind, text = literal.get("kind"), literal.get("text")
    if kind == "NULL_LITERAL":
        return Const("null")
    if not isinstance(text, str):
        return None
    if kind == "STRING":
        return Const("string", text)
    if kind == "BOOLEAN" and text.lower() in ("true", "false"):
        return Const("bool", text.lower() == "true")
    try:
        if kind == "INTEGER":
            number = int(text)
            float(number)  # past the float range, slack arithmetic would overflow
            return Const("number", number, exact=True)
        if kind == "NUMERIC":
            number = float(text)
            return Const("number", number) if math.isfinite(number) else None
    except (ValueError, OverflowError):
        return None
    return None


def _cast(const: Const, type_name: str) -> Const | None:
    """``const`` cast to ``type_name``, when that is certain to keep its meaning here."""
    if const.kind == "null":
        return const
    if type_name in _TEXT_TYPES:
        return const if const.kind == "string" else None
    if type_name in _TIME_TYPES:
        if const.kind == "string" and (instant := parse_time(const.value)) is not None:
            return Const("time", instant)
        return None
    if type_name in _FLOAT_TYPES:
        return Const("number", const.value) if const.kind == "number" else None
    if type_name in _INTEGER_TYPES:
        return const if const.kind == "number" and const.exact else None
    if type_name in ("BOOLEAN", "BOOL"):
        return const if const.kind == "bool" else None
    return None


def constant(node: Any) -> Const | None:
    """The literal ``node`` stands for, or None when it is not a plain literal."""
    if not isinstance(node, dict):
        return None
    if node.get("class") == "CONSTANT":
        return _literal(node.get("literal"))
    if node.get("class") == "CAST" and not node.get("try_cast"):
        child = constant(node.get("child"))
        type_name = str((node.get("type_expr") or {}).get("type_name", "")).upper()
        return None if child is None else _cast(child, type_name)
    return None


def column_name(node: Any) -> str | None:
    if isinstance(node, dict) and node.get("class") == "COLUMN_REF":
        names = node.get("column_names") or []
        if len(names) == 1 and isinstance(names[0], str):
            return names[0].lower()
    return None


# --- Row tests --------------------------------------------------------------------------

_Range = tuple[Any, Any]


def _operand(column: _Column, const: Const) -> _Range | None:
    """``const`` as a range in ``column``'s order, wide enough for every way DuckDB may
    coerce it; None when this module cannot tell how they compare.
    """
    kind, value = const.kind, const.value
    if column.kind == "number" and kind == "number":
        if const.exact and column.integral:
            return value, value
        slack = abs(value) * NUMBER_SLACK
        return value - slack, value + slack
    if column.kind == "string" and kind == "string":
        return value, value
    if column.kind == "bool":
        if kind == "bool":
            text = "true" if value else "false"
            return text, text
        if kind == "string" and value in ("true", "false"):
            return value, value
    if column.kind == "time":
        if kind == "time":
            return value - CAST_SLACK, value + CAST_SLACK
        if kind == "string" and (instant := parse_time(value)) is not None:
            return instant - TEXT_SLACK, instant + TEXT_SLACK
    return None


_ORDER: dict[str, Callable[[Any, Any, Any, Any], tuple[bool, bool]]] = {
    # For x in [lo, hi] and c in [clo, chi]: can ``x op c`` be TRUE, can it be FALSE?
    "=": lambda lo, hi, clo, chi: (lo <= chi and clo <= hi, not lo == hi == clo == chi),
    "<": lambda lo, hi, clo, chi: (lo < chi, hi >= clo),
    "<=": lambda lo, hi, clo, chi: (lo <= chi, hi > clo),
    ">": lambda lo, hi, clo, chi: (hi > clo, lo <= chi),
    ">=": lambda lo, hi, clo, chi: (hi >= clo, lo < chi),
}
FLIP = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
COMPARISONS = {
    "COMPARE_EQUAL": "=",
    "COMPARE_NOTEQUAL": "<>",
    "COMPARE_LESSTHAN": "<",
    "COMPARE_LESSTHANOREQUALTO": "<=",
    "COMPARE_GREATERTHAN": ">",
    "COMPARE_GREATERTHANOREQUALTO": ">=",
}


def _order(op: str, value: _Range, operand: _Range | None) -> _Outcomes:
    """Outcomes of ``x op c`` for x in ``value``; a None operand is a NULL constant."""
    if operand is None:
        return _N
    true, false = _ORDER[op](*value, *operand)
    return _when(true, _T) | _when(false, _F)


def _rows(column: _Column, test: Callable[[_Range], _Outcomes], fallback: _Outcomes) -> _Outcomes:
    """Outcomes of a row test over the shard: ``test`` on each range of non-NULL values
    (``fallback`` for them when their ranges are unknown), and NULL for NULL rows.
    """
    out = _when(column.nulls, _N)
    if not column.present:
        return out
    if column.ranges is None:
        return out | fallback
    for value in column.ranges:
        out |= test(value)
    return out


def _opaque(column: _Column, outcomes: _Outcomes = _ANY) -> _Outcomes:
    """A row test this module cannot evaluate: ``outcomes`` for non-NULL rows, NULL for
    NULL rows (a comparison, IN, BETWEEN or LIKE with a NULL input is NULL).
    """
    return _when(column.nulls, _N) | _when(column.present, outcomes)


def _operands(column: _Column, consts: Iterable[Const | None]) -> list[_Range | None] | None:
    """Each constant as an operand (None for NULL); None if any is not comparable."""
    operands: list[_Range | None] = []
    for const in consts:
        if const is None:
            return None
        if const.kind == "null":
            operands.append(None)
        elif (operand := _operand(column, const)) is None:
            return None
        else:
            operands.append(operand)
    return operands


def _in(column: _Column, consts: list[Const | None]) -> _Outcomes:
    """``x IN (c1, c2, ...)``, i.e. ``x = c1 OR x = c2 ...``, row by row."""
    operands = _operands(column, consts)
    if operands is None:
        return _opaque(column)

    def test(value: _Range) -> _Outcomes:
        out = _F
        for operand in operands:
            out = _or(out, _order("=", value, operand))
        return out

    # Without known values, a Bloom filter can still refute equality with strings.
    texts = [c.value for c in consts if c is not None and c.kind == "string"]
    refuted = column.kind == "string" and not any(column.may_hold(t) for t in texts)
    return _rows(column, test, (_F if refuted else _ANY) | _when(None in operands, _N))


def _compare(column: _Column, op: str, const: Const | None) -> _Outcomes:
    if op == "<>":
        return _not(_compare(column, "=", const))
    if op == "=":
        return _in(column, [const])
    operands = _operands(column, [const])
    if operands is None:
        return _opaque(column)
    return _rows(column, lambda value: _order(op, value, operands[0]), _ANY)


def _between(column: _Column, low: Const | None, high: Const | None) -> _Outcomes:
    operands = _operands(column, [low, high])
    if operands is None:
        return _opaque(column)
    lower, upper = operands
    return _rows(
        column, lambda value: _and(_order(">=", value, lower), _order("<=", value, upper)), _ANY
    )


_ONE, _MANY = object(), object()  # LIKE's ``_`` and ``%``


def _like_tokens(pattern: str, escape: str) -> list[object] | None:
    """DuckDB's LIKE pattern as tokens: characters, ``_`` (any one), ``%`` (any text).

    ``escape`` quotes the next character; there is none unless one is given. None for a
    pattern DuckDB rejects (ending in the escape character).
    """
    tokens: list[object] = []
    chars = iter(pattern)
    for char in chars:
        if escape and char == escape:
            quoted = next(chars, None)
            if quoted is None:
                return None
            tokens.append(quoted)
        else:
            tokens.append(_MANY if char == "%" else _ONE if char == "_" else char)
    return tokens


def _like_match(text: str, tokens: list[object]) -> bool:
    """Whether ``text`` matches ``tokens``, in O(len(text) * len(tokens)) at worst (a regex
    could backtrack exponentially on a hostile pattern).
    """
    t = p = 0
    star, resume = -1, 0  # the last ``%`` seen, and where its match would grow from
    while t < len(text):
        if p < len(tokens) and (tokens[p] is _ONE or tokens[p] == text[t]):
            t, p = t + 1, p + 1
        elif p < len(tokens) and tokens[p] is _MANY:
            star, resume, p = p, t, p + 1
        elif star >= 0:
            resume += 1
            t, p = resume, star + 1
        else:
            return False
    return all(token is _MANY for token in tokens[p:])


def _like(column: _Column, args: list[Any], fold: bool) -> _Outcomes:
    """``x [I]LIKE pattern [ESCAPE e]`` on a column of known text values."""
    consts = [constant(a) for a in args[1:]]
    if any(c is not None and c.kind == "null" for c in consts):
        return _N
    if column.kind not in ("string", "bool", "absent") or not all(
        c is not None and c.kind == "string" for c in consts
    ):
        return _opaque(column)
    pattern = consts[0].value
    escape = consts[1].value if len(consts) > 1 else ""
    # ILIKE lower-cases both sides; only ASCII is certain to lower-case as in Python.
    if fold and (not pattern.isascii() or escape.isalpha()):
        return _opaque(column, _BOOL)
    tokens = _like_tokens(pattern.lower() if fold else pattern, escape)
    if len(escape) > 1 or tokens is None:
        return _opaque(column)

    def test(value: _Range) -> _Outcomes:
        text = value[0]
        if fold and not text.isascii():
            return _BOOL
        return _T if _like_match(text.lower() if fold else text, tokens) else _F

    return _rows(column, test, _BOOL)


def _contains(column: _Column, consts: list[Const | None]) -> _Outcomes:
    """``list_contains(x, c)`` / ``list_has_any(x, [c, ...])``: NULL for a NULL list,
    and NULL list elements never match.
    """
    if column.kind not in ("set", "absent") or not all(
        c is not None and c.kind in ("string", "null") for c in consts
    ):
        return _ANY
    hit = any(c.kind == "string" and column.may_hold(c.value) for c in consts)
    return _when(column.nulls, _N) | _when(column.present, _F | _when(hit, _T))


def _any_equal(column: _Column, const: Const | None) -> _Outcomes:
    """``c = ANY(x)``: FALSE for a NULL or empty list, NULL when x holds NULL elements."""
    if column.kind not in ("set", "absent") or const is None:
        return _ANY
    if const.kind not in ("string", "null"):
        return _ANY
    hit = const.kind == "string" and column.may_hold(const.value)
    return _when(column.nulls, _F) | _when(column.present, _F | _N | _when(hit, _T))


_LIKE = {  # function name -> (case-insensitive, negated)
    "~~": (False, False),
    "!~~": (False, True),
    "~~*": (True, False),
    "!~~*": (True, True),
    "like_escape": (False, False),
    "not_like_escape": (False, True),
    "ilike_escape": (True, False),
    "not_ilike_escape": (True, True),
}
_CONTAINS = frozenset({"list_contains", "array_contains", "list_has", "array_has"})
_HAS_ANY = frozenset({"list_has_any", "array_has_any"})


def _list_items(node: Any) -> list[Const | None] | None:
    """The constants of a ``[a, b, ...]`` list literal, or None if it is not one."""
    if not (isinstance(node, dict) and node.get("class") == "FUNCTION"):
        return None
    if node.get("function_name") != "list_value" or node.get("schema"):
        return None
    return [constant(a.get("expression")) for a in node.get("arguments") or []]


def _function(node: dict, shard: _Shard) -> _Outcomes:
    name = str(node.get("function_name", "")).lower()
    if node.get("schema") or node.get("catalog"):
        return _ANY
    args = [a.get("expression") for a in node.get("arguments") or []]
    if name in _LIKE and len(args) == (3 if name.endswith("escape") else 2):
        column = column_name(args[0])
        if column is None:
            return _ANY
        fold, negated = _LIKE[name]
        out = _like(shard.column(column), args, fold)
        return _not(out) if negated else out
    if name in _CONTAINS and len(args) == 2 and (column := column_name(args[0])):
        const = constant(args[1])
        if const is not None and const.kind == "null":
            return _N  # unlike list_has_any, list_contains(x, NULL) is NULL
        return _contains(shard.column(column), [const])
    if name in _HAS_ANY and len(args) == 2:
        for listed, items in ((args[0], args[1]), (args[1], args[0])):
            column, consts = column_name(listed), _list_items(items)
            if column is not None and consts is not None:
                return _contains(shard.column(column), consts)
    return _ANY


def _truth(node: Any, shard: _Shard) -> _Outcomes:
    """Which truth values ``node`` may take on some row of ``shard``."""
    if not isinstance(node, dict):
        return _ANY
    kind, node_type = node.get("class"), node.get("type")
    children = node.get("children") or []
    if kind == "CONJUNCTION" and children and node_type in ("CONJUNCTION_AND", "CONJUNCTION_OR"):
        combine = _and if node_type == "CONJUNCTION_AND" else _or
        out = _truth(children[0], shard)
        for child in children[1:]:
            out = combine(out, _truth(child, shard))
        return out
    if node_type == "OPERATOR_NOT" and len(children) == 1:
        return _not(_truth(children[0], shard))
    if node_type in ("OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL") and len(children) == 1:
        out = _is_null(children[0], shard)
        return out if node_type == "OPERATOR_IS_NULL" else _not(out)
    if kind == "CONSTANT":
        const = constant(node)
        if const is not None and const.kind == "null":
            return _N
        if const is not None and const.kind == "bool":
            return _T if const.value else _F
        return _ANY
    if kind == "COLUMN_REF" and (name := column_name(node)):
        column = shard.column(name)
        if column.kind != "bool" and column.present:
            return _ANY
        return _rows(column, lambda value: _T if value[0] == "true" else _F, _ANY)
    if kind == "COMPARISON" and node_type in COMPARISONS:
        op = COMPARISONS[node_type]
        left, right = node.get("left"), node.get("right")
        if (name := column_name(left)) is not None:
            return _compare(shard.column(name), op, constant(right))
        if (name := column_name(right)) is not None:
            return _compare(shard.column(name), FLIP[op], constant(left))
        return _ANY
    if node_type == "COMPARE_IN" and len(children) >= 2 and (name := column_name(children[0])):
        return _in(shard.column(name), [constant(c) for c in children[1:]])
    if kind == "BETWEEN" and (name := column_name(node.get("input"))):
        low, high = constant(node.get("lower")), constant(node.get("upper"))
        return _between(shard.column(name), low, high)
    if kind == "FUNCTION":
        return _function(node, shard)
    if kind == "SUBQUERY" and node.get("comparison_type") == "COMPARE_EQUAL":
        name = column_name(_membership_list(node))
        if name is not None:
            return _any_equal(shard.column(name), constant(node.get("child")))
    return _ANY


def _is_null(node: Any, shard: _Shard) -> _Outcomes:
    """``node IS NULL``, which is never NULL itself."""
    if (name := column_name(node)) is not None:
        column = shard.column(name)
        return _when(column.nulls, _T) | _when(column.present, _F)
    const = constant(node)
    if const is not None:
        return _T if const.kind == "null" else _F
    return _BOOL


def might_match(pred: Predicate, shard: dict) -> bool:
    """Whether some row of ``shard`` may satisfy ``pred``; False only when its aggregates
    prove that none does (SQL NULL counts as not satisfying, as in a WHERE clause).

    ``shard`` is ``{"num_samples": n, "fields": {column: aggregate}}``; a column the
    predicate reads but ``fields`` lacks is NULL in every row of the shard.
    """
    view = _Shard(shard)
    if view.num_samples == 0:
        return False
    return _Tri.TRUE in _truth(pred.tree, view)
