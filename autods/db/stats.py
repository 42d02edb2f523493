"""Planner statistics for the tables a job grows by orders of magnitude.

PostgreSQL plans from statistics that autovacuum refreshes on its own schedule, or never
where it is off. A table that grew from a few thousand rows to 100,000 within one job is
planned as if it were still small: the generic plan of ingest's content lookup (prepared
after five runs) read every asset of the dataset and filtered them by the chunk's 256
hashes, 0.66 s a query at 100k assets instead of about 1 ms by the index, and the band
lookups read whole bands the same way. The batch step refreshes them each time the
dataset's published images double (``nearindex.add_published``): O(log n) times a
dataset, each ANALYZE reading a sample of at most 30,000 rows.
"""

from __future__ import annotations

from sqlalchemy import text

#: The tables whose size follows the dataset's, one fixed statement each.
GROWING = (text("ANALYZE assets"), text("ANALYZE features"), text("ANALYZE items"),
           text("ANALYZE phash_bands"))


def analyze(db) -> None:
    """Refresh the planner's statistics of the ``GROWING`` tables (PostgreSQL; SQLite
    plans without)."""
    if db.get_bind().dialect.name == "postgresql":
        for statement in GROWING:
            db.execute(statement)
