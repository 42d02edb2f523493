"""Planner statistics for the tables a job grows by orders of magnitude.

PostgreSQL plans from statistics that autovacuum refreshes on its own schedule, or never
where it is off. A table that grew from a few thousand rows to 100,000 within one job is
planned as if it were still small: the generic plan of ingest's content lookup (prepared
after five runs) read every asset of the dataset and filtered them by the chunk's 256
hashes, 0.66 s a query at 100k assets instead of about 1 ms by the index, and the band
lookups read whole bands the same way. The batch step refreshes them each time the
dataset's published images double (``nearindex.add_published``) past ``ANALYZE_FROM``:
O(log n) times a dataset, each ANALYZE reading a sample of at most 30,000 rows. Below
that size only a table that has never had statistics gets them: with none, PostgreSQL
guesses that the chunk's 256 hashes match most of the table, and once it has some (a
sha256 is distinct in every row) the estimate stays right as the table grows.
"""

from __future__ import annotations

from sqlalchemy import text

#: The tables whose size follows the dataset's, one fixed statement each.
GROWING = (text("ANALYZE assets"), text("ANALYZE features"), text("ANALYZE items"),
           text("ANALYZE phash_bands"))

#: The published images from which a dataset that doubles refreshes the statistics.
#: Below, the rows a dataset has added are few enough that any plan reads them in a few
#: milliseconds (PostgreSQL scales a table's row estimate by its pages on disk); the four
#: ANALYZEs took 50 ms of a 2,000-image job's 0.27 s batch step.
ANALYZE_FROM = 8192

_NEVER_ANALYZED = text("SELECT count(*) FROM pg_class WHERE reltuples < 0 AND relname IN"
                       " ('assets', 'features', 'items', 'phash_bands')")


def refresh(db, published: int) -> None:
    """A dataset's published images have doubled, to ``published``: refresh the
    statistics of the ``GROWING`` tables from ``ANALYZE_FROM`` images on, or earlier when
    one of them has never had any (PostgreSQL; SQLite plans without)."""
    if db.get_bind().dialect.name == "postgresql" and (
            published >= ANALYZE_FROM or db.scalar(_NEVER_ANALYZED)):
        analyze(db)


def analyze(db) -> None:
    """Refresh the planner's statistics of the ``GROWING`` tables (PostgreSQL; SQLite
    plans without)."""
    if db.get_bind().dialect.name == "postgresql":
        for statement in GROWING:
            db.execute(statement)
