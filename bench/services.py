"""Services the benchmarks start or borrow: a PostgreSQL database of their own, a Redis key
prefix of their own, a static HTTP server (nginx), and autods settings pointing at them."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from bench.common import log

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_BASE = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")


def pg_started_at(timeout: float = 300) -> str:
    """When the PostgreSQL server started; waits for it to accept connections. Other work
    on the machine may restart it, and a run spanning a restart is not a measurement."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
                return str(conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0])
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@contextlib.contextmanager
def pg_database(tag: str) -> Iterator[str]:
    """A fresh PostgreSQL database ``autods_bench_<tag>_<random>``, dropped afterwards."""
    import psycopg

    name = f"autods_bench_{tag}_{uuid.uuid4().hex[:8]}"
    pg_started_at()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_BASE}/{name}"
    try:
        yield url
    finally:
        from autods.db.session import engine_for

        engine_for.cache_clear()
        pg_started_at()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_prefix() -> Iterator[str]:
    """A unique Celery key prefix; every key under it is deleted afterwards."""
    import redis

    prefix = f"autods-bench-{uuid.uuid4().hex[:8]}:"
    try:
        yield prefix
    finally:
        for db in (0, 1):
            client = redis.Redis.from_url(f"{REDIS_URL}/{db}")
            keys = list(client.scan_iter(f"{prefix}*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start:start + 1000])


def service_settings(pg_url: str, prefix: str, storage_dir: Path):
    """autods settings for the distributed pipeline: Redis broker, PostgreSQL, a folder."""
    from autods.config import Settings

    s = Settings()
    s.allow_private_networks = True
    s.database.url = pg_url
    s.broker.url = f"{REDIS_URL}/0"
    s.broker.result_backend = f"{REDIS_URL}/1"
    s.broker.key_prefix = prefix
    s.storage.url = storage_dir.resolve().as_uri()
    s.clip.enabled = False
    s.label.lfs = None
    return s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None)


_NGINX_CONF = """\
{user}worker_processes 1;
pid {state}/nginx.pid;
error_log {state}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{ image/jpeg jpg jpeg; text/plain txt; }}
    default_type application/octet-stream;
    client_body_temp_path {state}/tmp/body;
    proxy_temp_path {state}/tmp/proxy;
    fastcgi_temp_path {state}/tmp/fastcgi;
    uwsgi_temp_path {state}/tmp/uwsgi;
    scgi_temp_path {state}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


class StaticServer:
    """Serves ``root`` on 127.0.0.1 with nginx (one worker, no access log); without nginx,
    with Python's threaded ``http.server`` in a subprocess (then ``kind`` says so)."""

    def __init__(self, root: Path, state: Path) -> None:
        self.root, self.state = root.resolve(), state.resolve()
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.kind = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StaticServer:
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "tmp").mkdir(exist_ok=True)
        self.port = free_port()
        binary = nginx_binary()
        log_file = (self.state / "server.log").open("ab")
        if binary:
            user = pwd.getpwuid(os.geteuid()).pw_name
            conf = self.state / "nginx.conf"
            conf.write_text(_NGINX_CONF.format(
                user=f"user {user};\n" if os.geteuid() == 0 else "", state=self.state,
                port=self.port, root=self.root))
            version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr
            self.kind = version.strip().split(":", 1)[-1].strip() or "nginx"
            cmd = [binary, "-p", str(self.state), "-e", str(self.state / "error.log"),
                   "-c", str(conf), "-g", "daemon off;"]
        else:
            self.kind = "python http.server (nginx not installed)"
            cmd = [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
                   "--directory", str(self.root)]
        self.proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
        log_file.close()
        deadline = time.monotonic() + 20
        while not _answers(self.url + "/"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.state / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"static server did not start: {tail}")
            time.sleep(0.05)
        log(f"serving {self.root} at {self.url} with {self.kind}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # nginx: SIGQUIT is a graceful stop; http.server stops on SIGTERM.
            self.proc.send_signal(signal.SIGQUIT if "http.server" not in self.kind
                                  else signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> StaticServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
