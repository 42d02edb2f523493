"""The base task: one place for time limits and the retry policy.

Only specific transient errors are retried (our storage, database connections, the broker);
bad input never raises, it is recorded by the stage, so it is never retried.
"""

from __future__ import annotations

import logging

from celery import Task
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy.exc import DBAPIError, OperationalError

from autods.core.records import TransientError

log = logging.getLogger(__name__)

TRANSIENT = (TransientError, OperationalError, KombuOperationalError, ConnectionError,
             TimeoutError)


class PipelineTask(Task):
    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = TRANSIENT
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 8
    soft_time_limit = 1800
    time_limit = 1900

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        if isinstance(exc, DBAPIError):
            log.error("task %s %s failed on the database: %s", self.name, args, exc)
        super().on_failure(exc, task_id, args, kwargs, einfo)
