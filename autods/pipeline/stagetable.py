"""The stage table: every stage of a job, declared once.

Each chunk of a job runs the chunk stages in this order, each as a task on its stage's
queue; when a batch's chunks are done, the batch steps (resolve duplicates and labels,
write shards, close the job) run on ``BATCH_QUEUE``. Everything that needs the list of
stages reads it here: the canvas that chains them, the queues and routes, what a worker
preloads, the progress bars and job status, the stall watchdog and the CLI's default
queues. Adding a stage is one row here plus its function (see ``autods.pipeline.chunks``
for the contract it plugs into).

Importing this module costs nothing: stage functions are named, not imported, so the
embedded runner can read the table before it loads the database layer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from autods.pipeline.options import JobOptions

if TYPE_CHECKING:
    from autods.pipeline.chunks import ChunkWork
    from autods.pipeline.runtime import Runtime

@dataclass(frozen=True, slots=True)
class Stage:
    """One chunk stage.

    ``function`` is ``"module:function"``, called as ``function(runtime, work)``. ``when``
    names a ``JobOptions`` field: the stage runs only for jobs where it is set (no name:
    every job). ``preload`` is what a worker of ``queue`` imports before forking its pool;
    ``batch_preload`` is what the batch steps import for jobs that run this stage.
    """

    name: str
    queue: str
    function: str
    when: str | None = None
    preload: tuple[str, ...] = ()
    batch_preload: tuple[str, ...] = ()

    @property
    def task_name(self) -> str:
        return f"autods.{self.name}.chunk"

    def runs_for(self, options: JobOptions) -> bool:
        return self.when is None or bool(getattr(options, self.when))

    @property
    def module(self) -> str:
        return self.function.partition(":")[0]

    def load(self) -> Callable[[Runtime, ChunkWork], dict[str, int]]:
        return getattr(importlib.import_module(self.module), self.function.partition(":")[2])


CHUNK_STAGES: tuple[Stage, ...] = (
    # Ingest hashes the images it stores (pHash: scipy's DCT); preprocess what is left.
    Stage("ingest", "ingest", "autods.pipeline.ingest:ingest", preload=("scipy.fftpack",)),
    Stage("preprocess", "preprocess", "autods.pipeline.preprocess:preprocess",
          preload=("scipy.fftpack",)),
    Stage("embed", "gpu", "autods.pipeline.embed:embed", when="embed",
          preload=("torch", "open_clip")),
    # The batch step fits the LabelModel on the votes of jobs with labelling functions.
    Stage("label", "label", "autods.pipeline.label:label", when="lfs",
          preload=("snorkel.labeling", "snorkel.labeling.model"),
          batch_preload=("snorkel.labeling.model",)),
)

#: Where the batch steps run: resolve, shard writing, commit, the job's end, the watchdog.
BATCH_QUEUE = "shard"
#: The queue of the labelling work over a whole version (``autods.label.*``).
LABEL_QUEUE = "label"
#: pyarrow imports pandas on its first ``Table.from_pylist``.
BATCH_PRELOAD = ("pyarrow.parquet", "pandas")


def stages() -> tuple[Stage, ...]:
    """The chunk stages, read at call time (a test may add a row)."""
    return CHUNK_STAGES


def stage(name: str) -> Stage:
    for s in stages():
        if s.name == name:
            return s
    raise KeyError(f"no stage {name!r}")


def stages_for(options: JobOptions) -> list[Stage]:
    """The chunk stages a job with these options runs, in order."""
    return [s for s in stages() if s.runs_for(options)]


def queues() -> tuple[str, ...]:
    """Every queue, in stage order, the batch queue last."""
    return tuple(dict.fromkeys([*(s.queue for s in stages()), BATCH_QUEUE]))


def preloads_for_queues(names: Iterable[str]) -> list[str]:
    """What a worker consuming ``names`` imports before its pool forks."""
    names = set(names)
    return _preloads([s for s in stages() if s.queue in names],
                     stages() if BATCH_QUEUE in names else None)


class EmbeddedWorker(NamedTuple):
    """One worker of an embedded run: its queues, what it preloads, and whether it runs
    the job's model stage (``embed``)."""

    queues: tuple[str, ...]
    preload: list[str]
    model: bool = False


def embedded_workers(options: JobOptions) -> list[EmbeddedWorker]:
    """The embedded run's workers for one job.

    The optional stages that import heavy modules (torch and open_clip for ``embed``,
    snorkel for ``label``) get a worker of their own, with the batch steps when they need
    those modules too; the other queues go to a light worker that consumes from the first
    second, while the heavy one still imports. A job with no such stage has one worker.
    """
    run = stages_for(options)
    heavy = [s for s in run if s.when is not None and s.preload]
    if not heavy:
        return [EmbeddedWorker(queues(), _preloads(run, run))]
    light = [s for s in run if s not in heavy]
    batch_heavy = any(s.batch_preload for s in heavy)
    workers = []
    for group, batch in ((light, not batch_heavy), (heavy, batch_heavy)):
        consumed = {s.queue for s in group} | ({BATCH_QUEUE} if batch else set())
        workers.append(EmbeddedWorker(tuple(q for q in queues() if q in consumed),
                                      _preloads(group, run if batch else None),
                                      any(s.name == "embed" for s in group)))
    return workers


def _preloads(chunk: Iterable[Stage], batch: Iterable[Stage] | None) -> list[str]:
    """The chunk stages' modules, then (when the batch steps run here) the batch steps'
    own and what they need for ``batch``'s stages; each once, in order."""
    modules = [m for s in chunk for m in s.preload]
    if batch is not None:
        modules += [*BATCH_PRELOAD, *(m for s in batch for m in s.batch_preload)]
    return list(dict.fromkeys(modules))
