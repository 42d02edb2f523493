"""Kill it, restart what it depends on, make storage fail: nothing lost, nothing twice.

Every test runs a real job on Celery worker processes and then checks the published set of
sha256 against the valid inputs, that no sample appears twice, that every shard in the
index is complete and matches its digest, and that the job's status is right.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import boto3
import pytest

import autods
from autods.config import Settings
from autods.embedded import WorkerProcess
from autods.pipeline.stagetable import queues
from autods.pipeline.status import job_status
from tests.datagen import image_folder
from tests.integration.conftest import service_settings
from tests.integration.faults import FaultyS3Proxy, RedisServer, children, kill9
from tests.integration.held_lfs import HOLD_DIR_ENV

pytestmark = pytest.mark.integration


def _settings(pg_url: str, tmp_path: Path, broker: str = "redis://127.0.0.1:6379") -> Settings:
    s = service_settings(pg_url, f"faults-{uuid.uuid4().hex[:8]}:", "unused", "unused")
    s.broker.url, s.broker.result_backend = f"{broker}/0", f"{broker}/1"
    s.broker.visibility_timeout_s = 8
    s.pipeline.stall_timeout_s, s.pipeline.stall_check_interval_s = 15, 2
    s.storage.url, s.storage.endpoint_url = (tmp_path / "objects").as_uri(), None
    s.pipeline.chunk_size, s.pipeline.batch_size, s.pipeline.shard_size = 16, 64, 25
    return s


def _published(index: dict, read) -> dict[str, int]:
    """sha256 -> how many times it appears across the indexed shards (verified bytes)."""
    seen: dict[str, int] = {}
    for entry in index["shardlist"]:
        data = read(entry["url"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], "partial or stale shard"
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    sha = json.loads(tar.extractfile(m).read())["sha256"]
                    seen[sha] = seen.get(sha, 0) + 1
    return seen


def _local_output(root: Path) -> dict[str, int]:
    index = json.loads((root / "index.json").read_text())
    return _published(index, lambda url: (root / url).read_bytes())


def _assert_exactly_once(seen: dict[str, int], expected: set[str]) -> None:
    duplicated = {s: n for s, n in seen.items() if n > 1}
    print(f"[reliability] valid={len(expected)} published={len(seen)} "
          f"lost={len(expected - set(seen))} duplicated={len(duplicated)}")
    assert not duplicated, f"published twice: {duplicated}"
    assert set(seen) == expected, (f"lost {len(expected - set(seen))}, "
                                   f"unexpected {len(set(seen) - expected)}")


def _workers(settings: Settings, logdir: Path) -> dict[str, WorkerProcess]:
    tag = uuid.uuid4().hex[:4]
    procs = {q: WorkerProcess(settings, 1, logdir / f"{q}.log", (q,), f"{q}-{tag}@%h")
             for q in queues()}
    for p in procs.values():
        p.start()
    for p in procs.values():
        p.wait_ready()
    return procs


def _wait(job, timeout: float = 300):
    status = job.wait(timeout=timeout, interval=0.3)
    assert status.done, f"job did not finish: {status.stages}"
    return status


def _kill_held_label_task(hold: Path, procs: dict[str, WorkerProcess], job) -> int:
    """Wait until the label queue's pool process holds its task (``held_lfs``), kill it,
    let the task run when it comes back; the pid killed."""
    held = hold / "held"
    while not held.exists():
        assert not job.status().done, "the job ended without calling the held LF"
        time.sleep(0.05)
    pid = int(held.read_text())
    assert pid in children(procs["label"].proc.pid)
    assert kill9(pid)
    (hold / "release").touch()
    return pid


def test_kill_9_workers_mid_chunk_on_every_queue(pg_url, tmp_path, monkeypatch):
    exp = image_folder(tmp_path / "in", n_unique=96, n_exact=8, n_near=8, bad=True)
    settings = _settings(pg_url, tmp_path)
    settings.clip.enabled = True
    hold = tmp_path / "hold"
    hold.mkdir()
    monkeypatch.setenv(HOLD_DIR_ENV, str(hold))
    procs = _workers(settings, tmp_path / "logs")
    kills: list[str] = []
    try:
        job = autods.submit([str(tmp_path / "in")], "kill9", settings=settings,
                            output_url=(tmp_path / "out").as_uri(),
                            lfs="tests.integration.held_lfs")
        # One kill is sure to land mid-task: the label task held by its LF.
        _kill_held_label_task(hold, procs, job)
        kills.append("label-held")
        # Kill each queue's busy pool process twice, then the whole ingest worker once
        # (its unacked task returns to the queue after the visibility timeout).
        for _ in range(2):
            for queue in queues():
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and not job.status().done:
                    log = procs[queue].logfile.read_text(errors="replace")
                    if log.count(" received") > log.count(" succeeded in"):
                        break
                    time.sleep(0.02)
                for child in children(procs[queue].proc.pid):
                    if kill9(child):
                        kills.append(queue)
        if kill9(procs["ingest"].proc.pid):
            kills.append("ingest-main")
            procs["ingest"].proc.wait()
            procs["ingest"] = WorkerProcess(settings, 1, tmp_path / "logs" / "ingest2.log",
                                            ("ingest",), "ingest2@%h").start()
        status = _wait(job)
    finally:
        for p in procs.values():
            p.stop()
    lost_workers = sum(p.logfile.read_text(errors="replace").count("WorkerLostError")
                       for p in procs.values())
    print(f"[reliability] kill -9: {len(kills)} kills {kills}, {lost_workers} WorkerLostError")
    # The other kills land mid-task or between tasks, as timing has it; these two are sure.
    assert kills[0] == "label-held" and kills[-1] == "ingest-main", kills
    assert "WorkerLostError" in procs["label"].logfile.read_text(errors="replace")
    assert status.status == "succeeded", status.error
    _assert_exactly_once(_local_output(tmp_path / "out"), set(exp.unique))
    assert status.statuses["exact_duplicate"] == 8 and status.statuses["near_duplicate"] == 8
    assert status.reasons["corrupt_image"] == 1 and status.reasons["empty"] == 1


@pytest.mark.soak
@pytest.mark.timeout(1200)
def test_kill_9_storm_for_a_whole_job(pg_url, tmp_path):
    """Soak: every second a random queue's busy pool process dies, every tenth time its
    whole worker (replaced once the next is ready, as a deployment restarts a pod), until
    the job is done. Messages of dead workers come back by the visibility-timeout sweep."""
    import random

    exp = image_folder(tmp_path / "in", n_unique=3000, n_exact=64, n_near=64, bad=True)
    settings = _settings(pg_url, tmp_path)
    settings.clip.enabled = True
    procs = _workers(settings, tmp_path / "logs")
    rng, kills = random.Random(7), 0
    try:
        job = autods.submit([str(tmp_path / "in")], "storm", settings=settings,
                            output_url=(tmp_path / "out").as_uri(), lfs="examples.sample_lfs")
        while not job.status().done:
            time.sleep(1.0)
            queue = rng.choice(queues())
            if kills % 10 == 9 and kill9(procs[queue].proc.pid):
                procs[queue].proc.wait()
                procs[queue] = WorkerProcess(settings, 1, tmp_path / "logs" / f"{queue}{kills}.log",
                                             (queue,), f"{queue}{kills}@%h").start()
                procs[queue].wait_ready()
            else:
                for child in children(procs[queue].proc.pid):
                    kill9(child)
            kills += 1
        status = _wait(job)
    finally:
        for p in procs.values():
            p.stop()
    lost_workers = sum(p.read_text(errors="replace").count("WorkerLostError")
                       for p in (tmp_path / "logs").glob("*.log"))
    print(f"[reliability] kill -9 storm: {kills} kills, {lost_workers} WorkerLostError")
    assert status.status == "succeeded", status.error
    _assert_exactly_once(_local_output(tmp_path / "out"), set(exp.unique))


def test_a_message_lost_by_the_broker_is_sent_again_by_the_watchdog(pg_url, tmp_path):
    """Redis can lose a message outright (it dies between handing it to a worker and
    recording it as unacknowledged). Here one chunk's first message is removed from its
    queue before any worker runs; the shard worker's stall watchdog sends its batch again."""
    import redis

    exp = image_folder(tmp_path / "in", n_unique=40, n_exact=4)
    settings = _settings(pg_url, tmp_path)
    settings.clip.enabled = False
    job = autods.submit([str(tmp_path / "in")], "lost", settings=settings,
                        output_url=(tmp_path / "out").as_uri())
    client = redis.Redis.from_url(settings.broker.url)
    queue = f"{settings.broker.key_prefix}ingest"
    assert client.llen(queue) == 3 and client.rpop(queue) is not None
    procs = _workers(settings, tmp_path / "logs")
    try:
        status = _wait(job, timeout=120)
    finally:
        for p in procs.values():
            p.stop()
    repairs = procs["shard"].logfile.read_text(errors="replace")
    assert "autods.job.repair" in repairs and "[[" in repairs  # a batch was claimed
    assert status.status == "succeeded", status.error
    _assert_exactly_once(_local_output(tmp_path / "out"), set(exp.unique))


