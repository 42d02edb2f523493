"""The alerts and the dashboard: valid for promtool, firing when they should (promtool's
own rule tests), naming only metrics autods exports, and shipped unchanged by the chart."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from autods import metrics
from autods.config import Settings
from autods.pipeline.runtime import Runtime
from autods.service_metrics import ServiceCollector

ROOT = Path(__file__).resolve().parents[1]
CHART_FILES = ROOT / "deploy" / "helm" / "autods" / "files"
RULES = CHART_FILES / "autods-rules.yaml"
DASHBOARD = CHART_FILES / "autods-dashboard.json"
RULE_TESTS = ROOT / "tests" / "prometheus" / "autods-rules.test.yaml"
METRIC_NAME = re.compile(r"\bautods_[a-z0-9_]+\b")


def _promtool(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not installed (Debian/Ubuntu: apt-get install prometheus)")
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False,
                          timeout=120)


@pytest.fixture
def exported(metrics_on) -> set[str]:
    """Every sample name autods exports: the workers' (each recorded once, then scraped)
    and the API's families."""
    metrics.record_batch(metrics.BatchCounts({("published", ""): 1}, {"phash": 1}, [0.9]))
    metrics.observe_stage("ingest", 1.0)
    metrics.count_task("autods.ingest.chunk", "SUCCESS")
    metrics.count_chunk_retry("ingest")
    metrics.count_repaired(1)
    metrics.count_storage_error("put")
    names = {name for name, _ in metrics_on()}
    return names | {f.name for f in ServiceCollector(Runtime(Settings())).describe()}


def _rule_expressions() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def _panel_expressions() -> dict[str, list[str]]:
    """Each panel's title -> its query expressions (panels nested in rows included)."""
    doc = json.loads(DASHBOARD.read_text())
    panels = [p for top in doc["panels"] for p in [top, *top.get("panels", [])]]
    return {p["title"]: [t["expr"] for t in p.get("targets", [])]
            for p in panels if p["type"] != "row"}


def test_promtool_accepts_the_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rule_expressions())} rules found" in result.stdout


def test_alerts_fire_when_they_should_and_not_before() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alerts_name_only_exported_metrics(exported: set[str]) -> None:
    for alert, expr in _rule_expressions().items():
        named = set(METRIC_NAME.findall(expr))
        assert named and named <= exported, (alert, named - exported)


def test_every_panel_queries_exported_metrics_and_every_metric_has_a_panel(
        exported: set[str]) -> None:
    panels = _panel_expressions()
    queried: set[str] = set()
    for title, exprs in panels.items():
        assert exprs, f"panel {title!r} has no query"
        for expr in exprs:
            named = set(METRIC_NAME.findall(expr))
            assert named and named <= exported, (title, expr, named - exported)
            queried |= named
    families = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in exported}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in queried}
    assert families == shown, families - shown
