"""The Celery app's configuration: redelivery of lost messages and what workers preload."""

from __future__ import annotations

import pytest
from celery import Celery

from autods.config import Settings
from autods.pipeline.options import JobOptions
from autods.pipeline.stagetable import preloads_for_job
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
    bare = preloads_for_job(JobOptions(embed=False, lfs=None))
    assert bare == ["scipy.fftpack", "pyarrow.parquet", "pandas"]
    full = preloads_for_job(JobOptions(embed=True, lfs="examples.sample_lfs"))
    assert {"torch", "open_clip", "snorkel.labeling", "snorkel.labeling.model"} <= set(full)
    assert len(full) == len(set(full))
