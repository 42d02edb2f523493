"""From bucket notifications to a job: each created image object is ingested once.

Replays are common (webhook retries, at-least-once queues). Every object version is
inserted under a unique key with this delivery's claim token; the rows that carry our
token are the ones no earlier or concurrent delivery has taken, and only they become
job items.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update

from autods.core.records import ItemStatus, JobState, SourceItem
from autods.core.s3events import Notification
from autods.core.validate import is_image_name
from autods.db.models import Item, Job, S3Event
from autods.db.session import session_scope
from autods.db.upsert import insert_ignore
from autods.pipeline.options import JobOptions
from autods.pipeline.runtime import Runtime

#: ``start_job``'s shape (``autods.tasks.canvas``): plan the items given, send the job.
StartJob = Callable[..., int]


@dataclass(slots=True)
class EventOutcome:
    job_id: int | None
    accepted: int
    duplicates: int
    ignored: int
    rejected: list[tuple[int, str]] = field(default_factory=list)


def ingest_created(rt: Runtime, note: Notification, dataset: str, options: JobOptions,
                   start: StartJob) -> EventOutcome:
    """Claim new objects and start one job for them with ``start``.

    Exactly once holds for what gets published: an object whose job failed, or whose item
    failed in it, is claimed again by the next delivery, and claims are released when the
    job cannot even start.
    """
    images = [o for o in note.created if is_image_name(o.key)]
    unique = list({o.dedup_key: o for o in images}.values())
    claim = uuid.uuid4().hex
    with session_scope(rt.engine) as db:
        insert_ignore(db, S3Event, [
            {"dedup_key": o.dedup_key, "bucket": o.bucket, "key": o.key, "etag": o.etag,
             "claim": claim}
            for o in unique
        ], conflict=("dedup_key",))
        _take_over_unpublished(db, [o.dedup_key for o in unique], claim)
        mine = set(db.scalars(select(S3Event.dedup_key).where(S3Event.claim == claim)))
    fresh = [o for o in unique if o.dedup_key in mine]
    outcome = EventOutcome(None, len(fresh), len(images) - len(fresh),
                           note.ignored + len(note.created) - len(images), note.rejected)
    if not fresh:
        return outcome
    items = [SourceItem(ordinal=i, uri=o.uri, source=f"s3-event:{o.bucket}")
             for i, o in enumerate(fresh)]
    try:
        outcome.job_id = start(rt, [o.uri for o in fresh], dataset, options, items=items)
    except BaseException:
        with session_scope(rt.engine) as db:
            db.execute(delete(S3Event).where(S3Event.claim == claim))
        raise
    with session_scope(rt.engine) as db:
        db.execute(update(S3Event).where(S3Event.claim == claim).values(job_id=outcome.job_id))
    return outcome


def _take_over_unpublished(db, keys: list[str], claim: str) -> None:
    """Claim again the objects of earlier deliveries that were never published: their
    job failed, or their own item did. Each row changes hands only if its claim is still
    the one read (two deliveries at once cannot both take it)."""
    for start in range(0, len(keys), 1000):
        rows = db.execute(
            select(S3Event.id, S3Event.claim, S3Event.bucket, S3Event.key, S3Event.job_id,
                   Job.status)
            .join(Job, Job.id == S3Event.job_id)
            .where(S3Event.dedup_key.in_(keys[start:start + 1000]), S3Event.claim != claim)
        ).all()
        running = [r for r in rows if r.status != JobState.FAILED]
        failed_items = set(db.execute(
            select(Item.job_id, Item.uri).where(
                Item.job_id.in_({r.job_id for r in running}),
                Item.uri.in_({f"s3://{r.bucket}/{r.key}" for r in running}),
                Item.status == ItemStatus.FAILED)
        ).all()) if running else set()
        for r in rows:
            lost = (r.job_id, f"s3://{r.bucket}/{r.key}") in failed_items
            if lost or r.status == JobState.FAILED:
                db.execute(update(S3Event).where(S3Event.id == r.id, S3Event.claim == r.claim)
                           .values(claim=claim, job_id=None))