def _fault_after_32_ingested(settings: Settings, tmp_path: Path, fault) -> None:
    """Run an 84-input job, call ``fault()`` once 32 inputs are ingested, check the output."""
    exp = image_folder(tmp_path / "in", n_unique=80, n_exact=4)
    settings.clip.enabled = False
    procs = _workers(settings, tmp_path / "logs")
    try:
        job = autods.submit([str(tmp_path / "in")], f"fault-{uuid.uuid4().hex[:6]}",
                            settings=settings, output_url=(tmp_path / "out").as_uri())
        while job.status().stages["ingest"] < 32:
            time.sleep(0.05)
        fault()
        status = _wait(job)
    finally:
        for p in procs.values():
            p.stop()
    assert status.status == "succeeded", status.error
    _assert_exactly_once(_local_output(tmp_path / "out"), set(exp.unique))


def test_redis_restart_mid_job_loses_nothing(pg_url, tmp_path):
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        _fault_after_32_ingested(_settings(pg_url, tmp_path, broker=redis.url), tmp_path,
                                 lambda: redis.restart(down_for=2.0))
    finally:
        redis.stop()


def _pg_restart() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart",
                    "-m", "immediate"], check=True, capture_output=True, timeout=300)


@pytest.mark.exclusive
def test_postgres_restart_mid_job_loses_nothing(pg_url, tmp_path):
    _fault_after_32_ingested(_settings(pg_url, tmp_path), tmp_path, _pg_restart)


