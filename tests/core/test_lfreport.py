"""The LF report: Snorkel's LF analysis, gold accuracy, label distribution and rendering."""

from __future__ import annotations

import numpy as np
import pytest

from autods.core.lfreport import LfReport, lf_report, summary_rows, table_rows, to_html

LABELS = ["neg", "pos", "neutral"]
NAMES = ["a<b", "kw_pos", "zs"]
#: Six samples, three LFs. Row 1 and row 4 are conflicts; row 3 has no vote at all.
MATRIX = np.array([
    [0, 0, -1],
    [1, 0, -1],
    [-1, 1, 1],
    [-1, -1, -1],
    [0, -1, 2],
    [-1, -1, 1],
])
#: Gold on rows 0, 1 and 3: "zs" voted on none of them.
GOLD = np.array([0, 0, -1, 1, -1, -1])
ASSIGNED = [0, 0, 1, -1, 0, 2]
SOURCES = ["gold", "gold", "label_model", None, "label_model", "end_model"]


@pytest.fixture(scope="module")
def report() -> LfReport:
    return lf_report(MATRIX, NAMES, LABELS, GOLD, weights=[0.5, 0.9, 0.6126],
                     assigned=ASSIGNED, sources=SOURCES,
                     model={"version": "lm-abc", "class_balance": [0.25, 0.5, 0.25]})


def test_per_lf_coverage_overlaps_conflicts(report: LfReport) -> None:
    """Each LF's share of rows voted on, voted with another LF, and voted in a conflict."""
    rows = {r.name: r for r in report.lfs}
    assert [r.name for r in report.lfs] == NAMES
    assert (rows["a<b"].coverage, rows["a<b"].overlaps) == (0.5, 0.5)
    assert rows["a<b"].conflicts == pytest.approx(2 / 6)
    assert (rows["kw_pos"].coverage, rows["kw_pos"].overlaps) == (0.5, 0.5)
    assert rows["kw_pos"].conflicts == pytest.approx(1 / 6)
    assert rows["zs"].coverage == 0.5
    assert rows["zs"].overlaps == pytest.approx(2 / 6)
    assert rows["zs"].conflicts == pytest.approx(1 / 6)


def test_per_lf_polarity_votes_and_weights(report: LfReport) -> None:
    """Polarity is the class names an LF voted, in class order; votes count its rows."""
    assert [r.polarity for r in report.lfs] == [["neg", "pos"], ["neg", "pos"],
                                                ["pos", "neutral"]]
    assert [r.votes for r in report.lfs] == [3, 3, 3]
    assert [r.weight for r in report.lfs] == [0.5, 0.9, 0.6126]


def test_per_lf_gold_figures(report: LfReport) -> None:
    """Gold votes, correct and incorrect counts and accuracy; None where an LF voted on
    no gold row."""
    got = [(r.gold_votes, r.correct, r.incorrect, r.accuracy) for r in report.lfs]
    assert got == [(2, 1, 1, 0.5), (2, 2, 0, 1.0), (0, 0, 0, None)]


def test_overall_rates_and_distributions(report: LfReport) -> None:
    """Version-wide coverage, abstain and conflict rates; the assigned label and source
    counts, the abstained label as "(abstain)" and no source as "none"."""
    assert (report.n_samples, report.n_gold) == (6, 3)
    assert report.coverage == pytest.approx(5 / 6)
    assert report.abstain_rate == pytest.approx(1 / 6)
    assert report.conflict_rate == pytest.approx(2 / 6)
    assert list(report.label_distribution.items()) == [
        ("(abstain)", 1), ("neg", 3), ("pos", 1), ("neutral", 1)]
    assert report.label_sources == {"gold": 2, "label_model": 2, "none": 1, "end_model": 1}
    assert report.model["version"] == "lm-abc"
    assert report.to_dict()["lfs"][2]["accuracy"] is None


def test_without_gold_weights_or_assignments_the_fields_stay_empty() -> None:
    """No gold: correct/incorrect/accuracy are None; no weights or assigned labels."""
    report = lf_report(MATRIX, NAMES, LABELS, np.full(6, -1))
    assert report.n_gold == 0
    assert [(r.gold_votes, r.correct, r.incorrect, r.accuracy, r.weight)
            for r in report.lfs] == [(0, None, None, None, None)] * 3
    assert report.label_distribution == {} and report.label_sources == {}
    assert report.model == {}


def test_an_empty_matrix_reports_zeros() -> None:
    """No samples: every rate is 0 and each LF row is empty."""
    report = lf_report(np.zeros((0, 2), np.int64), ["x", "y"], ["a", "b"],
                       np.zeros(0, np.int64))
    assert (report.n_samples, report.coverage, report.abstain_rate,
            report.conflict_rate) == (0, 0.0, 0.0, 0.0)
    assert [(r.name, r.polarity, r.coverage, r.votes) for r in report.lfs] == [
        ("x", [], 0.0, 0), ("y", [], 0.0, 0)]


def test_table_rows_header_and_a_row(report: LfReport) -> None:
    """Header first, then one string row per LF with percentages to one decimal."""
    rows = table_rows(report)
    assert rows[0] == ["LF", "polarity", "coverage", "overlaps", "conflicts", "weight",
                       "gold votes", "correct", "incorrect", "emp. accuracy"]
    assert rows[1] == ["a<b", "neg,pos", "50.0%", "50.0%", "33.3%", "0.500", "2", "1",
                       "1", "50.0%"]
    assert rows[3] == ["zs", "pos,neutral", "50.0%", "33.3%", "16.7%", "0.613", "0", "0",
                       "0", ""]
    assert len(rows) == 4


def test_summary_rows(report: LfReport) -> None:
    """The summary lists counts, rates, the model, its class balance, labels and sources."""
    assert summary_rows(report) == [
        ("samples", "6"), ("gold labels", "3"), ("LF coverage", "83.3%"),
        ("abstain rate", "16.7%"), ("conflict rate", "33.3%"), ("label model", "lm-abc"),
        ("class balance", "0.25, 0.50, 0.25"), ("label (abstain)", "1"), ("label neg", "3"),
        ("label pos", "1"), ("label neutral", "1"), ("source gold", "2"),
        ("source label_model", "2"), ("source none", "1"), ("source end_model", "1")]


def test_html_is_one_escaped_page_without_script(report: LfReport) -> None:
    """A full document naming every LF, with names and title escaped and no script."""
    page = to_html(report, "LFs of <v3> & co")
    assert page.startswith("<!doctype html><html>") and page.endswith("</body></html>")
    assert "<title>LFs of &lt;v3&gt; &amp; co</title>" in page
    assert "<td>a&lt;b</td>" in page and "a<b" not in page
    assert "<td>kw_pos</td>" in page and "<td>zs</td>" in page
    assert "<th>LF</th>" in page and "<td>label (abstain)</td>" in page
    assert "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page
