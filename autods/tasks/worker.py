"""Start a Celery worker without going through the ``celery`` command.

``celery worker`` first builds the whole ``celery`` command group, and that imports every
installed ``celery.commands`` plugin (Flower's web application among them), the amqp shell
and click-repl: 0.5 s of imports where the worker itself needs 0.17 s. Every embedded build
pays it once per worker process, on the cores the workers share, and a deployment pays it
each time the autoscaler adds a worker. This starts the same ``WorkController`` that
command starts, with the options autods uses.

``python -m autods.tasks.worker --queues ingest,shard --concurrency 2 --hostname n@%h``
is what the embedded run starts (``autods.embedded.WorkerProcess``).
"""

from __future__ import annotations

import argparse
import sys

from celery.utils.imports import symbol_by_name
from celery.utils.nodenames import default_nodename, host_format


def run_worker(queues: list[str], hostname: str, concurrency: int | None = None,
               loglevel: str = "INFO", app: str = "autods.tasks.app:app",
               lean: bool = False) -> int:
    """Run a prefork worker on ``queues`` with task events on (for Flower) until it is told
    to stop; its exit code. ``lean`` leaves out gossip, mingle and heartbeats, which only
    matter among workers of a cluster."""
    celery_app = symbol_by_name(app)
    options = {"concurrency": concurrency} if concurrency else {}
    if lean:
        options |= {"without_gossip": True, "without_mingle": True, "without_heartbeat": True}
    worker = celery_app.Worker(hostname=host_format(default_nodename(hostname)),
                               pool_cls="prefork", queues=queues, loglevel=loglevel,
                               task_events=True, **options)
    worker.start()
    return worker.exitcode


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m autods.tasks.worker",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", required=True, help="comma-separated queues to consume")
    parser.add_argument("--hostname", required=True, help="node name (%%h: this host)")
    parser.add_argument("--concurrency", type=int, default=None, help="pool processes")
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--app", default="autods.tasks.app:app", help="module:attribute")
    parser.add_argument("--lean", action="store_true",
                        help="without gossip, mingle and heartbeats (a lone worker)")
    args = parser.parse_args(argv)
    sys.exit(run_worker(args.queues.split(","), args.hostname, args.concurrency,
                        args.loglevel, args.app, args.lean))


if __name__ == "__main__":
    main()
