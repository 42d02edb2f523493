"""A worker's metrics and structured logs, wired through Celery's signals.

Both are decided once, in the worker's main process at ``worker_init`` (before the pool
forks, so every pool process inherits the choice): ``AUTODS_METRICS_DIR`` turns metrics
on, ``AUTODS_LOG_JSON`` turns log lines into JSON. Unless set, no receiver is connected
and a task costs what it did before. The main process serves the sum of its pool's
metrics at ``/metrics`` on ``AUTODS_METRICS_PORT`` (``MetricsServer``).

What the signals record: every finished task by name and state; the duration of each
chunk stage task that succeeded; chunk retries by stage; storage errors that failed or
retried a task. The batch counts are recorded by the resolution itself
(``autods.pipeline.resolve``) and repaired batches by the watchdog's task.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import time
from contextvars import Token
from typing import Any

from celery import Task, bootsteps, states
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_init,
    worker_process_shutdown,
)

from autods import logjson, metrics
from autods.config import Settings
from autods.core.records import StorageError
from autods.pipeline.stagetable import stages

log = logging.getLogger(__name__)

#: Task arguments that name what a task works on, as log fields.
_ID_ARGUMENTS = ("job_id", "batch_no", "chunk_no", "shard_id", "dataset")

_started: dict[str, float] = {}
_log_tokens: dict[str, Token] = {}


@worker_init.connect
def configure_worker(sender, **_) -> None:
    """Connect what the settings turn on, in the main process before the pool forks."""
    settings = Settings()
    if settings.log_json:
        for signal, receiver in LOG_RECEIVERS:
            signal.connect(receiver, weak=False)
    if settings.metrics.dir:
        metrics.enable(settings.metrics.dir, clean=True)
        for signal, receiver in METRIC_RECEIVERS:
            signal.connect(receiver, weak=False)


def stage_of(task_name: str) -> str | None:
    """The chunk stage a task runs, or None for the batch and job tasks."""
    return next((s.name for s in stages() if s.task_name == task_name), None)


def task_ids(task: Task, args: tuple | list | None, kwargs: dict | None) -> dict[str, Any]:
    """The ids a task's arguments name (job, batch, chunk, shard, dataset), by parameter
    name, so every task gets them without declaring anything."""
    try:
        bound = _signature(task.run).bind_partial(*(args or ()), **(kwargs or {})).arguments
    except TypeError:  # arguments that do not fit: log without ids rather than fail
        return {}
    return {name: bound[name] for name in _ID_ARGUMENTS if name in bound}


@functools.cache
def _signature(function) -> inspect.Signature:
    return inspect.signature(function)


def _json_logs(logger: logging.Logger, **_) -> None:
    logjson.install(logger)


def _bind_log_context(task_id: str, task: Task, args=None, kwargs=None, **_) -> None:
    _log_tokens[task_id] = logjson.bind(task=task.name, task_id=task_id,
                                        stage=stage_of(task.name),
                                        **task_ids(task, args, kwargs))


def _unbind_log_context(task_id: str, **_) -> None:
    token = _log_tokens.pop(task_id, None)
    if token is not None:
        logjson.unbind(token)


def _task_started(task_id: str, **_) -> None:
    _started[task_id] = time.perf_counter()


def _task_finished(task_id: str, task: Task, state: str | None = None, **_) -> None:
    started = _started.pop(task_id, None)
    metrics.count_task(task.name, state or "unknown")
    stage = stage_of(task.name)
    if stage is not None and state == states.SUCCESS and started is not None:
        metrics.observe_stage(stage, time.perf_counter() - started)


def _task_retried(sender: Task, reason=None, **_) -> None:
    stage = stage_of(sender.name)
    if stage is not None:
        metrics.count_chunk_retry(stage)
    _count_storage_error(getattr(reason, "exc", None))


def _task_failed(exception: BaseException | None = None, **_) -> None:
    _count_storage_error(exception)


def _count_storage_error(exc: BaseException | None) -> None:
    if isinstance(exc, StorageError):
        metrics.count_storage_error(exc.operation)


def _pool_process_exited(pid: int | None = None, **_) -> None:
    metrics.process_exited(pid or os.getpid())


LOG_RECEIVERS = (
    (after_setup_logger, _json_logs),
    (after_setup_task_logger, _json_logs),
    (task_prerun, _bind_log_context),
    (task_postrun, _unbind_log_context),
)
METRIC_RECEIVERS = (
    (task_prerun, _task_started),
    (task_postrun, _task_finished),
    (task_retry, _task_retried),
    (task_failure, _task_failed),
    (worker_process_shutdown, _pool_process_exited),
)


class MetricsServer(bootsteps.StartStopStep):
    """Serve ``/metrics`` from the worker's main process: the sum over every pool process,
    living or dead, read from the metrics folder at each scrape. Started after the pool,
    so the first pool processes do not inherit the listening socket."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs) -> None:
        super().__init__(worker, **kwargs)
        self.server = None

    def start(self, worker) -> None:
        port = Settings().metrics.port
        if not metrics.enabled() or port <= 0:
            return
        from prometheus_client import start_http_server

        try:
            self.server, _ = start_http_server(port, registry=metrics.scrape_registry())
        except OSError as exc:  # a busy port must not keep the worker from working
            log.error("metrics not served on port %d: %s", port, exc)
            return
        log.info("metrics served at http://0.0.0.0:%d/metrics", port)

    def stop(self, worker) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
