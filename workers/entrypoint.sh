#!/bin/sh
# Entrypoint of the autods worker images.
#
# Before running the command, waits until the hosts named in AUTODS_DATABASE_URL and
# AUTODS_BROKER_URL accept TCP connections, so a worker started next to a fresh
# PostgreSQL/Redis (or before them, as Kubernetes may) does not crash-loop. Only the
# variable name and host:port are printed, never the URL (it may carry a password).
#
#   AUTODS_WAIT_TIMEOUT_S  seconds to wait in total (default 60); 0 skips the wait.
#
# The command is exec'd so it receives signals directly: on SIGTERM a Celery worker
# stops taking tasks and finishes the ones it holds (warm shutdown).
set -eu

if [ "${AUTODS_WAIT_TIMEOUT_S:-60}" != "0" ]; then
    python - <<'PY'
import os
import socket
import sys
import time
from urllib.parse import urlsplit

DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "rediss": 6379,
                 "amqp": 5672, "amqps": 5671}

timeout = float(os.environ.get("AUTODS_WAIT_TIMEOUT_S", "60"))
targets = []
for var in ("AUTODS_DATABASE_URL", "AUTODS_BROKER_URL"):
    url = os.environ.get(var, "")
    if not url:
        continue
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        continue
    port = port or DEFAULT_PORTS.get(parts.scheme.split("+")[0])
    if host and port:  # sqlite, memory:// and socket paths have nothing to wait for
        targets.append((var, host, port))

deadline = time.monotonic() + timeout
for var, host, port in targets:
    while True:
        try:
            with socket.create_connection((host, port), timeout=3):
                break
        except OSError as exc:
            if time.monotonic() >= deadline:
                print(f"autods-entrypoint: {var} host {host}:{port} not reachable "
                      f"after {timeout:g}s: {exc}", file=sys.stderr)
                sys.exit(1)
            time.sleep(1)
PY
fi

exec "$@"
