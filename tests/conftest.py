"""Shared fixtures: fake AWS credentials and a real S3 HTTP server (moto) in a subprocess.

A separate server process, rather than in-process mocking, exercises the same HTTP path
boto3 takes against MinIO or AWS, and one server per session keeps the start-up cost (a
second or two) paid once. Tests share it, so each should use its own bucket name.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.labelstudio_server import label_studio  # noqa: F401 - a shared fixture

pytest_plugins = ["tests.local", "tests.promtext"]

# No test may reach an instance metadata endpoint (a link-local address) while boto3
# looks for credentials.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Variables that would point boto3 at a real account or endpoint.
_AWS_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL",
              "AWS_ENDPOINT_URL_S3")
_START_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def aws_env() -> Iterator[dict[str, str]]:
    """Fake credentials for the whole session, so no test can reach a real AWS account."""
    patch = pytest.MonkeyPatch()
    for name, value in _AWS_ENV.items():
        patch.setenv(name, value)
    for name in _AWS_UNSET:
        patch.delenv(name, raising=False)
    yield dict(_AWS_ENV)
    patch.undo()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moto_server() -> str:
    """The moto_server script of this interpreter's environment."""
    local = Path(sys.executable).parent / "moto_server"
    found = str(local) if local.exists() else shutil.which("moto_server")
    if found is None:
        pytest.fail("moto_server is not installed (pip install 'moto[server]')")
    return found


def _answers(url: str) -> bool:
    """True once the server replies at all; an HTTP error status is still a reply."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _wait_until_up(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not _answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"moto server at {url} did not start:\n{tail}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def s3_endpoint(aws_env, tmp_path_factory) -> Iterator[str]:
    """URL of a moto S3 server on a free local port, up for the whole session."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([_moto_server(), "-p", str(port), "-H", "127.0.0.1"],
                                stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _wait_until_up(proc, url, log_path)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
