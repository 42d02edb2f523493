"""Real services for integration tests: PostgreSQL, Redis, an S3 server, an HTTP server and
Celery worker processes.

Each session gets its own PostgreSQL database and its own Redis key prefix, so runs never
see each other's jobs or queues, and both are removed at the end.
"""

from __future__ import annotations

import functools
import http.server
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from autods.config import Settings

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"autods_it_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    from autods.db.session import upgrade

    upgrade(url)  # what `autods db upgrade` does before a deployment's first job
    yield url
    from sqlalchemy import Engine  # noqa: F401 - engines of this process are disposed below

    from autods.db.session import engine_for

    engine_for.cache_clear()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    prefix = f"autods-it-{uuid.uuid4().hex[:8]}:"
    yield prefix
    for db in (0, 1):
        client = redis.Redis.from_url(f"{REDIS_URL}/{db}")
        keys = list(client.scan_iter(f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="session")
def http_root(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on loopback: (folder, base URL)."""
    root = tmp_path_factory.mktemp("www")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def service_settings(pg_url: str, redis_prefix: str, s3_endpoint: str, bucket: str) -> Settings:
    s = Settings()
    s.allow_private_networks = True
    s.database.url = pg_url
    s.broker.url = f"{REDIS_URL}/0"
    s.broker.result_backend = f"{REDIS_URL}/1"
    s.broker.key_prefix = redis_prefix
    s.storage.url = f"s3://{bucket}/objects"
    s.storage.endpoint_url = s3_endpoint
    s.clip.model = "autods-tiny-vit"
    s.clip.pretrained = "random"
    s.clip.device = "cpu"
    s.clip.torch_threads = 1
    return s


def new_dataset(db, **columns):
    """A dataset of its own (a unique name) in ``db``, flushed so that it has its id: the
    tests of a session share one database and never meet each other's rows."""
    from autods.db.models import Dataset

    dataset = Dataset(**{"name": f"it-{uuid.uuid4().hex}", "output_url": "file:///o",
                         "near_k": 4, **columns})
    db.add(dataset)
    db.flush()
    return dataset
