"""Queues and routes, derived from the stage table: each chunk stage's task on its stage's
queue, the batch steps and the job's own tasks on the batch queue, fitting a version's label
model on the label queue (where the LF module and the models are loaded)."""

from __future__ import annotations

from kombu import Exchange, Queue

from autods.pipeline.stagetable import BATCH_QUEUE, LABEL_QUEUE, queues, stages


def routes() -> dict[str, dict[str, str]]:
    return {
        **{s.task_name: {"queue": s.queue} for s in stages()},
        "autods.publish.*": {"queue": BATCH_QUEUE},
        "autods.job.*": {"queue": BATCH_QUEUE},
        "autods.rewrite.*": {"queue": BATCH_QUEUE},
        "autods.label.*": {"queue": LABEL_QUEUE},
    }


def task_queues() -> list[Queue]:
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in queues()]
