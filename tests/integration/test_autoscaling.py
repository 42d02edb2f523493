"""The chart's KEDA triggers watch the Redis lists that the real Celery app fills.

The chart is rendered with a broker URL and key prefix; the Celery app is configured the
way the chart's ConfigMap configures the workers; tasks are sent with no worker running,
so they wait in Redis. The list named by each ScaledObject must then hold exactly the
tasks of its class. Each test uses its own key prefix and deletes its keys at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from autods.config import Settings
from tests.test_helm import RELEASE, by_kind, render, triggers

pytestmark = pytest.mark.integration

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
BROKER_DB = 0
N_TASKS = 7


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"autods-it-keda-{uuid.uuid4().hex[:8]}:"
    yield prefix
    for db in (BROKER_DB, BROKER_DB + 1):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        assert list(client.scan_iter(match=f"{prefix}*", count=1000)) == []
        client.close()


@pytest.fixture
def celery_app() -> Iterator:
    """The project's Celery app, restored to its import-time configuration afterwards."""
    from autods.tasks.app import app, configure

    yield app
    app.pool.force_close_all()
    configure(app, Settings())


def rendered(prefix: str, **autoscaling) -> tuple[dict[str, str], dict[str, dict]]:
    """(the workers' ConfigMap data, ScaledObjects by worker class)."""
    values = {
        "broker": {
            "url": f"redis://{REDIS_HOST}:{REDIS_PORT}/{BROKER_DB}",
            "resultBackend": f"redis://{REDIS_HOST}:{REDIS_PORT}/{BROKER_DB + 1}",
            "keyPrefix": prefix,
        },
        "autoscaling": autoscaling,
    }
    objects = render(values)
    config = by_kind(objects, "ConfigMap")[f"{RELEASE}-config"]["data"]
    scaled = {
        name.removeprefix(f"{RELEASE}-worker-"): obj
        for name, obj in by_kind(objects, "ScaledObject").items()
    }
    return config, scaled


def configure_like_the_chart(app, config: dict[str, str], monkeypatch) -> Settings:
    """Settings read from the ConfigMap's variables, as a worker pod reads them."""
    from autods.tasks.app import configure

    for key, value in config.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    db = int(config["AUTODS_BROKER_URL"].rsplit("/", 1)[1])
    assert settings.broker.url == f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    assert settings.broker.result_backend == f"redis://{REDIS_HOST}:{REDIS_PORT}/{db + 1}"
    assert settings.broker.key_prefix == config["AUTODS_BROKER_KEY_PREFIX"]
    configure(app, settings)
    return settings


def watched(scaled_object: dict) -> tuple[redis.Redis, str]:
    """A client on the database the ScaledObject's trigger reads, and its list name."""
    (trigger,) = triggers(scaled_object)
    meta = trigger["metadata"]
    host, port = meta["address"].rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port), db=int(meta["databaseIndex"]))
    return client, meta["listName"]


def test_gpu_scaled_object_counts_the_waiting_gpu_tasks(
    prefix: str, celery_app, monkeypatch
) -> None:
    config, scaled = rendered(prefix)
    # The workers' prefix and the prefix in the lists KEDA watches are one value.
    assert config["AUTODS_BROKER_KEY_PREFIX"] == prefix
    gpu_client, gpu_list = watched(scaled["gpu"])
    assert gpu_list == f"{prefix}gpu"
    assert int(triggers(scaled["gpu"])[0]["metadata"]["databaseIndex"]) == BROKER_DB
    assert scaled["gpu"]["spec"]["minReplicaCount"] == 0
    cpu_client, cpu_list = watched(scaled["cpu"])
    assert cpu_list == f"{prefix}preprocess"
    assert gpu_client.llen(gpu_list) == 0

    configure_like_the_chart(celery_app, config, monkeypatch)
    for i in range(N_TASKS):
        celery_app.send_task("autods.embed.chunk", args=[0, i])

    assert gpu_client.llen(gpu_list) == N_TASKS
    assert cpu_client.llen(cpu_list) == 0
    for queue_class, obj in scaled.items():
        if queue_class != "gpu":
            client, name = watched(obj)
            assert client.llen(name) == 0, queue_class
    # No other list of this prefix holds messages: the watched list is the whole queue.
    lists = {
        key.decode(): gpu_client.llen(key)
        for key in gpu_client.scan_iter(match=f"{prefix}*", count=1000)
        if gpu_client.type(key) == b"list"
    }
    assert lists == {gpu_list: N_TASKS}
    gpu_client.close()
    cpu_client.close()


def test_priority_lists_match_celery_priority_keys(prefix: str, celery_app, monkeypatch) -> None:
    config, scaled = rendered(prefix, priorityKeys=True)
    gpu_lists = [t["metadata"]["listName"] for t in triggers(scaled["gpu"])]
    assert gpu_lists[0] == f"{prefix}gpu"
    db = int(triggers(scaled["gpu"])[0]["metadata"]["databaseIndex"])
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)

    configure_like_the_chart(celery_app, config, monkeypatch)
    celery_app.send_task("autods.embed.chunk", args=[0, 0])
    celery_app.send_task("autods.embed.chunk", args=[0, 1], priority=5)
    celery_app.send_task("autods.embed.chunk", args=[0, 2], priority=9)

    lengths = {name: client.llen(name) for name in gpu_lists}
    assert sum(lengths.values()) == 3, lengths
    assert lengths[f"{prefix}gpu"] == 1
    assert lengths[f"{prefix}gpu\x06\x163"] == 1
    assert lengths[f"{prefix}gpu\x06\x169"] == 1
    client.close()
