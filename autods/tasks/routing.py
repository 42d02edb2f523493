"""Queues and routes, declared once: each stage on its own queue, embeddings on ``gpu``."""

from __future__ import annotations

from kombu import Exchange, Queue

QUEUES = ("ingest", "preprocess", "gpu", "label", "shard")

ROUTES = {
    "autods.ingest.chunk": {"queue": "ingest"},
    "autods.preprocess.chunk": {"queue": "preprocess"},
    "autods.embed.chunk": {"queue": "gpu"},
    "autods.label.chunk": {"queue": "label"},
    "autods.publish.batch": {"queue": "shard"},
    "autods.publish.shard": {"queue": "shard"},
    "autods.publish.commit": {"queue": "shard"},
    "autods.job.finalize": {"queue": "shard"},
    "autods.job.fail": {"queue": "shard"},
    "autods.job.repair": {"queue": "shard"},
}


def task_queues() -> list[Queue]:
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES]
