"""The Celery app's configuration: redelivery of lost messages and what workers preload."""

from __future__ import annotations

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
    assert preload_modules("auto", ["ingest"]) == []
    assert preload_modules("auto", ["gpu"]) == ["torch", "open_clip"]
    assert "snorkel.labeling" in preload_modules("auto", ["ingest", "label"])
    assert preload_modules("none", ["gpu", "label"]) == []
    assert preload_modules(" torch , numpy,", ["ingest"]) == ["torch", "numpy"]


def test_an_embedded_build_preloads_only_what_its_stages_use() -> None:
    bare = embedded_workers(JobOptions(embed=False, lfs=None))
    assert bare == [(queues(), ["scipy.fftpack", "pyarrow.parquet", "pandas"])]
    # torch, open_clip and snorkel load in a worker of their own, while a light one already
    # ingests; the batch steps go with snorkel, which the label model's fit needs.
    (light, light_preload), (heavy, heavy_preload) = embedded_workers(
        JobOptions(embed=True, lfs="examples.sample_lfs"))
    assert (light, light_preload) == (("ingest", "preprocess"), ["scipy.fftpack"])
    assert heavy == ("gpu", "label", "shard")
    assert {"torch", "open_clip", "snorkel.labeling", "snorkel.labeling.model",
            "pyarrow.parquet"} <= set(heavy_preload)
    assert len(heavy_preload) == len(set(heavy_preload))
    # Without labelling functions the batch steps need nothing heavy: the light worker.
    (light, light_preload), (heavy, heavy_preload) = embedded_workers(
        JobOptions(embed=True, lfs=None))
    assert light == ("ingest", "preprocess", "shard") and heavy == ("gpu",)
    assert heavy_preload == ["torch", "open_clip"] and "torch" not in light_preload
