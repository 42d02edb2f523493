"""The Celery app's configuration: redelivery of lost messages and what workers preload."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery
from celery.app.task import Context

from autods.config import Settings
from autods.pipeline.options import JobOptions
from autods.pipeline.stagetable import embedded_workers, queues
from autods.tasks.app import configure, preload_modules
from autods.tasks.fsbroker import ResultBackend


@pytest.mark.parametrize(("visibility", "interval"), [(3600, 10), (8, 2), (2, 1)])
def test_lost_messages_are_swept_at_least_four_times_per_visibility_timeout(
        visibility: int, interval: int) -> None:
    settings = Settings()
    settings.broker.visibility_timeout_s = visibility
    app = configure(Celery("t"), settings)
    options = app.conf.broker_transport_options
    assert options["visibility_timeout"] == visibility
    assert options["unacked_restore_interval"] == interval
    assert options["unacked_restore_throttle"] == 1


def test_auto_preload_follows_the_queues_a_worker_consumes() -> None:
    assert preload_modules("auto", ["ingest"]) == ["scipy.fftpack"]
    assert preload_modules("auto", ["gpu"]) == ["torch", "open_clip"]
    assert "snorkel.labeling" in preload_modules("auto", ["ingest", "label"])
    assert preload_modules("none", ["gpu", "label"]) == []
    assert preload_modules(" torch , numpy,", ["ingest"]) == ["torch", "numpy"]


def test_a_worker_imports_the_stage_functions_of_its_queues_before_it_forks() -> None:
    """Each pool process would otherwise import them (the HTTP and S3 clients) at its first
    task; a queue the worker does not consume costs it nothing."""
    code = (
        "import sys\n"
        "from types import SimpleNamespace as NS\n"
        "from autods.tasks.app import _preload_heavy_modules\n"
        "before = 'autods.pipeline.ingest' in sys.modules\n"
        "_preload_heavy_modules(NS(app=NS(amqp=NS(queues=NS(consume_from={'ingest': 0})))))\n"
        "print(before, 'autods.pipeline.ingest' in sys.modules, 'autods.core.fetch' in "
        "sys.modules, 'autods.pipeline.embed' in sys.modules)\n")
    env = {**os.environ, "AUTODS_WORKER_PRELOAD": "none"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "True", "True", "False"]


def test_an_embedded_build_preloads_only_what_its_stages_use() -> None:
    bare = embedded_workers(JobOptions(embed=False, lfs=None))
    # One worker consumes every queue (``gpu`` too) but runs no model.
    assert bare == [(queues(), ["scipy.fftpack", "pyarrow.parquet", "pandas"], False)]
    # torch, open_clip and snorkel load in a worker of their own, while a light one already
    # ingests; the batch steps go with snorkel, which the label model's fit needs.
    light, heavy = embedded_workers(JobOptions(embed=True, lfs="examples.sample_lfs"))
    assert light == (("ingest", "preprocess"), ["scipy.fftpack"], False)
    assert heavy.queues == ("gpu", "label", "shard") and heavy.model
    assert {"torch", "open_clip", "snorkel.labeling", "snorkel.labeling.model",
            "pyarrow.parquet"} <= set(heavy.preload)
    assert len(heavy.preload) == len(set(heavy.preload))
    # Without labelling functions the batch steps need nothing heavy: the light worker.
    light, heavy = embedded_workers(JobOptions(embed=True, lfs=None))
    assert light.queues == ("ingest", "preprocess", "shard") and heavy.queues == ("gpu",)
    assert heavy.preload == ["torch", "open_clip"] and "torch" not in light.preload
    # Labels without embeddings: snorkel's worker runs no model.
    assert [w.model for w in embedded_workers(JobOptions(embed=False, lfs="x"))] == [False,
                                                                                      False]


def test_embedded_workers_hold_tasks_ahead_and_deployed_ones_do_not(tmp_path):
    """A deployed worker takes one task per process, so an autoscaled neighbour can start
    what it has not; an embedded worker is alone on its queues and starts the next chunk
    stage without waiting for the file broker's next poll."""
    from autods.embedded import embedded_settings
    from autods.tasks.app import EMBEDDED_PREFETCH

    embedded = configure(Celery("t"), embedded_settings(tmp_path))
    deployed = configure(Celery("t"), Settings())
    assert embedded.conf.worker_prefetch_multiplier == EMBEDDED_PREFETCH > 1
    assert deployed.conf.worker_prefetch_multiplier == 1


