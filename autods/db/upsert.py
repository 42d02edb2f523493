"""Dialect-aware bulk writes: ``INSERT ... ON CONFLICT DO NOTHING`` (the primitive of
idempotent tasks) and updates of many rows by primary key.

On PostgreSQL a large batch goes through ``COPY`` into a temporary table and one set-based
statement: an ``executemany`` sends one statement per row (psycopg pipelines them, but
binds each row in Python), which cost more per image than hashing it.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Sequence
from enum import Enum
from typing import Any

from sqlalchemy import JSON, Column, MetaData, Table, bindparam, func, literal, select, update
from sqlalchemy.orm import Session

from autods.db.inlist import int_array

#: Below this many rows the temporary table costs more than it saves.
COPY_MIN_ROWS = 64

_temp_names = itertools.count()


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
        if dialect == "postgresql" and len(group) >= COPY_MIN_ROWS:
            staged = _stage(session, table, columns, group)
            session.execute(insert(table).from_select(columns, select(*staged.c))
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
    if session.get_bind().dialect.name != "postgresql" or len(rows) < COPY_MIN_ROWS:
        # A Core executemany (the row's other keys are the SET clause): the ORM's bulk
        # update by primary key costs three times as much per row in Python.
        for columns, group in _by_columns(rows):
            session.execute(update(table).where(key == bindparam("_key")),
                            [{"_key": row[key.name], **{c: row[c] for c in columns
                                                        if c != key.name}} for row in group])
        return
    for columns, group in _by_columns(rows):
        staged = _stage(session, table, columns, group)
        session.execute(update(table).where(key == staged.c[key.name])
                        .values({c: staged.c[c] for c in columns if c != key.name}))


def _by_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[list[str],
                                                               list[dict[str, Any]]]]:
    """Rows grouped by the columns they name (one statement binds the same columns for
    every row: a feature row with an error and no hash goes apart)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(sorted(row))].append(row)
    return [(list(columns), group) for columns, group in groups.items()]


def _stage(session: Session, table: Table, columns: Sequence[str],
           rows: Sequence[dict[str, Any]]) -> Table:
    """A temporary table of ``table``'s ``columns`` (their types, none of the constraints
    or defaults) filled by ``COPY``; it is dropped when the transaction ends."""
    from psycopg import sql

    staged = Table(f"_autods_stage_{next(_temp_names)}", MetaData(),
                   *(Column(c, table.c[c].type) for c in columns),
                   prefixes=["TEMPORARY"], postgresql_on_commit="DROP")
    staged.create(session.connection())
    as_json = [isinstance(table.c[c].type, JSON) for c in columns]
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(staged.name), sql.SQL(", ").join(map(sql.Identifier, columns)))
    cursor = session.connection().connection.driver_connection.cursor()
    with cursor, cursor.copy(copy_sql) as copy:
        for row in rows:
            copy.write_row([_copy_value(row[c], j) for c, j in zip(columns, as_json,
                                                                    strict=True)])
    return staged


def _copy_value(value: Any, as_json: bool) -> Any:
    """What ``COPY`` takes for a row value: JSON documents as their text, enums as their
    value."""
    if value is None:
        return None
    if as_json:
        return json.dumps(value)
    return value.value if isinstance(value, Enum) else value
