"""One machine, no server: the same Celery canvas on an embedded broker and worker pool.

The broker is kombu's filesystem transport and results go to files, both under
``OUT/.autods``; metadata is SQLite there too. A real ``celery worker`` with a prefork pool
of every core consumes every queue, so the embedded run exercises the same tasks, chords
and acknowledgements as a cluster. Running it again on the same sources and output folder
resumes the unfinished job recorded there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from autods.config import Settings
from autods.pipeline.options import JobOptions
from autods.pipeline.stagetable import EmbeddedWorker, embedded_workers, queues, stage

if TYPE_CHECKING:
    from autods.pipeline.mapjobs import ForgetPlan
    from autods.pipeline.status import JobStatus

def embedded_settings(out: Path, base: Settings | None = None) -> Settings:
    """Settings that keep everything of the run inside ``out/.autods``."""
    state = (out / ".autods").resolve()
    settings = (base or Settings()).model_copy(deep=True)
    settings.database.url = f"sqlite:///{state / 'autods.sqlite'}"
    settings.storage.url = (state / "objects").as_uri()
    settings.broker.url = "filesystem://localhost/"
    settings.broker.result_backend = (state / "results").as_uri()
    # The filesystem broker cannot lose a message the way Redis can, and an interrupted
    # build resumes by sending its open batches again: no stall watchdog here.
    settings.pipeline.stall_timeout_s = 0
    return settings


def _threads(settings: Settings, cores_each: int) -> Settings:
    """``settings`` with torch's threads per process set, unless configured already."""
    own = settings.model_copy(deep=True)
    own.clip.torch_threads = settings.clip.torch_threads or max(1, cores_each)
    return own


