"""autods' own Prometheus metrics: what the pipeline did, recorded where it happens.

A worker is a Celery prefork pool: tasks run in pool children, a scrape reaches the main
process. So the metrics use prometheus_client's multiprocess mode: each process writes
its values to files in one folder (``AUTODS_METRICS_DIR``) and the main process sums them
when scraped (``autods.tasks.telemetry``). Until ``enable`` is called nothing exists and
every ``count_*``/``observe_*``/``record_*`` function returns at once, without importing
prometheus_client: the embedded one-machine build pays nothing.

What describes the data (items by status, duplicates by rule, label confidence) is counted
once per batch, after its resolution committed; the claim on the batch makes a redelivered
resolution count nothing. A worker killed between that commit and the count loses the
count: metrics are at most once, the database is the record.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

#: Seconds of one chunk stage: a few hundred items, from a fraction of a second (hashing
#: local files) to many minutes (URLs behind slow servers, CLIP on a CPU).
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
#: The label model's probability of the label it gave; the alert reads the 0.6 bucket.
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """What one resolved batch holds: its items by final (status, reason), its dropped
    duplicates by rule, and the label probability of each sample it labelled."""

    items: Mapping[tuple[str, str], int] = field(default_factory=dict)
    duplicates: Mapping[str, int] = field(default_factory=dict)
    confidences: Iterable[float] = ()


@dataclass(frozen=True, slots=True)
class _Metrics:
    items: Counter
    duplicates: Counter
    stage_seconds: Histogram
    tasks: Counter
    chunk_retries: Counter
    repaired: Counter
    label_confidence: Histogram
    storage_errors: Counter


_metrics: _Metrics | None = None
_directory: Path | None = None


def _build() -> _Metrics:
    from prometheus_client import Counter, Histogram

    # registry=None: in multiprocess mode the values live in files, read by the collector.
    return _Metrics(
        items=Counter("autods_items", "Job inputs by final status and reason, per resolved "
                      "batch", ["status", "reason"], registry=None),
        duplicates=Counter("autods_duplicates", "Inputs dropped as duplicates, by the rule "
                           "that dropped them", ["rule"], registry=None),
        stage_seconds=Histogram("autods_stage_duration_seconds", "Seconds one chunk stage "
                                "task took, by stage", ["stage"], buckets=STAGE_BUCKETS,
                                registry=None),
        tasks=Counter("autods_tasks", "Finished task executions by task name and state "
                      "(success, failure, retry ...)", ["task", "state"], registry=None),
        chunk_retries=Counter("autods_chunk_retries", "Chunk stage tasks sent again after a "
                              "transient error, by stage", ["stage"], registry=None),
        repaired=Counter("autods_batches_repaired", "Stalled batches the watchdog sent "
                         "again", registry=None),
        label_confidence=Histogram("autods_label_confidence", "Label model probability of "
                                   "each labelled sample", buckets=CONFIDENCE_BUCKETS,
                                   registry=None),
        storage_errors=Counter("autods_storage_errors", "Object store operations that "
                               "failed a task, by operation", ["operation"], registry=None),
    )


def enable(directory: str | Path, *, clean: bool = False) -> None:
    """Record from now on, into files in ``directory``: in this process and in every
    process it forks afterwards. ``clean`` removes the files of an earlier run first
    (a worker's main process, before its pool starts)."""
    global _metrics, _directory
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    if clean:
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    from prometheus_client import values

    # prometheus_client picks its value class from the environment when first imported;
    # pick again, so the files go to this folder whoever imported it before.
    values.ValueClass = values.MultiProcessValue()
    _directory = path
    _metrics = _build()


def disable() -> None:
    """Stop recording in this process; the files stay for whoever reads them."""
    global _metrics, _directory
    if _metrics is None:
        return
    from prometheus_client import values

    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    values.ValueClass = values.MutexValue
    _metrics = _directory = None


def enabled() -> bool:
    return _metrics is not None


def scrape_registry(directory: str | Path | None = None) -> CollectorRegistry:
    """A registry summing the files of every process that recorded into ``directory``
    (default: the enabled one), dead pool processes included: counters never go back."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    path = directory or _directory
    if path is None:
        raise RuntimeError("metrics are not enabled and no directory was given")
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    return registry


def process_exited(pid: int) -> None:
    """prometheus_client's bookkeeping for a pool process that ended."""
    if _directory is not None:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, str(_directory))


def record_batch(counts: BatchCounts) -> None:
    if _metrics is None:
        return
    for (status, reason), n in counts.items.items():
        _metrics.items.labels(status=status, reason=reason).inc(n)
    for rule, n in counts.duplicates.items():
        _metrics.duplicates.labels(rule=rule).inc(n)
    for p in counts.confidences:
        _metrics.label_confidence.observe(p)


def observe_stage(stage: str, seconds: float) -> None:
    if _metrics is not None:
        _metrics.stage_seconds.labels(stage=stage).observe(seconds)


def count_task(task: str, state: str) -> None:
    if _metrics is not None:
        _metrics.tasks.labels(task=task, state=state.lower()).inc()


def count_chunk_retry(stage: str) -> None:
    if _metrics is not None:
        _metrics.chunk_retries.labels(stage=stage).inc()


def count_repaired(batches: int) -> None:
    if _metrics is not None:
        _metrics.repaired.inc(batches)


def count_storage_error(operation: str) -> None:
    if _metrics is not None:
        _metrics.storage_errors.labels(operation=operation).inc()
