"""From bucket notifications to a job: each created image object is ingested once.

Replays are common (webhook retries, at-least-once queues). Every object version is
inserted under a unique key with this delivery's claim token; the rows that carry our
token are the ones no earlier or concurrent delivery has taken, and only they become
job items.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update

from autods.core.records import SourceItem
from autods.core.s3events import CreatedObject
from autods.core.validate import is_image_name
from autods.db.models import S3Event
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


def ingest_created(rt: Runtime, objects: list[CreatedObject], dataset: str,
                   options: JobOptions, start: StartJob) -> EventOutcome:
    """Claim new objects and start one job for them with ``start``."""
    images = [o for o in objects if is_image_name(o.key)]
    unique = list({o.dedup_key: o for o in images}.values())
    claim = uuid.uuid4().hex
    with session_scope(rt.engine) as db:
        insert_ignore(db, S3Event, [
            {"dedup_key": o.dedup_key, "bucket": o.bucket, "key": o.key, "etag": o.etag,
             "claim": claim}
            for o in unique
        ], conflict=("dedup_key",))
        mine = set(db.scalars(select(S3Event.dedup_key).where(S3Event.claim == claim)))
    fresh = [o for o in unique if o.dedup_key in mine]
    outcome = EventOutcome(None, len(fresh), len(images) - len(fresh), len(objects) - len(images))
    if not fresh:
        return outcome
    items = [SourceItem(ordinal=i, uri=o.uri, source=f"s3-event:{o.bucket}")
             for i, o in enumerate(fresh)]
    outcome.job_id = start(rt, [o.uri for o in fresh], dataset, options, items=items)
    with session_scope(rt.engine) as db:
        db.execute(update(S3Event).where(S3Event.claim == claim).values(job_id=outcome.job_id))
    return outcome
