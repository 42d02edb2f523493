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

from sqlalchemy import JSON, text, update
from sqlalchemy.orm import Session

#: Below this many rows the temporary table costs more than it saves.
COPY_MIN_ROWS = 64

_temp_names = itertools.count()


def insert_ignore(session: Session, model: type, rows: Sequence[dict[str, Any]],
                  conflict: Sequence[str]) -> None:
    """Insert rows, silently keeping whichever row won a race on ``conflict``."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(dialect)
    # On the table, not the mapped class: Core executemany skips the ORM's bulk-insert
    # bookkeeping, a third of the time of these inserts.
    stmt = insert(model.__table__).on_conflict_do_nothing(index_elements=list(conflict))
    for columns, group in _by_columns(rows):
        if dialect == "postgresql" and len(group) >= COPY_MIN_ROWS:
            table = model.__table__.name
            names = _names(columns)
            temp = _stage(session, model, columns, group)
            session.execute(text(f"INSERT INTO {table} ({names}) SELECT {names} FROM {temp} "
                                 f"ON CONFLICT ({_names(conflict)}) DO NOTHING"))
            continue
        for start in range(0, len(group), 2000):
            session.execute(stmt, group[start : start + 2000])


def update_rows(session: Session, model: type, rows: Sequence[dict[str, Any]]) -> None:
    """``UPDATE`` each row's columns where the (one-column) primary key is the row's."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql" or len(rows) < COPY_MIN_ROWS:
        session.execute(update(model), list(rows))
        return
    table = model.__table__.name
    (key,) = (c.name for c in model.__table__.primary_key.columns)
    for columns, group in _by_columns(rows):
        sets = ", ".join(f'"{c}" = s."{c}"' for c in columns if c != key)
        temp = _stage(session, model, columns, group)
        session.execute(text(f"UPDATE {table} SET {sets} FROM {temp} s "
                             f'WHERE {table}."{key}" = s."{key}"'))


def _by_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[tuple[str, ...],
                                                               list[dict[str, Any]]]]:
    """Rows grouped by the columns they name (one statement binds the same columns for
    every row: a feature row with an error and no hash goes apart)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(sorted(row))].append(row)
    return list(groups.items())


def _names(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _stage(session: Session, model: type, columns: Sequence[str],
           rows: Sequence[dict[str, Any]]) -> str:
    """A temporary table of ``model``'s ``columns`` (their types, none of the constraints
    or defaults) filled by ``COPY``; it lives until the transaction ends."""
    table = model.__table__
    name = f"_autods_stage_{next(_temp_names)}"
    names = _names(columns)
    session.execute(text(f"CREATE TEMP TABLE {name} ON COMMIT DROP AS "
                         f"SELECT {names} FROM {table.name} WITH NO DATA"))
    as_json = [isinstance(table.c[c].type, JSON) for c in columns]
    cursor = session.connection().connection.driver_connection.cursor()
    with cursor, cursor.copy(f"COPY {name} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([_copy_value(row[c], j) for c, j in zip(columns, as_json,
                                                                    strict=True)])
    return name


def _copy_value(value: Any, as_json: bool) -> Any:
    """What ``COPY`` takes for a row value: JSON documents as their text, enums as their
    value."""
    if value is None:
        return None
    if as_json:
        return json.dumps(value)
    return value.value if isinstance(value, Enum) else value
