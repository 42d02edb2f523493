"""The Celery application, configured from ``Settings``.

Reliability settings live here once: late acks with rejection on worker loss (a killed
worker's chunk is redelivered, and tasks are idempotent), prefetch of one (chunks are long,
so a worker should not hoard them), task events on for Flower, and expiring results so the
backend's memory stays bounded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from celery import Celery, bootsteps
from celery.signals import worker_init

from autods.config import Settings
from autods.pipeline.stagetable import BATCH_QUEUE, preloads_for_queues, queues, stages
from autods.tasks.routing import routes, task_queues
from autods.tasks.telemetry import MetricsServer

log = logging.getLogger(__name__)


#: Tasks each embedded worker process holds ahead (``worker_prefetch_multiplier``).
EMBEDDED_PREFETCH = 4


def configure(app: Celery, settings: Settings) -> Celery:
    broker = settings.broker
    transport_options: dict = {}
    if broker.url.startswith(("redis", "rediss")):
        transport_options.update(_redis_redelivery(broker.visibility_timeout_s))
    if broker.key_prefix:
        transport_options["global_keyprefix"] = broker.key_prefix
    embedded = broker.url.startswith("filesystem:")
    if embedded:
        transport_options.update(_filesystem_options(broker.result_backend))
    app.conf.update(
        broker_url=broker.url,
        result_backend=(f"autods.tasks.fsbroker:ResultBackend+{broker.result_backend}"
                        if embedded and broker.result_backend.startswith("file:")
                        else broker.result_backend),
        result_expires=broker.result_expires_s,
        broker_transport_options=transport_options,
        result_backend_transport_options=(
            {"global_keyprefix": broker.key_prefix} if broker.key_prefix else {}),
        task_queues=task_queues(),
        task_routes=routes(),
        task_default_queue=queues()[0],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        # A deployment's workers take one task per process, so none holds chunks another
        # could start. The embedded workers consume their queues alone: each process
        # holds a few, and the next one starts at once instead of after the file broker's
        # next poll (13-26 ms per chunk stage, about 5 % of a long build).
        worker_prefetch_multiplier=EMBEDDED_PREFETCH if embedded else 1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_max_tasks_per_child=None,
        broker_transport="autods.tasks.fsbroker:Transport" if embedded else None,
        # A broker or backend restart must not fail the task that finished during it:
        # publishing the next step of a chain and storing a result retry for about a
        # minute before giving up.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 30, "interval_start": 0,
                                   "interval_step": 0.5, "interval_max": 2},
        result_backend_always_retry=True,
        result_backend_max_retries=30,
        result_backend_base_sleep_between_retries_ms=200,
        result_backend_max_sleep_between_retries_ms=2000,
    )
    _forget_connections(app)
    return app


@contextmanager
def configured(app: Celery, settings: Settings) -> Iterator[Celery]:
    """The app on ``settings`` for a while, then exactly as it was configured before."""
    saved = dict(app.conf.changes)
    configure(app, settings)
    try:
        yield app
    finally:
        app.conf.update(saved)
        _forget_connections(app)


def _redis_redelivery(visibility_timeout_s: int) -> dict:
    """A message whose worker vanished (its main process killed, or a pool process killed
    while the message was handed over) stays unacked until a worker's sweep puts it back.
    kombu sweeps every ``interval * throttle`` seconds, 100 s by default; sweep once per
    interval, and at least four times per visibility timeout, so a lost message is back on
    its queue within about 1.25 visibility timeouts."""
    return {
        "visibility_timeout": visibility_timeout_s,
        "unacked_restore_interval": max(1, min(10, visibility_timeout_s // 4)),
        "unacked_restore_throttle": 1,
    }


def _forget_connections(app: Celery) -> None:
    """Drop pools and backends built under an earlier configuration (they are lazy)."""
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None
    app._backend_cache = None
    app._local = threading.local()


def _filesystem_options(result_backend: str) -> dict:
    """Folders of the embedded broker, beside the embedded result store."""
    from pathlib import Path
    from urllib.parse import urlparse

    results = Path(urlparse(result_backend).path)
    results.mkdir(parents=True, exist_ok=True)
    root = results.parent / "broker"
    for sub in ("queue", "processed", "control"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return {
        "polling_interval": 0.02,
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "processed_folder": str(root / "processed"),
        "store_processed": False,
        "control_folder": str(root / "control"),
    }


def preload_modules(setting: str, consumed: Iterable[str]) -> list[str]:
    """The modules a worker on ``consumed`` queues preloads under ``AUTODS_WORKER_PRELOAD``."""
    if setting == "none":
        return []
    if setting == "auto":
        return preloads_for_queues(consumed)
    return [m.strip() for m in setting.split(",") if m.strip()]


@worker_init.connect
def _preload_heavy_modules(sender, **_) -> None:
    """Import before the pool forks what its processes would each import at their first
    task: the preloads, then the stage functions of the consumed queues (the HTTP and S3
    clients, image hashing: about half a second per process), and the models and
    labelling functions ``AUTODS_WORKER_WARM_*`` ask for (``pipeline.warmup``).

    What is then in memory stays for the worker's life, and is frozen out of the garbage
    collector's reach: a full collection in a pool process would walk the ~645,000
    objects of these modules (0.11 s each, one every few hundred thousand objects a task
    keeps), writing to each object's header as it went, which copies the pages the pool's
    processes share with the parent.
    """
    import gc
    import importlib

    from autods.pipeline.warmup import warmed

    settings = Settings()
    consumed = sender.app.amqp.queues.consume_from or {}
    stage_modules = [s.module for s in stages() if s.queue in consumed]
    with warmed(settings, getattr(sender, "setup_logging", None)):
        for name in preload_modules(settings.worker.preload, consumed) + stage_modules:
            try:
                importlib.import_module(name)
            except ImportError:  # an optional extra that this worker does not have
                continue
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()


class StallWatchdog(bootsteps.StartStopStep):
    """On workers that consume the batch queue (``shard``), send ``autods.job.repair`` every
    ``AUTODS_PIPELINE_STALL_CHECK_INTERVAL_S``: a timer in the worker, so no beat process
    has to be deployed. Several watchdogs are harmless; each stalled batch is claimed once.
    """

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs) -> None:
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker) -> None:
        pipeline = Settings().pipeline
        consumed = worker.app.amqp.queues.consume_from or {}
        if pipeline.stall_timeout_s <= 0 or BATCH_QUEUE not in consumed:
            return
        self.tref = worker.timer.call_repeatedly(
            pipeline.stall_check_interval_s, self._check, (worker.app,), priority=10)

    def stop(self, worker) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    @staticmethod
    def _check(app: Celery) -> None:
        try:
            app.send_task("autods.job.repair")
        except Exception as exc:  # a broker outage must not stop the timer
            log.warning("stall check not sent: %s", exc)


app = configure(Celery("autods", include=["autods.tasks.stages"]), Settings())
app.steps["worker"].add(StallWatchdog)
app.steps["worker"].add(MetricsServer)
