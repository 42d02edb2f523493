"""What the REST API's ``GET /metrics`` reports: the deployment's state, read at each scrape.

Jobs by state come from the database and queue depths from the broker when Prometheus
asks, so they are right whichever process changed them, and every API replica reports the
same values (aggregate replicas with ``max``, not ``sum``). A queue's depth is the length
of its Redis list, ``<AUTODS_BROKER_KEY_PREFIX><queue>``: the messages waiting, what KEDA
scales the workers on. A source that does not answer leaves its metric out of that scrape
(and is logged) rather than failing the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from autods.core.records import JobState
from autods.db.models import Job
from autods.db.session import session_scope
from autods.pipeline.runtime import Runtime
from autods.pipeline.stagetable import queues

log = logging.getLogger(__name__)


class ServiceCollector(Collector):
    """``autods_jobs{state}`` from the database, ``autods_queue_depth{queue}`` from Redis."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        broker = rt.settings.broker
        self.prefix = broker.key_prefix
        self.redis = None
        if broker.url.startswith(("redis://", "rediss://")):
            import redis

            self.redis = redis.Redis.from_url(broker.url, socket_timeout=5,
                                              socket_connect_timeout=5)

    def describe(self) -> list[GaugeMetricFamily]:
        """The families without values: registering must not query anything."""
        return [_jobs(), _queue_depth()] if self.redis is not None else [_jobs()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with session_scope(self.rt.engine) as db:
                counts = dict(db.execute(select(Job.status, func.count())
                                         .group_by(Job.status)).all())
        except SQLAlchemyError as exc:
            log.warning("autods_jobs not collected: %s", exc)
        else:
            jobs = _jobs()
            for state in JobState:
                jobs.add_metric([state.value], counts.get(state.value, 0))
            yield jobs
        if self.redis is None:
            return
        import redis

        names = queues()
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.llen(f"{self.prefix}{name}")
                lengths = pipe.execute()
        except redis.RedisError as exc:
            log.warning("autods_queue_depth not collected: %s", exc)
            return
        depth = _queue_depth()
        for name, length in zip(names, lengths, strict=True):
            depth.add_metric([name], length)
        yield depth


def _jobs() -> GaugeMetricFamily:
    return GaugeMetricFamily("autods_jobs", "Jobs by state, from the database", labels=["state"])


def _queue_depth() -> GaugeMetricFamily:
    return GaugeMetricFamily("autods_queue_depth", "Messages waiting in each queue, from the "
                             "broker", labels=["queue"])


def service_registry(rt: Runtime) -> CollectorRegistry:
    """The registry behind the API's ``/metrics``."""
    registry = CollectorRegistry()
    registry.register(ServiceCollector(rt))
    return registry
