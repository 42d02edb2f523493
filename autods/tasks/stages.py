"""Thin tasks: take ids, call the stage function, return small counts (never bytes)."""

from __future__ import annotations

from autods.pipeline import embed, ingest, label, preprocess, publish, repair
from autods.pipeline.runtime import get_runtime
from autods.tasks.app import app
from autods.tasks.base import PipelineTask


@app.task(name="autods.ingest.chunk", base=PipelineTask)
def ingest_chunk(job_id: int, chunk_no: int) -> dict[str, int]:
    return ingest.ingest_chunk(get_runtime(), job_id, chunk_no)


@app.task(name="autods.preprocess.chunk", base=PipelineTask)
def preprocess_chunk(job_id: int, chunk_no: int) -> dict[str, int]:
    return preprocess.preprocess_chunk(get_runtime(), job_id, chunk_no)


@app.task(name="autods.embed.chunk", base=PipelineTask)
def embed_chunk(job_id: int, chunk_no: int) -> dict[str, int]:
    return embed.embed_chunk(get_runtime(), job_id, chunk_no)


@app.task(name="autods.label.chunk", base=PipelineTask)
def label_chunk(job_id: int, chunk_no: int, lfs: str) -> dict[str, int]:
    return label.label_chunk(get_runtime(), job_id, chunk_no, lfs)


@app.task(name="autods.publish.batch", base=PipelineTask, bind=True)
def publish_batch(self, _header_results=None, *, job_id: int, batch_no: int) -> list[str]:
    """The batch chord's callback: resolve in order, then write the batch's shards.

    One shard is written here. Several are written in parallel by a chord of
    ``autods.publish.shard`` tasks whose callback commits the batch, so the next batch's
    callback can resolve while this one's shards are still being written. Returns the
    names of the shards written or sent.
    """
    from autods.tasks.canvas import shard_chord

    rt = get_runtime()
    if publish.job_failed(rt, job_id):
        return []
    try:
        publish.resolve_batch(rt, job_id, batch_no)
    except publish.NotReady as exc:
        # Waiting on the previous batch is normal, not a failure: poll without a limit.
        raise self.retry(exc=exc, countdown=0.5, max_retries=1_000_000) from exc
    shards = publish.pending_shards(rt, job_id, batch_no)
    if len(shards) > 1:
        shard_chord(job_id, batch_no, list(shards)).apply_async()
    else:
        for shard_id in shards:
            publish.write_planned_shard(rt, shard_id)
        commit_batch(job_id=job_id, batch_no=batch_no)
    return list(shards.values())


@app.task(name="autods.publish.shard", base=PipelineTask)
def write_shard(shard_id: int) -> str:
    return publish.write_planned_shard(get_runtime(), shard_id)


@app.task(name="autods.publish.commit", base=PipelineTask)
def commit_batch(_written=None, *, job_id: int, batch_no: int) -> None:
    """The batch is published; the last batch of the job to commit closes it."""
    if publish.commit_batch(get_runtime(), job_id, batch_no):
        finalize_job.delay(job_id)


@app.task(name="autods.job.finalize", base=PipelineTask)
def finalize_job(job_id: int) -> str:
    """The job's final callback: the dataset index, then the job's status."""
    return publish.finalize_job(get_runtime(), job_id)


@app.task(name="autods.job.fail", base=PipelineTask)
def fail_job(*args, job_id: int) -> None:
    """Errback of a batch chord: a chunk failed for good (a bug, not bad input)."""
    exc = next((a for a in args if isinstance(a, BaseException)), None)
    publish.fail_job(get_runtime(), job_id, f"{type(exc).__name__}: {exc}" if exc else "failed")


@app.task(name="autods.job.repair", base=PipelineTask)
def repair_stalled() -> list[list[int]]:
    """Send again every batch that stopped moving (see ``autods.pipeline.repair``)."""
    from autods.tasks.canvas import send_batch

    rt = get_runtime()
    stall_s = rt.settings.pipeline.stall_timeout_s
    if stall_s <= 0:
        return []
    claimed = repair.claim_stalled_batches(rt, stall_s)
    for job_id, batch_no in claimed:
        send_batch(rt, job_id, batch_no)
    return [list(c) for c in claimed]
