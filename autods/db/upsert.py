"""Dialect-aware bulk writes: ``INSERT ... ON CONFLICT DO NOTHING`` (the primitive of
idempotent tasks) and updates of many rows by primary key.

On PostgreSQL the rows go as one typed array per column, unnested together by one
set-based statement: an ``executemany`` sends one statement per row (psycopg pipelines
them, but binds each row in Python), which cost more per image than hashing it; ``COPY``
into a temporary table did as well as arrays for the rows but paid for the table (created
in the catalog, dropped at commit) three times a chunk.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Sequence
from enum import Enum
from typing import Any

from sqlalchemy import JSON, Table, Text, bindparam, cast, func, literal, select, update
from sqlalchemy.dialects.postgresql import ARRAY
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
            session.execute(insert(table).from_select(columns, _unnested(table, columns, group))
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
        given = _unnested(table, columns, group).subquery()
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


def _unnested(table: Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]):
    """The rows as a ``SELECT`` of ``columns``: an array per column in the column's type,
    unnested together (one parameter a column, whatever the number of rows). JSON
    documents go as their text, cast back row by row."""
    as_json = [isinstance(table.c[c].type, JSON) for c in columns]
    arrays = []
    for c, j in zip(columns, as_json, strict=True):
        kind = Text() if j else table.c[c].type
        values = [_array_value(row[c], j) for row in rows]
        arrays.append(cast(bindparam(None, values, type_=ARRAY(kind)), ARRAY(kind)))
    given = func.unnest(*arrays).table_valued(*columns).render_derived()
    return select(*(cast(given.c[c], JSON).label(c) if j else given.c[c]
                    for c, j in zip(columns, as_json, strict=True)))


def _array_value(value: Any, as_json: bool) -> Any:
    """An array element for a row value: JSON documents as their text, enums as their
    value (psycopg would send an enum's name)."""
    if value is None:
        return None
    if as_json:
        return json.dumps(value)
    return value.value if isinstance(value, Enum) else value
