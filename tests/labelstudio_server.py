"""A real Label Studio server for tests, and answers submitted to it as a person would.

Label Studio runs from its own virtualenv (``.venv-ls``, or the ``label-studio`` script named
by ``AUTODS_LABEL_STUDIO``) because its pinned dependencies (Django and friends) would fight
autods' own. Each server gets an empty data folder and a clean environment, so no setting of
the machine (a ``DJANGO_DB`` or ``POSTGRE_*`` variable would point it at PostgreSQL) leaks in,
and it never calls home (version check, analytics, Sentry).

A first start spends most of its time migrating a new database (about 40 s on two cores). If
the virtualenv holds an already migrated database (``migrated.sqlite3``, made at install
time), each server starts from a copy of it instead and is up in a few seconds.

The access token is a personal access token, obtained the way a person gets one: sign in on
the login page, then create the token from the account page's API. Legacy tokens stay off,
as they are on a new Label Studio.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
MIGRATED_DB = "migrated.sqlite3"
EMAIL = "annotator@example.com"
# A slow machine migrating from scratch still fits; a server that never comes up fails here.
_START_TIMEOUT_S = 240.0
_STOP_TIMEOUT_S = 10.0
_LISTENING = re.compile(r"Starting development server at (http://\S+?)/?$", re.MULTILINE)


@dataclass(frozen=True)
class LabelStudio:
    """A running server: its address, a personal access token and the account that owns it."""

    url: str
    token: str
    user_id: int
    email: str
    stop: Callable[[], None]


def label_studio_binary() -> Path:
    """The ``label-studio`` script to run, or a test failure that says how to install one."""
    named = os.environ.get("AUTODS_LABEL_STUDIO")
    binary = Path(named) if named else REPO / ".venv-ls" / "bin" / "label-studio"
    if not binary.exists():
        pytest.fail(f"Label Studio is not installed at {binary}: `make test` installs it into "
                    f".venv-ls, or set AUTODS_LABEL_STUDIO to a label-studio script")
    return binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(data_dir: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(data_dir),
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
        "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
        "LABEL_STUDIO_SENTRY_DSN": "",
        "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
        "PYTHONUNBUFFERED": "1",
    }


def _healthy(url: str) -> bool:
    try:
        response = httpx.get(f"{url}/health", timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("status") == "UP"


def _wait_until_up(proc: subprocess.Popen, log_path: Path) -> str:
    """The server's URL once it answers its health check.

    The URL comes from the server's own log line: Label Studio moves to the next port,
    silently, when the one it was given has been taken in the meantime.
    """
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        log = log_path.read_text(errors="replace")
        listening = _LISTENING.search(log)
        if listening and _healthy(listening.group(1)):
            return listening.group(1)
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Label Studio did not start (exit status {proc.poll()}):\n"
                               f"{log[-3000:]}")
        time.sleep(0.1)


def _personal_access_token(url: str, email: str, password: str) -> tuple[str, int]:
    """Sign in through the login form, then create a token as the account page does."""
    with httpx.Client(base_url=url, timeout=30) as browser:
        browser.get("/user/login/").raise_for_status()
        signed_in = browser.post("/user/login/", data={
            "email": email, "password": password,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"]})
        if signed_in.status_code != 302:  # the form is shown again when it is refused
            raise RuntimeError(f"signing in to Label Studio failed ({signed_in.status_code})")
        user_id = browser.get("/api/current-user/whoami").raise_for_status().json()["id"]
        created = browser.post("/api/token/", headers={"X-CSRFToken": browser.cookies["csrftoken"]})
        return created.raise_for_status().json()["token"], user_id


def _stopper(proc: subprocess.Popen) -> Callable[[], None]:
    def stop() -> None:
        if proc.poll() is not None:
            return
        # The server runs in its own session: its process group is it and its children.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=_STOP_TIMEOUT_S)

    return stop


@contextmanager
def running_label_studio(folder: Path) -> Iterator[LabelStudio]:
    """A new Label Studio with one account, its data under ``folder``; stopped on exit."""
    binary = label_studio_binary()
    data_dir = folder / "data"
    data_dir.mkdir(parents=True)
    migrated = binary.parent.parent / MIGRATED_DB
    if migrated.exists():
        shutil.copyfile(migrated, data_dir / "label_studio.sqlite3")
    # ``--password=VALUE``: a token may start with "-", which argparse takes for an option.
    password = secrets.token_urlsafe(16)
    log_path = folder / "server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(binary), "start", "--no-browser", "--internal-host", "127.0.0.1",
             "--port", str(_free_port()), "--data-dir", str(data_dir),
             "--username", EMAIL, f"--password={password}"],
            env=_environment(data_dir), stdout=log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    stop = _stopper(proc)
    try:
        url = _wait_until_up(proc, log_path)
        token, user_id = _personal_access_token(url, EMAIL, password)
        yield LabelStudio(url, token, user_id, EMAIL, stop)
    finally:
        stop()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    """One server for the test session (tests/conftest.py offers it): starting one costs
    seconds, and tests use their own projects."""
    with running_label_studio(tmp_path_factory.mktemp("label-studio")) as server:
        yield server


# An access token per server and personal token, renewed when the server refuses it (it
# lives five minutes; one server serves the whole session).
_ACCESS: dict[tuple[str, str], str] = {}


def _access(url: str, token: str, renew: bool = False) -> str:
    if renew or (url, token) not in _ACCESS:
        access = httpx.post(f"{url}/api/token/refresh/", json={"refresh": token}, timeout=30)
        _ACCESS[url, token] = access.raise_for_status().json()["access"]
    return _ACCESS[url, token]


def annotate(url: str, token: str, task_id: int, label: str | None) -> dict:
    """Submit an answer to a text task as the labelling page does; ``None`` skips the task.

    Label Studio stores any choice it is sent, even one its labelling config lacks, just as
    an answer given before the config changed would be stored.
    """
    result = [] if label is None else [{"from_name": "label", "to_name": "text",
                                        "type": "choices", "value": {"choices": [label]}}]
    body = {"result": result, "was_cancelled": label is None}
    for renew in (False, True):
        headers = {"Authorization": f"Bearer {_access(url, token, renew)}"}
        response = httpx.post(f"{url}/api/tasks/{task_id}/annotations/", headers=headers,
                              json=body, timeout=30)
        if response.status_code != 401:
            break
    return response.raise_for_status().json()
