"""Thin tasks: take ids, call the pipeline or the canvas, return small counts (never bytes).

Each chunk stage of the stage table gets its task, ``autods.<stage>.chunk``, generated
here from the table; the batch and job tasks are written out below.
"""

from __future__ import annotations

from celery import Task

from autods import metrics
from autods.pipeline import lifecycle, mapjobs, relabel, shards
from autods.pipeline.chunks import run_stage
from autods.pipeline.runtime import get_runtime
from autods.pipeline.stagetable import Stage, stages
from autods.tasks import canvas
from autods.tasks.app import app
from autods.tasks.base import PipelineTask


def chunk_task(stage: Stage) -> Task:
    """The task that runs ``stage`` over one chunk (registered once per name)."""
    if stage.task_name in app.tasks:
        return app.tasks[stage.task_name]

    def run(job_id: int, chunk_no: int) -> dict[str, int]:
        return run_stage(get_runtime(), stage.name, job_id, chunk_no)

    run.__doc__ = f"The {stage.name!r} stage over one chunk ({stage.function})."
    return app.task(name=stage.task_name, base=PipelineTask)(run)


CHUNK_TASKS = {s.name: chunk_task(s) for s in stages()}


@app.task(name="autods.publish.batch", base=PipelineTask)
def publish_batch(_header_results=None, *, job_id: int, batch_no: int) -> list[str]:
    """The batch chord's callback, or the hand-over from the previous batch."""
    return canvas.publish(get_runtime(), job_id, batch_no)


@app.task(name="autods.publish.shard", base=PipelineTask)
def write_shard(shard_id: int) -> str:
    return shards.write_planned_shard(get_runtime(), shard_id)


@app.task(name="autods.rewrite.shard", base=PipelineTask)
def rewrite_shard(shard_id: int) -> str:
    """One shard of a job over shards: its parent's samples through the job's map."""
    return mapjobs.rewrite_shard(get_runtime(), shard_id)


@app.task(name="autods.publish.commit", base=PipelineTask)
def commit_batch(_written=None, *, job_id: int, batch_no: int) -> None:
    canvas.commit(get_runtime(), job_id, batch_no)


@app.task(name="autods.job.finalize", base=PipelineTask)
def finalize_job(job_id: int) -> str:
    """The job's final task: the dataset index, then the job's status."""
    return lifecycle.finalize_job(get_runtime(), job_id)


@app.task(name="autods.job.fail", base=PipelineTask)
def fail_job(*args, job_id: int) -> None:
    """Errback of a batch: a chunk or a batch step failed for good (a bug, not bad input)."""
    exc = next((a for a in args if isinstance(a, BaseException)), None)
    lifecycle.fail_job(get_runtime(), job_id,
                       f"{type(exc).__name__}: {exc}" if exc else "failed")


@app.task(name="autods.job.repair", base=PipelineTask)
def repair_stalled() -> list[list[int]]:
    """Send again every batch that stopped moving (see ``autods.pipeline.repair``)."""
    claimed = canvas.repair_stalled(get_runtime())
    metrics.count_repaired(len(claimed))
    return [list(c) for c in claimed]


@app.task(name="autods.label.relabel", base=PipelineTask)
def relabel_dataset(dataset: str, lfs: str | None = None,
                    class_balance: list[float] | None = None) -> int:
    """Fit the latest version's label model with its gold labels, and the end model, then
    send the job over its shards that writes the labels; returns that job's id."""
    rt = get_runtime()
    job_id, _ = relabel.plan_relabel(rt, dataset, lfs=lfs, class_balance=class_balance)
    canvas.dispatch(rt, job_id)
    return job_id
