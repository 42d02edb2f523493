"""Dialect-aware ``INSERT ... ON CONFLICT DO NOTHING``: the primitive of idempotent tasks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session


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
    # A Core executemany binds the same columns for every row, so rows that name different
    # columns (a feature row with an error and no hash) go in separate batches.
    groups: dict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[frozenset(row)].append(row)
    for group in groups.values():
        for start in range(0, len(group), 2000):
            session.execute(stmt, group[start : start + 2000])
