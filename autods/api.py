"""The Python API: ``submit`` a job to a running service, or ``build`` one on this machine;
``relabel`` a dataset of the service, with the gold people gave (``import_gold``); trace a
sample's ``lineage``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autods.config import Settings
from autods.pipeline.options import JobOptions
from autods.pipeline.runtime import Runtime, get_runtime, set_runtime
from autods.pipeline.status import JobStatus, job_status
from autods.progress import watch

if TYPE_CHECKING:
    from autods.pipeline.lineage import Lineage


@dataclass
class Job:
    """A handle on a submitted job; its state lives in the database, not in this object."""

    id: int
    runtime: Runtime

    def status(self) -> JobStatus:
        return job_status(self.runtime, self.id)

    def wait(self, progress: bool = False, timeout: float | None = None,
             interval: float = 0.5) -> JobStatus:
        """Block until the job succeeds or fails (or ``timeout`` seconds pass); returns
        its whole status."""
        watch(lambda: job_status(self.runtime, self.id, outcomes=False), interval=interval,
              show=progress, timeout=timeout)
        return self.status()


def _as_list(sources: str | Sequence[str]) -> list[str]:
    return [sources] if isinstance(sources, str) else list(sources)


def _service(settings: Settings | None) -> Runtime:
    """This process's runtime, configured from ``settings`` when given."""
    from autods.tasks.app import app, configure

    rt = Runtime(settings) if settings is not None else get_runtime()
    if settings is not None:
        configure(app, settings)
        set_runtime(rt)
    return rt


def submit(sources: str | Sequence[str], dataset: str, *, settings: Settings | None = None,
           output_url: str | None = None, **options) -> Job:
    """Record a job and enqueue its canvas on the configured broker; returns at once.

    ``options`` override ``JobOptions`` (``embed``, ``lfs``, ``chunk_size``, ...). The
    database schema must be current (``autods db upgrade``); a client never migrates it.
    ``settings`` (default: from ``AUTODS_*``) become this process's configuration.
    """
    from autods.tasks.canvas import start_job

    rt = _service(settings)
    opts = JobOptions.from_settings(rt.settings, **options)
    return Job(start_job(rt, _as_list(sources), dataset, opts, output_url=output_url), rt)


def build(sources: str | Sequence[str], out: str | Path, *, dataset: str | None = None,
          workers: int | None = None, progress: bool = False,
          settings: Settings | None = None, **options) -> JobStatus:
    """Run a whole job on this machine with no server: see ``autods.embedded``."""
    from autods.embedded import run_embedded

    return run_embedded(_as_list(sources), Path(out), dataset=dataset, workers=workers,
                        progress=progress, base=settings, **options)


def import_gold(dataset: str, export: list[dict], *, settings: Settings | None = None,
                lfs: str | None = None, origin: str = "python") -> int:
    """Store Label Studio's JSON export (a list of tasks) as the dataset's gold labels;
    returns how many. The labels must be the classes of the dataset's LF module."""
    from autods.pipeline.review import import_gold as store

    return len(store(_service(settings), dataset, export, origin, lfs=lfs))


def relabel(dataset: str, *, settings: Settings | None = None, lfs: str | None = None,
            class_balance: Sequence[float] | None = None, timeout: float | None = None) -> Job:
    """Fit the dataset's label model (a task on the ``label`` queue) and send the job that
    writes every sample's label into a new version; returns that job once it is sent."""
    from autods.tasks.canvas import start_relabel

    rt = _service(settings)
    return Job(start_relabel(rt, dataset, lfs=lfs, timeout=timeout,
                             class_balance=list(class_balance) if class_balance else None), rt)


def runtime_for(dataset: str, settings: Settings | None = None) -> tuple[Runtime, str]:
    """The runtime that holds ``dataset`` and its name there: an ``autods build`` output
    folder's own database, else the service's (``settings``, default ``AUTODS_*``).
    ``DatasetUnknown`` when it names no dataset."""
    from autods.pipeline.mapjobs import dataset_name

    folder = Path(dataset)
    if (folder / ".autods" / "autods.sqlite").exists():
        from autods.embedded import embedded_settings

        rt = Runtime(embedded_settings(folder, settings))
        return rt, dataset_name(rt, folder.resolve().as_uri())
    rt = Runtime(settings) if settings is not None else get_runtime()
    return rt, dataset_name(rt, dataset)


def lineage(dataset: str, ref: str, *, settings: Settings | None = None) -> list[Lineage]:
    """Where the sample ``ref`` (a sample key, content hash or input URI) came from and
    where it is, read from the database and the dataset's manifests (no broker needed);
    ``dataset`` is an output folder or a dataset name. One ``Lineage`` per content ``ref``
    names, none when it names nothing; ``.to_dict()`` is the JSON ``autods lineage`` prints."""
    from autods.pipeline.lineage import lineage as trace

    rt, name = runtime_for(dataset, settings)
    return trace(rt, name, ref)
