"""The canvas of a job: per chunk a chain of the stage table's stages, per batch a chord.

A batch's header is its chunk chains and its callback publishes the batch; no header grows
with the job (a 1M-item job is 100 chords of ~40 chains). Every batch is sent at once.
Batches resolve in order without polling: a batch whose chunks are done and whose
predecessor is still open stops, and the predecessor hands over when it resolves. The
last batch to commit sends the job's final task.

Everything here sends tasks by name, so the canvas never imports the tasks that call it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import chain, chord
from celery.canvas import Signature
from sqlalchemy import select, update

from autods.core.label import find_module
from autods.core.records import SourceItem
from autods.db.models import Batch, Chunk, Job, utcnow
from autods.db.session import require_current, session_scope
from autods.pipeline import lifecycle, mapjobs, repair, resolve, shards
from autods.pipeline.options import JobOptions
from autods.pipeline.plan import create_job, find_resumable
from autods.pipeline.runtime import Runtime
from autods.pipeline.stagetable import stages_for
from autods.tasks.app import app

log = logging.getLogger(__name__)


def _fail(job_id: int) -> Signature:
    return app.signature("autods.job.fail", kwargs={"job_id": job_id})


def _publish(job_id: int, batch_no: int) -> Signature:
    return app.signature("autods.publish.batch",
                         kwargs={"job_id": job_id, "batch_no": batch_no}).on_error(_fail(job_id))


def chunk_chain(job_id: int, chunk_no: int, options: JobOptions):
    """The stages this job runs, in table order, over one chunk."""
    return chain(*(app.signature(s.task_name, args=(job_id, chunk_no), immutable=True)
                   for s in stages_for(options)))


def batch_chord(job_id: int, batch_no: int, chunk_nos: Iterable[int], options: JobOptions):
    return chord([chunk_chain(job_id, c, options) for c in chunk_nos], _publish(job_id, batch_no))


def shard_chord(job_id: int, batch_no: int, shard_ids: Iterable[int]):
    """The shards of one batch written in parallel; the callback commits the batch."""
    header = [app.signature("autods.publish.shard", args=(s,), immutable=True)
              for s in shard_ids]
    callback = app.signature("autods.publish.commit",
                             kwargs={"job_id": job_id, "batch_no": batch_no})
    return chord(header, callback.on_error(_fail(job_id)))


def start_job(rt: Runtime, sources: list[str], dataset: str, options: JobOptions, *,
              output_url: str | None = None, items: Iterable[SourceItem] | None = None,
              resume: bool = False, load_lfs: bool = True) -> int:
    """Plan a job and send it: the one way every entry point (CLI, Python, REST, bucket
    events) starts a job. With ``resume`` an unfinished job of the same sources, dataset
    and options is sent again instead of planning a new one. ``load_lfs=False`` only checks
    that the job's LF module exists, for a caller whose worker loads it before any task
    (the embedded run's)."""
    require_current(rt.engine)
    if options.lfs and load_lfs:
        rt.label_spec(options.lfs)  # a module that does not load fails here, before any work
    elif options.lfs:
        find_module(options.lfs)
    if options.embed:
        from autods.core.embed import check_weights

        check_weights(rt.settings.clip.model, rt.settings.clip.pretrained)
    job_id = find_resumable(rt, sources, dataset, options) if resume else None
    if job_id is not None:
        log.info("resuming job %d", job_id)
    else:
        job_id = create_job(rt, sources, dataset, options, output_url=output_url, items=items)
    dispatch(rt, job_id)
    return job_id


def start_relabel(rt: Runtime, dataset: str, *, lfs: str | None = None,
                  class_balance: list[float] | None = None,
                  timeout: float | None = None) -> int:
    """Send the fit of the dataset's label model to the label queue and wait for the job
    over its shards that the fit sends; returns that job's id."""
    require_current(rt.engine)
    result = app.signature("autods.label.relabel", kwargs={
        "dataset": dataset, "lfs": lfs, "class_balance": class_balance}).apply_async()
    return result.get(timeout=timeout)


def dispatch(rt: Runtime, job_id: int) -> int:
    """Send every uncommitted batch of the job; returns how many were sent.

    Safe to call again on a resumed job: finished chunks return at once and committed
    batches are not sent. A job over shards sends its shards instead.
    """
    with session_scope(rt.engine) as db:
        kind = db.scalar(select(Job.kind).where(Job.id == job_id))
    if kind == "map":
        return dispatch_map(rt, job_id)
    with session_scope(rt.engine) as db:
        n_items = db.scalar(select(Job.n_items).where(Job.id == job_id))
        open_batches = list(db.scalars(select(Batch.batch_no).where(
            Batch.job_id == job_id, Batch.committed_at.is_(None)).order_by(Batch.batch_no)))
        db.execute(update(Batch).where(Batch.job_id == job_id, Batch.batch_no.in_(open_batches))
                   .values(dispatched_at=utcnow()))
    if n_items == 0 or not open_batches:
        app.signature("autods.job.finalize", args=(job_id,)).delay()
        return 0
    for b in open_batches:
        send_batch(rt, job_id, b)
    return len(open_batches)


def dispatch_map(rt: Runtime, job_id: int) -> int:
    """A job over shards: a chord of its unwritten shards, whose callback publishes the
    version; shards written before a restart are not sent again."""
    pending = mapjobs.pending_rewrites(rt, job_id)
    final = app.signature("autods.job.finalize", args=(job_id,), immutable=True)
    if not pending:
        final.delay()
        return 0
    header = [app.signature("autods.rewrite.shard", args=(s,), immutable=True) for s in pending]
    chord(header, final.on_error(_fail(job_id))).apply_async()
    return len(pending)


def send_batch(rt: Runtime, job_id: int, batch_no: int) -> None:
    """Send one batch's chord; finished chunks of a batch sent again return at once."""
    with session_scope(rt.engine) as db:
        params = db.scalar(select(Job.params).where(Job.id == job_id))
        chunk_nos = list(db.scalars(select(Chunk.chunk_no).where(
            Chunk.job_id == job_id, Chunk.batch_no == batch_no).order_by(Chunk.chunk_no)))
    batch_chord(job_id, batch_no, chunk_nos, JobOptions.from_params(params)).apply_async()


def publish(rt: Runtime, job_id: int, batch_no: int) -> list[str]:
    """A batch's chunks are done: resolve it when its turn comes, hand over to the next
    batch, then write its shards. Returns the names of the shards written or sent.

    One shard is written here. Several are written in parallel by a chord of shard tasks
    whose callback commits the batch, so the next batch can resolve meanwhile.
    """
    if lifecycle.job_failed(rt, job_id) or not resolve.take_turn(rt, job_id, batch_no):
        return []
    if resolve.resolve_batch(rt, job_id, batch_no):
        _publish(job_id, batch_no + 1).apply_async()
    pending = shards.pending_shards(rt, job_id, batch_no)
    if len(pending) > 1:
        shard_chord(job_id, batch_no, list(pending)).apply_async()
    else:
        for shard_id in pending:
            shards.write_planned_shard(rt, shard_id)
        commit(rt, job_id, batch_no)
    return list(pending.values())


def commit(rt: Runtime, job_id: int, batch_no: int) -> None:
    """The batch is published; the last batch of the job to commit closes it."""
    if lifecycle.commit_batch(rt, job_id, batch_no):
        app.signature("autods.job.finalize", args=(job_id,)).delay()


def repair_stalled(rt: Runtime) -> list[tuple[int, int]]:
    """Send again every batch that stopped moving (see ``autods.pipeline.repair``)."""
    stall_s = rt.settings.pipeline.stall_timeout_s
    if stall_s <= 0:
        return []
    claimed = repair.claim_stalled_batches(rt, stall_s)
    for job_id, batch_no in claimed:
        send_batch(rt, job_id, batch_no)
    return claimed