def _embedded_chord(tmp_path, monkeypatch):
    """An embedded app, a chord of three headers saved as ``apply_chord`` saves it, and
    the callbacks and errors it sends, recorded instead of sent."""
    from autods.embedded import embedded_settings

    settings = embedded_settings(tmp_path)
    Path(settings.broker.result_backend.removeprefix("file://")).mkdir(parents=True)
    app = configure(Celery("t"), settings)
    assert isinstance(app.backend, ResultBackend)
    sent: dict[str, list] = {"unlock": [], "callback": [], "error": []}
    monkeypatch.setattr(app.tasks["celery.chord_unlock"], "apply_async",
                        lambda *args, **options: sent["unlock"].append(options))
    body = app.signature("autods.publish.commit", kwargs={"job_id": 1, "batch_no": 0})
    monkeypatch.setattr(type(body), "delay",
                        lambda self, *args, **kw: sent["callback"].append((self, args)))
    monkeypatch.setattr(app.backend, "chord_error_from_stack",
                        lambda callback, exc: sent["error"].append((callback, exc)))
    app.backend.apply_chord(("g", [app.AsyncResult(f"t{i}") for i in range(3)]), body)

    def returns(n: int, failed: bool = False) -> None:
        request = Context(id=f"t{n}", group="g", chord=dict(body), task="x")
        if failed:
            app.backend.mark_as_failure(f"t{n}", ValueError("bad"), request=request,
                                        call_errbacks=False)
        else:
            app.backend.mark_as_done(f"t{n}", n, request=request)

    return sent, returns


def test_an_embedded_chord_is_joined_when_its_last_header_returns(tmp_path, monkeypatch):
    """No ``chord_unlock`` polls: the header task that completes the chord sends the
    callback with the header's results. A header task delivered again is counted once;
    delivered again once the header is complete, it sends the callback again (the
    delivery that completed it may have died before sending it)."""
    sent, returns = _embedded_chord(tmp_path, monkeypatch)
    calls = []
    for n in (0, 0, 1, 2, 1, 2):
        returns(n)
        calls.append(len(sent["callback"]))
    assert calls == [0, 0, 0, 1, 2, 3]
    assert sent["unlock"] == [] and sent["error"] == []
    signature, args = sent["callback"][0]
    assert signature["kwargs"] == {"job_id": 1, "batch_no": 0} and args == ([0, 1, 2],)


def test_an_embedded_chord_with_a_failed_header_task_sends_its_error(tmp_path, monkeypatch):
    sent, returns = _embedded_chord(tmp_path, monkeypatch)
    returns(0)
    returns(1, failed=True)
    returns(2)
    assert sent["callback"] == []
    [(callback, exc)] = sent["error"]
    assert callback["task"] == "autods.publish.commit" and "bad" in str(exc)


def _count(url: str, worker: int, times: int) -> list[int]:
    backend = ResultBackend(url=url, app=Celery("t"))
    return [backend.count_returned(b"chord", f"{worker}-{n}") for n in range(times)]


def test_the_embedded_chord_count_is_taken_one_header_task_at_a_time(tmp_path):
    """Header tasks return in different pool processes at once. Each must see the count
    with its own record and every earlier one, so exactly one sees the header complete:
    800 records from four processes return each count from 1 to 800 once."""
    with multiprocessing.get_context("fork").Pool(4) as pool:
        seen = pool.starmap(_count, [(tmp_path.as_uri(), w, 200) for w in range(4)])
    assert sorted(n for counts in seen for n in counts) == list(range(1, 801))


