"""autods' metrics: off and free unless enabled, summed over forked processes when on."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys

import pytest
from prometheus_client import generate_latest

from autods import metrics
from tests.promtext import by_label, parse, value

FORK = multiprocessing.get_context("fork")


def test_off_by_default_nothing_is_recorded_and_prometheus_client_is_not_imported() -> None:
    code = (
        "import sys\n"
        "from autods import metrics\n"
        "import autods.tasks.app, autods.pipeline.resolve\n"
        "metrics.record_batch(metrics.BatchCounts({('published', ''): 3}, {'phash': 1}, [0.9]))\n"
        "metrics.observe_stage('ingest', 1.0)\n"
        "metrics.count_task('autods.ingest.chunk', 'SUCCESS')\n"
        "metrics.count_repaired(2)\n"
        "assert not metrics.enabled()\n"
        "assert 'prometheus_client' not in sys.modules, 'imported while off'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stderr


def _work_of_a_pool_process(n: int) -> None:
    for _ in range(n):
        metrics.count_task("autods.ingest.chunk", "SUCCESS")
        metrics.observe_stage("ingest", 0.3)
    metrics.record_batch(metrics.BatchCounts({("published", ""): n}))


def test_values_of_every_forked_process_are_summed(metrics_on) -> None:
    metrics.count_task("autods.ingest.chunk", "SUCCESS")  # the parent records too
    children = [FORK.Process(target=_work_of_a_pool_process, args=(n,)) for n in (2, 3)]
    for child in children:
        child.start()
    for child in children:
        child.join()
        assert child.exitcode == 0

    scraped = metrics_on()
    assert value(scraped, "autods_tasks_total", task="autods.ingest.chunk",
                 state="success") == 6
    assert value(scraped, "autods_stage_duration_seconds_count", stage="ingest") == 5
    assert value(scraped, "autods_stage_duration_seconds_sum", stage="ingest") == \
        pytest.approx(1.5)
    assert value(scraped, "autods_stage_duration_seconds_bucket", stage="ingest",
                 le="0.25") == 0
    assert value(scraped, "autods_stage_duration_seconds_bucket", stage="ingest",
                 le="0.5") == 5
    assert value(scraped, "autods_items_total", status="published", reason="") == 5


def test_counts_of_an_exited_pool_process_are_kept(metrics_on) -> None:
    child = FORK.Process(target=_work_of_a_pool_process, args=(4,))
    child.start()
    child.join()

    metrics.process_exited(child.pid)

    assert value(metrics_on(), "autods_items_total", status="published", reason="") == 4


def test_a_batch_is_counted_by_status_reason_rule_and_confidence(metrics_on) -> None:
    metrics.record_batch(metrics.BatchCounts(
        items={("published", ""): 5, ("exact_duplicate", "exact_duplicate"): 2,
               ("failed", "corrupt_image"): 1},
        duplicates={"sha256": 2},
        confidences=[0.55, 0.65, 0.97]))

    scraped = metrics_on()
    assert by_label(scraped, "autods_items_total", "status") == {
        "published": 5, "exact_duplicate": 2, "failed": 1}
    assert value(scraped, "autods_items_total", status="failed", reason="corrupt_image") == 1
    assert by_label(scraped, "autods_duplicates_total", "rule") == {"sha256": 2}
    assert value(scraped, "autods_label_confidence_count") == 3
    assert value(scraped, "autods_label_confidence_sum") == pytest.approx(2.17)
    assert value(scraped, "autods_label_confidence_bucket", le="0.6") == 1
    assert value(scraped, "autods_label_confidence_bucket", le="0.99") == 3


def test_retries_repairs_and_storage_errors_are_counted(metrics_on) -> None:
    metrics.count_chunk_retry("preprocess")
    metrics.count_chunk_retry("preprocess")
    metrics.count_repaired(3)
    metrics.count_storage_error("put")

    scraped = metrics_on()
    assert value(scraped, "autods_chunk_retries_total", stage="preprocess") == 2
    assert value(scraped, "autods_batches_repaired_total") == 3
    assert value(scraped, "autods_storage_errors_total", operation="put") == 1


def test_a_worker_start_clears_the_values_of_the_previous_run(tmp_path) -> None:
    folder = tmp_path / "metrics"
    metrics.enable(folder, clean=True)
    metrics.count_repaired(5)
    metrics.disable()

    metrics.enable(folder)  # a pool process that joins the same run sees its values
    kept = parse(generate_latest(metrics.scrape_registry()).decode())
    metrics.disable()
    metrics.enable(folder, clean=True)  # a new worker starts from nothing
    fresh = parse(generate_latest(metrics.scrape_registry()).decode())
    metrics.disable()

    assert value(kept, "autods_batches_repaired_total") == 5
    assert value(fresh, "autods_batches_repaired_total") == 0


def test_nothing_to_scrape_before_enabling() -> None:
    assert not metrics.enabled()
    with pytest.raises(RuntimeError, match="not enabled"):
        metrics.scrape_registry()
