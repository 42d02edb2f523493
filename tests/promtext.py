"""Reading Prometheus' text format back in tests, with prometheus_client's own parser;
loaded as a plugin by ``tests/conftest.py`` for the ``metrics_on`` fixture."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from autods import metrics

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape: (sample name, its labels) -> value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """One sample's value, None when the scrape does not have it."""
    return samples.get((name, frozenset(labels.items())))


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """The samples of ``name`` keyed by one label's value (other labels must not vary)."""
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}


@pytest.fixture
def metrics_on(tmp_path) -> Iterator[Callable[[], Samples]]:
    """autods' metrics on in this process, into a fresh folder; yields a function that
    scrapes them as a worker's main process would."""
    metrics.enable(tmp_path / "metrics", clean=True)
    yield lambda: parse(generate_latest(metrics.scrape_registry()).decode())
    metrics.disable()
