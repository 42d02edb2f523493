"""Stage functions: load references from the database, call ``core``, record results.

Every function here takes a ``Runtime`` and ids and is idempotent; Celery tasks are thin
wrappers around them, so the same code runs in eager tests, the embedded runner and a
cluster.
"""
