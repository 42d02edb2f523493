"""Fault injectors for the reliability tests: killing workers, a Redis of our own that can
be restarted, and an S3 proxy that fails or slows requests on demand."""

from __future__ import annotations

import http.client
import http.server
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlparse


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct child processes (a Celery worker's pool processes)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def kill9(pid: int) -> bool:
    try:
        import os

        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


class RedisServer:
    """A redis-server with an append-only file, so a restart keeps queued messages."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ping = subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                  capture_output=True, text=True)
            if ping.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True)
        if self.proc is not None:
            self.proc.wait(timeout=20)

    def restart(self, down_for: float = 1.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


class FaultyS3Proxy:
    """Forwards to an S3 server; while ``failing``, answers a share of requests with 503
    SlowDown and delays others, the way an overloaded object store behaves.

    The outage ends once it has failed ``faults`` requests and delayed ``faults`` others,
    not after a fixed time: a timer would inject fewer faults on a slow machine, where
    fewer requests fall inside it."""

    def __init__(self, upstream: str, fail_ratio: float = 0.3, delay_s: float = 0.3,
                 faults: int = 12, seed: int = 7) -> None:
        target = urlparse(upstream)
        self.host, self.port_up = target.hostname, target.port
        self.failing = False
        self.fail_ratio, self.delay_s, self.faults = fail_ratio, delay_s, faults
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.failed = self.delayed = self.forwarded = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    roll = proxy.rng.random()
                    fail = proxy.failing and roll < proxy.fail_ratio
                    slow = proxy.failing and not fail and roll < 2 * proxy.fail_ratio
                    proxy.failed += fail
                    proxy.delayed += slow
                    if proxy.failed >= proxy.faults and proxy.delayed >= proxy.faults:
                        proxy.failing = False
                if fail:
                    payload = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown'
                               b"</Code><Message>Reduce your request rate.</Message></Error>")
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if slow:
                    time.sleep(proxy.delay_s)
                conn = http.client.HTTPConnection(proxy.host, proxy.port_up, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()
                with proxy.lock:
                    proxy.forwarded += 1

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
