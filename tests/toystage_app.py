"""The Celery app of a worker process whose stage table has the toy row: ``celery -A
tests.toystage_app:app worker`` imports this first, so the table has the row before the
app is configured and the stage tasks are generated from it."""

from autods.pipeline import stagetable
from tests.toystage import with_toy_stage

stagetable.CHUNK_STAGES = with_toy_stage()

from autods.tasks.app import app  # noqa: E402 - after the table has the row

__all__ = ["app"]
