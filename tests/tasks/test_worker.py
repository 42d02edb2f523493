"""``autods worker`` starts Celery's worker itself, without the ``celery`` command: the node
it names, on the queues it is given, with task events on, until a warm shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from autods.embedded import embedded_settings

READY_S = 120


def test_autods_worker_serves_its_queues_until_told_to_stop(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    env = {**os.environ, **settings.to_env(), "AUTODS_WORKER_PRELOAD": "none"}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autods.cli", "worker", "--queues", "shard,ingest",
             "--concurrency", "1", "--hostname", "probe@%h"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_S
        while "ready." not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(READY_S)
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert f"probe@{socket.gethostname()} ready." in text
    assert ".> concurrency: 1 (prefork)" in text
    assert ".> task events: ON" in text
    queues = [line.split()[1] for line in text.splitlines() if "exchange=" in line]
    assert queues == ["ingest", "shard"]
    assert "Warm shutdown" in text
