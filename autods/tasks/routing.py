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


#: What each queue's tasks import on first use, seconds each: imported once in the worker's
#: main process before the pool forks, instead of once per child on its first task.
PRELOADS: dict[str, tuple[str, ...]] = {
    "preprocess": ("scipy.fftpack",),
    "gpu": ("torch", "open_clip"),
    "label": ("snorkel.labeling", "snorkel.labeling.model"),
    # The batch callback fits the LabelModel of jobs with labelling functions.
    # pyarrow imports pandas on the first Table.from_pylist.
    "shard": ("pyarrow.parquet", "pandas", "snorkel.labeling.model"),
}


def task_queues() -> list[Queue]:
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES]