def test_the_embedded_model_worker_infers_a_batch_per_core_in_one_process(tmp_path):
    """One process holds the model; its batches run on threads of one torch thread each, so
    a chunk alone uses every core and vectors do not depend on what runs beside them."""
    import os

    from autods.embedded import _workers, embedded_settings

    settings = embedded_settings(tmp_path)
    light, heavy = _workers(settings, tmp_path, 2, embedded_workers(JobOptions(embed=True,
                                                                               lfs=None)))
    cores = os.cpu_count() or 1
    assert (light.queues, light.concurrency) == (("ingest", "preprocess", "shard"), 2)
    assert light.settings.clip.torch_threads == max(1, cores // 2)
    assert (heavy.queues, heavy.concurrency) == (("gpu",), 1)
    assert heavy.settings.clip.torch_threads == 1
    assert heavy.settings.clip.parallel_batches == min(2, cores)
    settings.clip.torch_threads = 3  # what the user sets is kept
    _, heavy = _workers(settings, tmp_path, 2, embedded_workers(JobOptions(embed=True)))
    assert heavy.settings.clip.torch_threads == 3
    # A job without embeddings keeps one process per core, though its worker consumes gpu.
    settings.clip.torch_threads = 0
    [bare] = _workers(settings, tmp_path, 2, embedded_workers(JobOptions(embed=False)))
    assert "gpu" in bare.queues and bare.concurrency == 2


def test_the_embedded_model_worker_builds_models_and_lfs_before_it_forks(tmp_path):
    """The label queue's worker loads the LFs (so the CLI need not import Snorkel to check
    them) and the model worker builds its models; the light worker does neither."""
    from autods.embedded import _workers, embedded_settings

    settings = embedded_settings(tmp_path)
    settings.worker.warm_lfs = "examples.sample_lfs"
    light, heavy = _workers(settings, tmp_path, 2, embedded_workers(
        JobOptions(embed=True, lfs="examples.sample_lfs")))
    assert (light.settings.worker.warm_models, light.settings.worker.warm_lfs) == (False, "")
    assert heavy.settings.worker.warm_models
    assert heavy.settings.worker.warm_lfs == "examples.sample_lfs"
    env = heavy.settings.to_env()
    assert env["AUTODS_WORKER_WARM_MODELS"] == "1"


_WARM = (
    "import hashlib, io, os, sys\n"
    "from types import SimpleNamespace as NS\n"
    "from PIL import Image\n"
    "from autods.tasks.app import _preload_heavy_modules\n"
    "from autods.pipeline.runtime import get_runtime\n"
    "_preload_heavy_modules(NS(app=NS(amqp=NS(queues=NS(consume_from={'gpu': 0, "
    "'label': 0})))))\n"
    "buf = io.BytesIO(); Image.new('RGB', (40, 30), (200, 30, 90)).save(buf, 'PNG')\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    import torch\n"
    "    rt = get_runtime()\n"
    "    built = sorted(k for k in ('embedder', 'text_embedder') if k in vars(rt))\n"
    "    vector = rt.embedder.embed_images([buf.getvalue()]).tobytes()\n"
    "    torch.empty(20_000_000).uniform_()  # a kernel on every configured thread\n"
    "    print(*built, list(rt._label_specs), torch.get_num_threads(),\n"
    "          hashlib.sha256(vector).hexdigest(), flush=True)\n"
    "    os._exit(0)\n"
    "os.waitpid(pid, 0)\n"
    "from autods.core.embed import ClipEmbedder\n"
    "fresh = ClipEmbedder('autods-tiny-vit', device='cpu').embed_images([buf.getvalue()])\n"
    "print(hashlib.sha256(fresh.tobytes()).hexdigest())\n")


def test_a_forked_pool_process_inherits_the_models_and_lfs_built_before_the_fork(tmp_path):
    """Built on a thread while the worker imports, the random CLIP is still the one every
    other process draws (a dataset's vectors must come from one model). The pool's process
    gets the configured two torch threads back, though the build ran on one."""
    env = {**os.environ, "AUTODS_WORKER_PRELOAD": "none", "AUTODS_WORKER_WARM_MODELS": "1",
           "AUTODS_WORKER_WARM_LFS": "examples.sample_lfs", "AUTODS_CLIP_TORCH_THREADS": "2",
           "AUTODS_CLIP_MODEL": "autods-tiny-vit", "AUTODS_CLIP_PRETRAINED": "random"}
    out = subprocess.run([sys.executable, "-c", _WARM], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    child, parent = out.stdout.strip().splitlines()
    *built, specs, threads, digest = child.split(" ")
    assert built == ["embedder", "text_embedder"] and specs == "['examples.sample_lfs']"
    assert threads == "2" and digest == parent


def test_a_worker_whose_lfs_do_not_load_exits_with_the_reason(tmp_path):
    (tmp_path / "broken_lfs.py").write_text("raise ValueError('no vocabulary file')\n")
    code = ("from types import SimpleNamespace as NS\n"
            "from autods.tasks.app import _preload_heavy_modules\n"
            "_preload_heavy_modules(NS(app=NS(amqp=NS(queues=NS(consume_from={'label': 0})))))\n"
            "print('forked')\n")
    env = {**os.environ, "AUTODS_WORKER_PRELOAD": "none", "AUTODS_WORKER_WARM_LFS": "broken_lfs",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    from autods.pipeline.warmup import REFUSED

    assert out.returncode == REFUSED and "forked" not in out.stdout
    assert out.stderr.strip().splitlines()[-1] == (
        "labelling module 'broken_lfs' does not load: ValueError: no vocabulary file")


def _bind_all(folder: str, exchange: str, queues: list[str], start) -> None:
    from kombu import Connection

    start.wait()
    with Connection(transport="autods.tasks.fsbroker:Transport",
                    transport_options={"data_folder_in": folder, "data_folder_out": folder,
                                       "control_folder": folder + "/control"}) as conn:
        channel = conn.default_channel
        for queue in queues:
            channel._queue_bind(exchange, queue, None, queue)
        channel.get_table(exchange)


def test_processes_binding_one_new_exchange_at_once_never_read_a_half_made_table(tmp_path):
    from kombu import Connection

    ctx = multiprocessing.get_context("fork")
    for attempt in range(20):
        folder = str(tmp_path / f"broker-{attempt}")
        os.makedirs(folder)
        start = ctx.Barrier(4)
        procs = [ctx.Process(target=_bind_all,
                             args=(folder, "ingest", [f"q{p}-{i}" for i in range(3)], start))
                 for p in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert [proc.exitcode for proc in procs] == [0] * 4, f"attempt {attempt}"
        with Connection(transport="autods.tasks.fsbroker:Transport",
                        transport_options={"control_folder": folder + "/control"}) as conn:
            bound = {q.queue for q in conn.default_channel.get_table("ingest")}
        assert bound == {f"q{p}-{i}" for p in range(4) for i in range(3)}
        assert sorted(os.listdir(folder + "/control")) == ["ingest.exchange"]
