"""The Celery app's configuration: redelivery of lost messages and what workers preload."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from celery import Celery

from autods.config import Settings
from autods.pipeline.options import JobOptions
from autods.pipeline.stagetable import embedded_workers, queues
from autods.tasks.app import configure, preload_modules


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


def test_an_embedded_chord_is_first_checked_after_the_retry_interval(tmp_path, monkeypatch):
    """Files have no counter to join a chord: ``chord_unlock`` polls. Its first poll goes out
    after the configured interval, not the second ``chord.run`` fixes."""
    from autods.embedded import embedded_settings
    from autods.tasks.fsbroker import ResultBackend

    app = configure(Celery("t"), embedded_settings(tmp_path))
    assert isinstance(app.backend, ResultBackend)
    sent: list[dict] = []
    unlock = app.tasks["celery.chord_unlock"]
    monkeypatch.setattr(unlock, "apply_async", lambda *args, **options: sent.append(options))
    app.backend.apply_chord(("g", [app.AsyncResult("a")]), app.signature("autods.publish.commit"),
                            countdown=1)
    assert [s["countdown"] for s in sent] == [app.conf.result_chord_retry_interval] == [0.1]
    assert sent[0]["queue"] == "shard"


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
