"""Dialect-aware bulk writes: ``INSERT ... ON CONFLICT DO NOTHING`` (the primitive of
idempotent tasks) and updates of many rows by primary key.

On PostgreSQL the rows go as one JSON document that one set-based statement reads as a
record set: an ``executemany`` sends one statement per row (psycopg pipelines them, but
binds each row in Python), which cost more per image than hashing it; ``COPY`` into a
temporary table paid for the table (created in the catalog, dropped at commit) three
times a chunk; an array per column was built element by element by psycopg in Python.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    Table,
    Text,
    bindparam,
    cast,
    column,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session

from autods.db.inlist import int_array


def dialect_insert(session: Session):
    """The session's dialect's ``insert``, the one with ``on_conflict_do_nothing``."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(dialect)
    return insert


def insert_ignore(session: Session, model: type, rows: Sequence[dict[str, Any]],
                  conflict: Sequence[str]) -> None:
    """Insert rows, silently keeping whichever row won a race on ``conflict``."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = dialect_insert(session)
    table = model.__table__
    for columns, group in _by_columns(rows):
        if dialect == "postgresql":
            session.execute(insert(table).from_select(columns, _record_set(table, columns, group))
                            .on_conflict_do_nothing(index_elements=list(conflict)))
            continue
        # On the table, not the mapped class: Core executemany skips the ORM's bulk-insert
        # bookkeeping, a third of the time of these inserts.
        stmt = insert(table).on_conflict_do_nothing(index_elements=list(conflict))
        for start in range(0, len(group), 2000):
            session.execute(stmt, group[start : start + 2000])


def insert_int_columns(session: Session, table: Table,
                       columns: dict[str, int | Sequence[int]]) -> None:
    """Insert rows given as columns of integers (sequences of one length, or one value
    for every row), keeping whatever row is already there on the primary key. On
    PostgreSQL the sequences go as arrays that one statement unnests together, with no
    object per row; on SQLite as tuples to one ``executemany`` of the driver, without the
    dict per row of a Core insert."""
    names = list(columns)
    arrays = [c for c in names if not isinstance(columns[c], int)]
    if session.get_bind().dialect.name == "postgresql":
        rows = func.unnest(*(int_array(columns[c]) for c in arrays)
                           ).table_valued(*arrays).render_derived()
        values = [rows.c[c] if c in arrays else literal(columns[c]) for c in names]
        session.execute(dialect_insert(session)(table).from_select(names, select(*values))
                        .on_conflict_do_nothing())
        return
    # The statement compiled by SQLAlchemy, its parameters in its own order, as tuples.
    compiled = (dialect_insert(session)(table).values({c: bindparam(c) for c in names})
                .on_conflict_do_nothing().compile(dialect=session.get_bind().dialect))
    order = list(compiled.positiontup)
    session.connection().exec_driver_sql(
        compiled.string,
        # Not strict: a value for every row repeats without end beside the sequences.
        list(zip(*(columns[c] if c in arrays else itertools.repeat(columns[c])
                   for c in order), strict=False)))


def update_rows(session: Session, model: type, rows: Sequence[dict[str, Any]]) -> None:
    """``UPDATE`` each row's columns where the (one-column) primary key is the row's."""
    if not rows:
        return
    table = model.__table__
    (key,) = table.primary_key.columns
    if session.get_bind().dialect.name != "postgresql":
        # A Core executemany (the row's other keys are the SET clause): the ORM's bulk
        # update by primary key costs three times as much per row in Python.
        for columns, group in _by_columns(rows):
            session.execute(update(table).where(key == bindparam("_key")),
                            [{"_key": row[key.name], **{c: row[c] for c in columns
                                                        if c != key.name}} for row in group])
        return
    for columns, group in _by_columns(rows):
        given = _record_set(table, columns, group).subquery()
        session.execute(update(table).where(key == given.c[key.name])
                        .values({c: given.c[c] for c in columns if c != key.name}))


def _by_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[list[str],
                                                               list[dict[str, Any]]]]:
    """Rows grouped by the columns they name (one statement binds the same columns for
    every row: a feature row with an error and no hash goes apart)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(sorted(row))].append(row)
    return [(list(columns), group) for columns, group in groups.items()]


def _record_set(table: Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]):
    """The rows as a ``SELECT`` of ``columns``: one JSON document of the rows, which
    PostgreSQL reads as a record set typed by the table's columns. One parameter whatever
    the number of rows, and encoded by ``json``'s C code: psycopg built an array
    parameter per column element by element in Python, 11 ms an ingest chunk."""
    floats = [c for c in columns if isinstance(table.c[c].type, Float)]
    if floats:  # JSON has no NaN or infinity; a float column reads them as text
        rows = [{**row, **{c: _finite_or_text(row[c]) for c in floats}} for row in rows]
    doc = json.dumps(list(rows), default=_json_value, separators=(",", ":"))
    given = func.json_to_recordset(cast(bindparam(None, doc, type_=Text), JSON)).table_valued(
        *(column(c, table.c[c].type) for c in columns)).render_derived(with_types=True)
    return select(*(given.c[c] for c in columns))


def _finite_or_text(value: float | None) -> float | str | None:
    return value if value is None or math.isfinite(value) else str(value)


def _json_value(value: Any) -> Any:
    """What ``json`` cannot encode, as the text PostgreSQL reads into the column's type:
    bytes in bytea's hex form, timestamps in ISO 8601."""
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")