class WorkerProcess:
    """A Celery worker child process on the given queues; stopped with a warm shutdown.

    It runs the worker a deployment's ``autods worker`` runs (``autods.tasks.worker``),
    without gossip, mingle and heartbeats, with these settings as its environment.
    ``app`` is the Celery app to load (a module of one's own may extend the stage table
    before it imports autods' app).
    """

    def __init__(self, settings: Settings, concurrency: int, logfile: Path,
                 consumed: tuple[str, ...] | None = None, name: str | None = None,
                 app: str = "autods.tasks.app:app") -> None:
        self.settings, self.concurrency, self.logfile = settings, concurrency, logfile
        self.queues = consumed or queues()
        self.app = app
        self.name = name or f"embedded-{os.getpid()}@%h"
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, **self.settings.to_env()}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "autods.tasks.worker", "--app", self.app,
               "--queues", ",".join(self.queues), "--concurrency", str(self.concurrency),
               "--hostname", self.name, "--lean", "--loglevel", "INFO"]
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.logfile.open("ab")
        # Its own process group, so ``stop`` can end the pool children with it.
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 180) -> None:
        """Block until the worker logs that it consumes (for callers that must not race)."""
        deadline = time.monotonic() + timeout
        while "ready." not in self.logfile.read_text(errors="replace"):
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(self.logfile.read_text(errors="replace")[-3000:])
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_error(self) -> Exception:
        """Why the worker is gone: a labelling module that does not load, in the worker's
        own words (``pipeline.warmup``), or else where its log is."""
        from autods.core.records import LabellingModuleError
        from autods.pipeline.warmup import REFUSED

        lines = self.logfile.read_text(errors="replace").strip().splitlines()
        if self.proc is not None and self.proc.returncode == REFUSED and lines:
            return LabellingModuleError(lines[-1])
        return RuntimeError(f"embedded worker exited; see {self.logfile}")

    def stop(self, grace_s: float = 60) -> None:
        """Warm shutdown: running tasks finish, then the worker exits. Past ``grace_s`` the
        worker and its pool are killed; unacknowledged tasks go back to their queue."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:
            self._log.close()

    def kill(self) -> None:
        """End the worker and its pool now, without waiting; ``stop`` reaps them."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with_parent() -> None:
    """Ask Linux to stop the worker (warm shutdown) if the CLI is killed, even by SIGKILL,
    so an interrupted build never leaves a worker consuming behind the next run."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _reset_broker(settings: Settings) -> None:
    """Drop messages and results of an interrupted run; its state is in the database."""
    state = Path(settings.database.url.removeprefix("sqlite:///")).parent
    for sub in ("broker", "results"):
        shutil.rmtree(state / sub, ignore_errors=True)


def run_embedded(sources: list[str], out: Path, *, dataset: str | None = None,
                 workers: int | None = None, progress: bool = False,
                 base: Settings | None = None, **options) -> JobStatus:
    """Build (or resume building) a dataset from ``sources`` into ``out``."""
    workers = workers or os.cpu_count() or 1
    out.mkdir(parents=True, exist_ok=True)
    settings = embedded_settings(out, base)
    opts = JobOptions.from_settings(settings, **options)

    # The worker of the label queue loads the labelling functions before it forks and
    # refuses the job if they do not load: this process then only checks that the module
    # exists, instead of importing Snorkel (seconds) before the first chunk can be sent.
    settings.worker.warm_lfs = opts.lfs or ""

    def start(rt, _worker) -> int:
        from autods.tasks.canvas import start_job

        return start_job(rt, sources, dataset or out.resolve().name, opts,
                         output_url=out.resolve().as_uri(), resume=True, load_lfs=False)

    return _run(settings, out, workers, start, progress, embedded_workers(opts))


def forget_embedded(out: Path, keys: list[str], *, workers: int | None = None,
                    progress: bool = False) -> tuple[ForgetPlan, JobStatus | None]:
    """Forget samples of the build in ``out``: a job over its shards on a local worker."""
    if not (out / ".autods" / "autods.sqlite").exists():
        raise FileNotFoundError(f"no autods build in {out}")
    workers = workers or os.cpu_count() or 1
    settings = embedded_settings(out)
    settings.worker.preload = ""
    planned: list[ForgetPlan] = []

    def start(rt, _worker) -> int | None:
        from autods.pipeline.mapjobs import dataset_name, plan_forget
        from autods.tasks.canvas import dispatch

        plan = plan_forget(rt, dataset_name(rt, out.resolve().as_uri()), keys)
        planned.append(plan)
        if plan.job_id is not None:
            dispatch(rt, plan.job_id)
        return plan.job_id

    status = _run(settings, out, workers, start, progress)
    return planned[0], status


def relabel_embedded(out: Path, *, lfs: str | None = None,
                     class_balance: list[float] | None = None, workers: int | None = None,
                     progress: bool = False) -> JobStatus:
    """Relabel the build in ``out``: the fit as a task on the label queue, then the job
    over its shards, on a local worker."""
    if not (out / ".autods" / "autods.sqlite").exists():
        raise FileNotFoundError(f"no autods build in {out}")
    workers = workers or os.cpu_count() or 1
    settings = embedded_settings(out)
    settings.worker.preload = ""

    def start(rt, worker) -> int:
        from autods.pipeline.mapjobs import dataset_name
        from autods.tasks.app import app

        result = app.send_task("autods.label.relabel", kwargs={
            "dataset": dataset_name(rt, out.resolve().as_uri()), "lfs": lfs,
            "class_balance": class_balance})
        while not result.ready():
            if not worker.alive():
                raise RuntimeError(f"embedded worker exited; see {worker.logfile}")
            time.sleep(0.1)
        return result.get()

    return _run(settings, out, workers, start, progress)


def _run(settings: Settings, out: Path, workers: int, start, progress: bool,
         groups: list[EmbeddedWorker] | None = None) -> JobStatus | None:
    """Start local workers, send a job with ``start(runtime)``, watch it to the end.

    ``groups`` gives each worker's queues and preloads (``stagetable.embedded_workers``);
    by default one worker consumes every queue and preloads ``settings.worker.preload``.
    """
    _reset_broker(settings)
    # The workers start first, then this process imports the database layer and the app
    # and plans the job while they import and fork their pools: their start-up is the
    # longest step before the first task can run.
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(p) for p in _workers(settings, out, workers, groups)]
        return _watch(settings, procs, start, progress)


def _workers(settings: Settings, out: Path, workers: int,
             groups: list[EmbeddedWorker] | None) -> list[WorkerProcess]:
    cores = os.cpu_count() or 1
    if groups is None:
        return [WorkerProcess(_threads(settings, cores // workers), workers,
                              out / ".autods" / "worker.log")]
    procs = []
    for n, (consumed, preload, model) in enumerate(groups):
        if model and not settings.clip.device.startswith("cuda"):
            # One model process inferring a batch per worker at once, each on one torch
            # thread: a long job keeps every core busy as one process per core would, and
            # a job of one chunk is not left on a single core. It builds its models while
            # it imports, before its pool forks.
            own, concurrency = _threads(settings, 1), 1
            own.clip.parallel_batches = min(workers, cores)
            own.worker.warm_models = True
        else:
            own, concurrency = _threads(settings, cores // workers), workers
        own.worker.preload = ",".join(preload) or "none"
        if stage("label").queue not in consumed:
            own.worker.warm_lfs = ""
        log = out / ".autods" / ("worker.log" if n == 0 else f"worker-{n}.log")
        procs.append(WorkerProcess(own, concurrency, log, consumed,
                                   name=f"embedded-{os.getpid()}-{n}@%h"))
    return procs


def _watch(settings: Settings, procs: list[WorkerProcess], start, progress: bool
           ) -> JobStatus | None:
    """Send the job with ``start`` and watch it until it ends or a worker exits."""
    from autods.db.session import upgrade
    from autods.pipeline.runtime import Runtime, using
    from autods.pipeline.status import job_finished, job_status
    from autods.progress import watch
    from autods.tasks.app import app, configured

    rt = Runtime(settings)
    upgrade(settings.database.url)  # its own database: the embedded run owns it
    # This process sends the job on the embedded broker, then is left as it was found.
    with using(rt), configured(app, settings):
        job_id = start(rt, procs[0])
    if job_id is None:
        for worker in procs:
            worker.stop(grace_s=0)
        return None

    def running() -> None:
        for worker in procs:
            if not worker.alive():
                raise worker.exit_error()

    def poll() -> JobStatus:
        running()
        return job_status(rt, job_id, outcomes=False)

    def finished() -> bool:
        running()
        return job_finished(rt, job_id)

    # The job's state is asked ten times a second, so the end is seen at once; its progress
    # (chunks, batches and shards, not the items) twice, since this process shares the
    # cores with the workers: polled as often, it took 13 % of a core in the first build.
    status = watch(poll, interval=0.5, show=progress, finished=finished)
    # Nothing is left to run once the job is done, and its state is in the database: the
    # workers are killed at once instead of waiting seconds for their warm shutdown, all
    # before any is waited for (the model worker's memory takes a while to free).
    if status.done:
        for worker in procs:
            worker.kill()
    for worker in procs:
        worker.stop(grace_s=0 if status.done else 60)
    return job_status(rt, job_id)
