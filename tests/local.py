"""Fixtures of a local runtime (SQLite, folder store, tiny CLIP) with the Celery app on the
in-memory broker: eager tasks, or a real worker on threads. Loaded as a plugin by
``tests/conftest.py`` for every test that asks for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autods.config import Settings
from autods.db.session import upgrade
from autods.pipeline.runtime import Runtime, set_runtime


def local_settings(root: Path, **clip) -> Settings:
    settings = Settings()
    settings.database.url = f"sqlite:///{root / 'meta.sqlite'}"
    settings.storage.url = (root / "objects").as_uri()
    settings.broker.url = "memory://localhost/"
    settings.broker.result_backend = "cache+memory://"
    settings.clip.model = "autods-tiny-vit"
    settings.clip.pretrained = "random"
    settings.clip.device = "cpu"
    settings.clip.torch_threads = 1
    settings.pipeline.chunk_size = 4
    settings.pipeline.batch_size = 8
    settings.pipeline.shard_size = 5
    return settings


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    from autods.tasks.app import app, configure

    settings = local_settings(tmp_path)
    upgrade(settings.database.url)
    rt = Runtime(settings)
    set_runtime(rt)
    configure(app, settings)
    # kombu's in-memory transport polls its queues once a second by default: every chord
    # step, and the worker's shutdown at teardown, would wait for the next poll.
    app.conf.broker_transport_options = {**app.conf.broker_transport_options,
                                         "polling_interval": 0.02}
    # The in-memory broker lives as long as the process: a test that sends a job without
    # a worker must not leave its messages to the next test's worker (and database).
    app.control.purge()
    yield rt
    app.control.purge()
    set_runtime(None)


@pytest.fixture
def eager(runtime: Runtime) -> Iterator[Runtime]:
    from autods.tasks.app import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield runtime
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False


@pytest.fixture
def memory_worker(runtime: Runtime):
    """A real worker (thread pool) consuming every queue of the in-memory broker."""
    from celery.contrib.testing.worker import start_worker

    from autods.pipeline.stagetable import queues
    from autods.tasks.app import app

    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False,
                      queues=list(queues()), shutdown_timeout=30) as worker:
        yield worker
