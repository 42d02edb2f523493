"""Log records as JSON lines, carrying the job, batch and chunk they are about.

A log store (Loki, Elasticsearch, Cloud Logging) indexes the fields, so every line of one
job is found across all workers without parsing messages. The ids come from a context
variable that the worker sets around each task (``autods.tasks.telemetry``): a record
logged outside a task has none of them, and a record's own ``extra`` fields win.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

#: The fields a record may carry, in the order they are written.
CONTEXT_FIELDS = ("job_id", "batch_no", "chunk_no", "shard_id", "dataset", "stage", "task",
                  "task_id")

_context: ContextVar[dict[str, Any] | None] = ContextVar("autods_log_context", default=None)


def bind(**fields: Any) -> Token:
    """Attach ``fields`` to every record logged until ``unbind`` (None values are left out)."""
    return _context.set({k: v for k, v in fields.items() if v is not None})


def unbind(token: Token) -> None:
    _context.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, process, the bound
    context fields, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        context = _context.get() or {}
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, context.get(name))
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def install(logger: logging.Logger) -> None:
    """Write every handler of ``logger`` as JSON lines."""
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())
