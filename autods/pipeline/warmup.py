"""What a worker builds before its pool forks, so that its first task does not wait for it.

A model worker on the CPU imports open_clip, then builds CLIP and the sentence model on a
thread while its main thread imports the sentence model's library, loads the labelling
functions and imports the rest of its preloads: random initialisation and weight loading
run in torch's kernels, which release the interpreter, so they use the core the imports
leave idle. The pool's processes inherit the built models (copy-on-write) instead of each
building its own, and the first chunk to embed starts inferring at once.

The labelling functions named by ``warm_lfs`` load before those preloads: a module that
does not load stops the worker in its first seconds with ``REFUSED`` and the reason as its
last line of output, which is how an embedded run refuses such a job without importing
Snorkel itself.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from autods.config import Settings
from autods.core.records import LabellingModuleError
from autods.pipeline.runtime import Runtime, set_runtime

log = logging.getLogger(__name__)

#: The exit status of a worker whose labelling functions do not load.
REFUSED = 3


@contextmanager
def warmed(settings: Settings, setup_logging: Callable[[], object] | None = None
           ) -> Iterator[None]:
    """Build what ``settings.worker`` asks for around the block (the worker's imports).

    ``setup_logging`` (the worker's) runs first when there is anything to build: models and
    labelling modules may log as they load (open_clip on the root logger, which would
    configure it), before the worker would have set its logging up.
    """
    worker = settings.worker
    if not (worker.warm_models or worker.warm_lfs):
        yield
        return
    if setup_logging is not None:
        setup_logging()
    rt = Runtime(settings)
    set_runtime(rt)  # the pool's processes inherit it, models and labelling functions built
    builder = _models_thread(rt) if worker.warm_models else None
    if builder is not None:
        # Imported here while CLIP initialises, not on the thread: two threads importing at
        # once pass the interpreter back and forth, and both took longer than one after the
        # other. The thread waits for it at its import lock if it gets there first.
        import sentence_transformers  # noqa: F401
    if worker.warm_lfs:
        try:
            rt.label_spec(worker.warm_lfs)
        except LabellingModuleError as exc:
            sys.stderr.write(f"{exc}\n")
            sys.stderr.flush()
            raise SystemExit(REFUSED) from None
    yield
    if builder is not None:
        builder.join()
        builder.restore_threads()


class _Builder(threading.Thread):
    """Builds CLIP, then the sentence model, in that order: a randomly initialised CLIP
    draws from torch's global generator, which nothing else may draw from meanwhile.

    It builds on one torch thread, so nothing before the fork starts torch's worker
    threads: a process whose BLAS threads have started cannot fork a child that uses them
    (with two threads, a child hung at its first matrix product after its parent had
    computed one). The pool's processes get the configured count back once the build is
    over.
    """

    def __init__(self, rt: Runtime) -> None:
        super().__init__(name="autods-warmup", daemon=True)
        import torch

        self.rt, self._torch = rt, torch
        self.threads = rt.settings.clip.torch_threads or torch.get_num_threads()

    def run(self) -> None:
        try:
            self.rt.embedder = self.rt.build_embedder(torch_threads=1)
            self.rt.text_embedder  # noqa: B018 - cached on the runtime
        except Exception as exc:  # noqa: BLE001 - the first task builds it again and fails
            log.warning("models not built before forking: %s: %s", type(exc).__name__, exc)

    def restore_threads(self) -> None:
        self._torch.set_num_threads(self.threads)


def _models_thread(rt: Runtime) -> _Builder | None:
    """Import open_clip, then start building the models on a thread."""
    if rt.settings.clip.device.startswith("cuda"):
        log.info("models are built in the pool's processes: CUDA cannot cross a fork")
        return None
    import open_clip  # noqa: F401 - before the thread starts, for the reason in ``warmed``

    builder = _Builder(rt)
    builder.start()
    return builder
