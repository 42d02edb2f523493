"""How good the labelling functions are: Snorkel's LF analysis, the label model's estimated
accuracies, and the label distribution, as data that a table, JSON or HTML renders.

Coverage, overlaps, conflicts and polarity come from Snorkel's ``LFAnalysis`` over every
row of the version; empirical accuracy only over the rows with gold, where it is defined.
"""

from __future__ import annotations

import html
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from autods.core.label import ABSTAIN


@dataclass(slots=True)
class LfRow:
    name: str
    polarity: list[str]
    coverage: float
    overlaps: float
    conflicts: float
    votes: int
    weight: float | None = None
    gold_votes: int = 0
    correct: int | None = None
    incorrect: int | None = None
    accuracy: float | None = None


@dataclass(slots=True)
class LfReport:
    """The LF table and the version-wide figures."""

    n_samples: int
    n_gold: int
    coverage: float
    abstain_rate: float
    conflict_rate: float
    lfs: list[LfRow]
    label_distribution: dict[str, int] = field(default_factory=dict)
    label_sources: dict[str, int] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> LfReport:
        """A report as ``to_dict`` stored it (a label model's row keeps one)."""
        return cls(**{**doc, "lfs": [LfRow(**row) for row in doc["lfs"]]})


def lf_report(matrix: np.ndarray, lf_names: Sequence[str], labels: Sequence[str],
              y: np.ndarray, weights: Sequence[float] | None = None,
              assigned: Sequence[int] | None = None, sources: Sequence[str | None] = (),
              model: dict[str, Any] | None = None) -> LfReport:
    """The report over one version's label matrix; ``y`` is gold (-1 for none),
    ``assigned`` the label each sample ends with (its distribution is reported)."""
    from snorkel.labeling import LFAnalysis

    n, m = matrix.shape
    gold = y != ABSTAIN
    if n:
        analysis = LFAnalysis(matrix)
        with warnings.catch_warnings():  # scipy's notice about a dtype Snorkel passes it
            warnings.simplefilter("ignore", FutureWarning)
            cov, ovl, cfl = (analysis.lf_coverages(), analysis.lf_overlaps(),
                             analysis.lf_conflicts())
            polarity = analysis.lf_polarities()
    else:
        cov = ovl = cfl = np.zeros(m)
        polarity = [[] for _ in range(m)]
    rows = []
    for j, name in enumerate(lf_names):
        voted = matrix[:, j] != ABSTAIN
        row = LfRow(name=name, polarity=[labels[p] for p in polarity[j]],
                    coverage=float(cov[j]), overlaps=float(ovl[j]), conflicts=float(cfl[j]),
                    votes=int(voted.sum()),
                    weight=float(weights[j]) if weights is not None else None)
        on_gold = voted & gold
        row.gold_votes = int(on_gold.sum())
        if gold.any():
            row.correct = int((matrix[on_gold, j] == y[on_gold]).sum())
            row.incorrect = row.gold_votes - row.correct
            row.accuracy = row.correct / row.gold_votes if row.gold_votes else None
        rows.append(row)
    covered = (matrix != ABSTAIN).any(axis=1) if n else np.zeros(0, bool)
    conflicting = np.array([len(set(r[r != ABSTAIN].tolist())) > 1 for r in matrix], bool)
    dist: dict[str, int] = {}
    if assigned is not None:
        counts = Counter(int(a) for a in assigned)
        dist = {labels[c] if c != ABSTAIN else "(abstain)": counts[c] for c in sorted(counts)}
    return LfReport(
        n_samples=n, n_gold=int(gold.sum()),
        coverage=float(covered.mean()) if n else 0.0,
        abstain_rate=float(1 - covered.mean()) if n else 0.0,
        conflict_rate=float(conflicting.mean()) if n else 0.0,
        lfs=rows, label_distribution=dist,
        label_sources=dict(Counter(s or "none" for s in sources)), model=model or {})


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def table_rows(report: LfReport) -> list[list[str]]:
    """The LF table as strings, header first: shared by the terminal and HTML."""
    out = [["LF", "polarity", "coverage", "overlaps", "conflicts", "weight", "gold votes",
            "correct", "incorrect", "emp. accuracy"]]
    for r in report.lfs:
        out.append([r.name, ",".join(r.polarity), _pct(r.coverage), _pct(r.overlaps),
                    _pct(r.conflicts), "" if r.weight is None else f"{r.weight:.3f}",
                    str(r.gold_votes), "" if r.correct is None else str(r.correct),
                    "" if r.incorrect is None else str(r.incorrect), _pct(r.accuracy)])
    return out


def summary_rows(report: LfReport) -> list[tuple[str, str]]:
    rows = [("samples", str(report.n_samples)), ("gold labels", str(report.n_gold)),
            ("LF coverage", _pct(report.coverage)), ("abstain rate", _pct(report.abstain_rate)),
            ("conflict rate", _pct(report.conflict_rate))]
    if report.model:
        rows.append(("label model", str(report.model.get("version", ""))))
        balance = report.model.get("class_balance")
        if balance:
            rows.append(("class balance", ", ".join(f"{b:.2f}" for b in balance)))
    rows += [(f"label {name}", str(count)) for name, count in report.label_distribution.items()]
    rows += [(f"source {name}", str(count)) for name, count in report.label_sources.items()]
    return rows


def to_html(report: LfReport, title: str) -> str:
    """One self-contained page: no script, no external asset."""
    esc = html.escape

    def table(rows: list[list[str]], head: bool) -> str:
        body = []
        for i, row in enumerate(rows):
            tag = "th" if head and i == 0 else "td"
            body.append("<tr>" + "".join(f"<{tag}>{esc(c)}</{tag}>" for c in row) + "</tr>")
        return "<table>" + "".join(body) + "</table>"

    style = ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;"
             "margin-bottom:2em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}")
    summary = [list(r) for r in summary_rows(report)]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{style}</style></head><body><h1>{esc(title)}</h1>"
            f"<h2>Labelling functions</h2>{table(table_rows(report), True)}"
            f"<h2>Summary</h2>{table(summary, False)}</body></html>")