def test_s3_failing_and_slow_for_a_while_loses_nothing(pg_url, s3_endpoint, tmp_path):
    proxy = FaultyS3Proxy(s3_endpoint, fail_ratio=0.3, delay_s=0.3, faults=12)
    bucket = f"faults-{uuid.uuid4().hex[:6]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket)
    exp = image_folder(tmp_path / "in", n_unique=48, n_exact=4)
    settings = _settings(pg_url, tmp_path)
    settings.clip.enabled = False
    settings.storage.url, settings.storage.endpoint_url = f"s3://{bucket}/objects", proxy.url
    procs = _workers(settings, tmp_path / "logs")
    try:
        proxy.failing = True
        job = autods.submit([str(tmp_path / "in")], "s3-faults", settings=settings,
                            output_url=f"s3://{bucket}/out")
        status = _wait(job)
    finally:
        for p in procs.values():
            p.stop()
        proxy.close()
    print(f"[reliability] s3: {proxy.failed} answered 503, {proxy.delayed} delayed, "
          f"{proxy.forwarded} forwarded")
    assert proxy.failed >= 12 and proxy.delayed >= 12 and not proxy.failing
    assert status.status == "succeeded", status.error
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")

    def read(key: str) -> bytes:
        return s3.get_object(Bucket=bucket, Key=f"out/{key}")["Body"].read()

    _assert_exactly_once(_published(json.loads(read("index.json")), read), set(exp.unique))


def test_twenty_jobs_at_once_all_complete_and_results_expire(pg_url, tmp_path):
    settings = _settings(pg_url, tmp_path)
    settings.clip.enabled = False
    settings.broker.result_expires_s = 600
    folders = []
    for j in range(20):
        exp = image_folder(tmp_path / f"in{j}", n_unique=6, seed0=20_000 + 10 * j)
        folders.append((tmp_path / f"in{j}", exp))
    procs = {"all": WorkerProcess(settings, 2, tmp_path / "all.log", queues(), "all@%h").start()}
    procs["all"].wait_ready()
    try:
        jobs = [autods.submit([str(f)], f"many-{j}", settings=settings,
                              output_url=(tmp_path / f"out{j}").as_uri())
                for j, (f, _) in enumerate(folders)]
        statuses = [_wait(job) for job in jobs]
    finally:
        procs["all"].stop()
    assert [s.status for s in statuses] == ["succeeded"] * 20
    for j, (_, exp) in enumerate(folders):
        _assert_exactly_once(_local_output(tmp_path / f"out{j}"), set(exp.unique))
    import redis

    client = redis.Redis.from_url(settings.broker.result_backend)
    keys = list(client.scan_iter(f"{settings.broker.key_prefix}celery-task-meta-*"))
    assert keys and all(0 < client.ttl(k) <= 600 for k in keys)
    assert job_status(jobs[0].runtime, jobs[0].id).statuses == {"published": 6}
