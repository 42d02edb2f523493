"""The batch step's dataset lock serialises batch steps, not ingest: an asset can be
inserted into a dataset (its foreign key checked) while a batch step holds the lock."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import OperationalError

from autods.db.models import Asset
from autods.db.session import engine_for, session_scope
from autods.pipeline.resolve import lock_dataset
from tests.integration.conftest import new_dataset

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def test_ingest_inserts_assets_while_a_batch_step_holds_the_dataset(pg_url):
    engine = engine_for(pg_url)
    with session_scope(engine) as db:
        dataset_id = new_dataset(db).id
    with session_scope(engine) as step:
        assert lock_dataset(step, dataset_id).id == dataset_id
        with session_scope(engine) as ingest:  # would wait for the step under FOR UPDATE
            ingest.execute(text("SET LOCAL lock_timeout = '5s'"))
            ingest.execute(insert(Asset).values(
                dataset_id=dataset_id, sha256="ab" * 32, modality="image", mime="image/png",
                ext="png", nbytes=1, storage_key="p", created_at=NOW))
        # A second batch step still waits.
        with (pytest.raises(OperationalError, match="lock timeout"),
              session_scope(engine) as other_step):
            other_step.execute(text("SET LOCAL lock_timeout = '200ms'"))
            lock_dataset(other_step, dataset_id)
