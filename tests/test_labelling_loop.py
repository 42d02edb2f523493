"""The labelling loop end to end in the embedded mode, from the CLI as the README shows it,
on a real labelled corpus (movie-review snippets) and a real Label Studio: build with
keyword LFs, report on them, send the least certain samples to Label Studio, answer them
there as a person would, import the answers as gold, relabel, and check the labels against
the corpus's own gold that the loop never saw."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autods import cli
from autods.core.labelstudio import LabelStudioClient
from autods.core.maps import read_samples
from autods.dataset import open_dataset
from bench.reviews import reviews, write_jsonl
from tests.labelstudio_server import annotate

ROOT = Path(__file__).resolve().parents[1]
N_REVIEWS = 800
N_GOLD = 200
ENV = {"AUTODS_CLIP_PRETRAINED": "random", "AUTODS_PIPELINE_CHUNK_SIZE": "100",
       "AUTODS_PIPELINE_BATCH_SIZE": "250"}


def _autods(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """A command that starts a worker, run as a user runs it."""
    proc = subprocess.run([str(Path(sys.executable).parent / "autods"), *args], cwd=ROOT,
                          env={**os.environ, **ENV}, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _autods_here(*args: str, env: dict | None = None) -> str:
    """A command that runs in its own process only, run in this one (the same CLI app, its
    imports paid once); returns what it printed."""
    result = CliRunner().invoke(cli.app, list(args), env={**ENV, **(env or {})})
    assert result.exit_code == 0, result.output[-3000:]
    return result.output


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The first reviews of the corpus (balanced) as a text source; text -> gold label."""
    path = tmp_path_factory.mktemp("reviews") / "reviews.jsonl"
    write_jsonl(path, N_REVIEWS)
    return path, {r.text: r.label for r in reviews()[:N_REVIEWS]}


def _samples(out: Path, version: int) -> list:
    """The version's samples, read back from its shards (members and manifest fields)."""
    ds = open_dataset(str(out))
    return [sample for shard in ds.version(version).shards
            for sample in read_samples(ds.store, shard)]


def _labels(out: Path, version: int, truth: dict[str, str]) -> list[tuple[str, str | None,
                                                                           str | None]]:
    """(gold, label, source) per sample of a version, in shard order."""
    return [(truth[s.members["txt"].decode()], s.fields["label"], s.fields["label_source"])
            for s in _samples(out, version)]


def _accuracy(rows) -> float:
    return sum(g == lab for g, lab, _ in rows) / len(rows)


def test_the_loop_labels_every_review_from_gold_a_person_gave_in_label_studio(
        corpus, label_studio, tmp_path):
    source, truth = corpus
    out = tmp_path / "ds"
    _autods("build", str(source), "--out", str(out), "--lfs", "examples.reviews_lfs",
            "--workers", "2", "--quiet")
    first = _labels(out, 1, truth)
    assert len(first) == N_REVIEWS
    covered_first = [r for r in first if r[1] is not None]
    assert 0.1 < len(covered_first) / N_REVIEWS < 0.5  # keywords cover a minority

    report = json.loads(_autods_here("lf-report", str(out), "--format", "json"))
    assert report["n_samples"] == N_REVIEWS and report["n_gold"] == 0
    assert {r["name"] for r in report["lfs"]} >= {"lf_bad", "lf_great", "lf_boring"}
    assert report["coverage"] == pytest.approx(len(covered_first) / N_REVIEWS)

    ls_env = {"LABEL_STUDIO_URL": label_studio.url,
              "LABEL_STUDIO_API_KEY": label_studio.token}
    pushed = _autods_here("label-studio", "export", str(out), "--limit", str(N_GOLD),
                          "--project", "0", env=ls_env)
    project = int(re.search(r"project (\d+)", pushed).group(1))
    with LabelStudioClient(label_studio.url, label_studio.token) as client:
        tasks = client.tasks(project)
    assert len(tasks) == N_GOLD
    assert all(t["data"]["text"] in truth for t in tasks)
    for task in tasks:  # a person reads each text and picks its class
        annotate(label_studio.url, label_studio.token, task["id"], truth[task["data"]["text"]])
    imported = _autods_here("label-studio", "import", str(out), "--project", str(project),
                            env=ls_env)
    assert f"{N_GOLD} gold label(s)" in imported

    relabelled = _autods("relabel", str(out)).stdout
    assert "latest version 2" in relabelled and f"gold {N_GOLD}" in relabelled
    after = _labels(out, 2, truth)
    gold_texts = {t["data"]["text"] for t in tasks}
    held_out = [r for r, s in zip(after, _samples(out, 2), strict=True)
                if s.members["txt"].decode() not in gold_texts]
    assert len(held_out) == N_REVIEWS - N_GOLD
    assert sum(r[1] is not None for r in after) / N_REVIEWS >= 0.95
    assert _accuracy(held_out) >= 0.70
    sources = {r[2] for r in after}
    assert sources == {"gold", "label_model", "end_model"}
    assert all(g == lab for g, lab, s in after if s == "gold")
    # Where LFs voted, no worse than the build's fit.
    covered_after = [r for r in after if r[2] == "label_model"]
    assert _accuracy(covered_after) >= _accuracy(covered_first) - 1e-9

    # Version 1 is intact; version 2's .cls members agree with its manifests.
    assert _labels(out, 1, truth) == first
    _check_cls(out, 2)


def _check_cls(out: Path, version: int) -> None:
    samples = _samples(out, version)
    assert samples and all(int(s.members["cls"]) == s.fields["label_id"] for s in samples)
