"""``column IN (values)`` for long lists of values.

SQLAlchemy expands ``in_`` into one bound parameter per value, and compiling and binding
thousands of them cost more than the query (a batch asks for ~20,000 band values). On
PostgreSQL the list goes as one array parameter instead: ``column = ANY(:values)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session


def one_of(session: Session, column, values: Iterable[Any]) -> ColumnElement[bool]:
    """The condition that ``column`` is one of ``values``, in the session's dialect."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)
