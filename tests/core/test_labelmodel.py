"""The version-wide label model: fingerprints, gold priors, the fit, label assignment and
the order in which people review samples."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence

import numpy as np
import pytest

from autods.core.label import ABSTAIN, LabelSpec, keyword_lf
from autods.core.labelmodel import (
    DEFAULT_PREC,
    FittedLabelModel,
    LabelSource,
    assign,
    conflicts,
    entropy,
    fit_label_model,
    gold_digest,
    lf_fingerprint,
    prec_from_gold,
    review_order,
)
from autods.core.zeroshot import zero_shot_lf

ACCURACIES = (0.9, 0.8, 0.7, 0.65, 0.6)
COVERAGES = (0.3, 0.6, 0.5, 0.4, 0.45)


def _spec(labels: Sequence[str] = ("neg", "pos"),
          keywords: Sequence[Sequence[str]] = (("awful",), ("great", "superb"))) -> LabelSpec:
    lfs = [keyword_lf(f"kw_{i}", i % len(labels), words) for i, words in enumerate(keywords)]
    return LabelSpec(labels=list(labels), lfs=lfs, source="tests.lfs")


def _five_lf_spec() -> LabelSpec:
    return _spec(keywords=[[f"word{j}"] for j in range(len(ACCURACIES))])


def _synthetic_votes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Votes of five LFs with known accuracies on balanced binary truth; returns
    (matrix, truth)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    matrix = np.full((n, len(ACCURACIES)), ABSTAIN, dtype=np.int64)
    for j, (acc, cov) in enumerate(zip(ACCURACIES, COVERAGES, strict=True)):
        voted = rng.random(n) < cov
        right = rng.random(n) < acc
        matrix[voted, j] = np.where(right[voted], truth[voted], 1 - truth[voted])
    return matrix, truth


def _fitted(**overrides: object) -> FittedLabelModel:
    base: dict[str, object] = {
        "labels": ["neg", "pos"], "lf_names": ["a", "b"], "weights": [0.8, 0.6],
        "class_balance": [0.5, 0.5], "prec_init": [0.7, 0.7], "lf_sha": "f" * 64,
        "gold_sha": gold_digest({"k1": "neg"}), "n_gold": 1}
    base.update(overrides)
    return FittedLabelModel(**base)  # type: ignore[arg-type]


class _FakeEncoder:
    """Deterministic prompt vectors: each prompt's length spread over four dimensions."""

    name = "fake-encoder"

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([[len(t), 1.0, 0.0, (len(t) % 3) + 1.0] for t in texts])


# -- lf_fingerprint -----------------------------------------------------------------------


def test_fingerprint_is_stable_for_identical_specs_built_twice() -> None:
    """Two specs built from the same LF code, names and classes share one fingerprint."""
    first, second = _spec(), _spec()
    assert first.lfs[0] is not second.lfs[0]
    assert lf_fingerprint(first) == lf_fingerprint(second)
    assert len(lf_fingerprint(first)) == 64


def test_fingerprint_changes_with_an_lf_keyword() -> None:
    """Adding or replacing a keyword of one LF gives another fingerprint."""
    base = lf_fingerprint(_spec(keywords=[["awful"], ["great", "superb"]]))
    assert lf_fingerprint(_spec(keywords=[["awful"], ["great"]])) != base
    assert lf_fingerprint(_spec(keywords=[["dreadful"], ["great", "superb"]])) != base


def test_fingerprint_changes_with_a_class_name() -> None:
    """Renaming a class changes the fingerprint though every LF is the same."""
    assert lf_fingerprint(_spec(labels=["neg", "pos"])) != lf_fingerprint(
        _spec(labels=["negative", "pos"]))


def test_fingerprint_changes_with_an_lf_name_and_its_voted_class() -> None:
    """The LF's name and the class it votes (a value its code closes over) both count."""
    base = _spec()
    renamed = LabelSpec(labels=base.labels,
                        lfs=[keyword_lf("other", 0, ["awful"]), base.lfs[1]], source="x")
    other_class = LabelSpec(labels=base.labels,
                            lfs=[keyword_lf("kw_0", 1, ["awful"]), base.lfs[1]], source="x")
    assert lf_fingerprint(renamed) != lf_fingerprint(base)
    assert lf_fingerprint(other_class) != lf_fingerprint(base)


def test_fingerprint_ignores_the_spec_source_module_name() -> None:
    """Only LF code and classes count: the module the spec came from does not."""
    base = _spec()
    moved = LabelSpec(labels=base.labels, lfs=list(base.lfs), source="elsewhere.lfs")
    assert lf_fingerprint(moved) == lf_fingerprint(base)


def test_zero_shot_lfs_fingerprint_by_their_prompts() -> None:
    """A zero-shot LF digests as its prompts, margin and modality; binding an encoder does
    not change it."""
    prompts = {0: ["a dull film"], 1: ["a great film"]}
    lf = zero_shot_lf("zs", prompts)
    spec = LabelSpec(labels=["neg", "pos"], lfs=[lf], source="m")
    expected = hashlib.sha256(json.dumps(
        [["neg", "pos"], [["zs", lf._f.fingerprint()]]]).encode()).hexdigest()
    assert lf_fingerprint(spec) == expected

    same = LabelSpec(labels=["neg", "pos"], lfs=[zero_shot_lf("zs", dict(prompts))], source="m")
    other = LabelSpec(labels=["neg", "pos"],
                      lfs=[zero_shot_lf("zs", {0: ["a dull film"], 1: ["a fine film"]})],
                      source="m")
    wider = LabelSpec(labels=["neg", "pos"], lfs=[zero_shot_lf("zs", prompts, margin=0.1)],
                      source="m")
    assert lf_fingerprint(same) == expected
    assert lf_fingerprint(other) != expected
    assert lf_fingerprint(wider) != expected

    lf._f.bind(_FakeEncoder())
    assert lf_fingerprint(spec) == expected


# -- FittedLabelModel.version -------------------------------------------------------------


def test_version_changes_with_weights_and_gold() -> None:
    """Other weights or another gold set give another version; rounding noise does not."""
    base = _fitted()
    assert base.version.startswith("lm-") and len(base.version) == 15
    assert _fitted(weights=[0.8, 0.61]).version != base.version
    assert _fitted(gold_sha=gold_digest({"k1": "pos"})).version != base.version
    assert _fitted(gold_sha=gold_digest({"k1": "neg", "k2": "neg"})).version != base.version
    assert _fitted(weights=[0.8 + 1e-9, 0.6]).version == base.version


def test_version_changes_with_lf_code_and_class_balance() -> None:
    """The LF fingerprint and the class balance are hashed too."""
    base = _fitted()
    assert _fitted(lf_sha="e" * 64).version != base.version
    assert _fitted(class_balance=[0.6, 0.4]).version != base.version


def test_version_ignores_everything_else() -> None:
    """Names, priors, the gold count and the fitted object do not enter the version."""
    base = _fitted()
    for change in ({"labels": ["a", "b"]}, {"lf_names": ["x", "y"]},
                   {"prec_init": [0.1, 0.9]}, {"n_gold": 99}, {"model": object()}):
        assert dataclasses.replace(base, **change).version == base.version, change


def test_gold_digest_depends_on_content_not_order() -> None:
    """The same keys and labels in any order digest alike; a changed label does not."""
    assert gold_digest({"a": "x", "b": "y"}) == gold_digest({"b": "y", "a": "x"})
    assert gold_digest({"a": "x", "b": "y"}) != gold_digest({"a": "x", "b": "x"})


# -- prec_from_gold -----------------------------------------------------------------------


def test_prec_from_gold_is_laplace_smoothed_accuracy_on_gold() -> None:
    """(correct + 1) / (votes + 2) over gold rows; DEFAULT_PREC with no gold vote."""
    matrix = np.array([
        [0, -1, 1, -1],
        [1, -1, 1, -1],
        [0, -1, -1, -1],
        [1, 0, -1, 1],   # no gold on this row
        [-1, -1, 1, -1],
    ])
    y = np.array([0, 1, 1, -1, 0])
    got = prec_from_gold(matrix, y)
    # LF0: 3 gold votes, 2 right; LF1 and LF3 only vote off gold; LF2: 3 votes, 1 right.
    np.testing.assert_allclose(got, [3 / 5, DEFAULT_PREC, 2 / 5, DEFAULT_PREC])


def test_prec_from_gold_clips_to_five_and_ninety_five_percent() -> None:
    """Nineteen right votes would be 20/21 and nineteen wrong 1/21: both are clipped."""
    y = np.zeros(19, dtype=np.int64)
    matrix = np.stack([np.zeros(19, np.int64), np.ones(19, np.int64),
                       np.r_[np.zeros(9, np.int64), np.ones(10, np.int64)]], axis=1)
    np.testing.assert_allclose(prec_from_gold(matrix, y), [0.95, 0.05, 10 / 21])


def test_prec_from_gold_without_gold_is_the_default() -> None:
    """No gold at all leaves every LF at the default prior."""
    matrix = np.array([[0, 1], [1, 1]])
    np.testing.assert_allclose(prec_from_gold(matrix, np.array([-1, -1])),
                               [DEFAULT_PREC, DEFAULT_PREC])


# -- fit_label_model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic() -> tuple[np.ndarray, np.ndarray, FittedLabelModel]:
    """Five LFs of known accuracy over 2000 rows, and the model fitted to them."""
    matrix, truth = _synthetic_votes(2000, seed=0)
    fitted = fit_label_model(_five_lf_spec(), matrix, np.full(2000, ABSTAIN), epochs=500,
                             seed=0)
    return matrix, truth, fitted


def test_fit_labels_covered_rows_better_than_the_weakest_lf(synthetic) -> None:
    """On rows some LF voted on, the fitted model beats the weakest LF's own accuracy by
    a wide margin."""
    matrix, truth, fitted = synthetic
    covered = (matrix != ABSTAIN).any(axis=1)
    predicted = fitted.predict_proba(matrix).argmax(axis=1)
    accuracy = float((predicted[covered] == truth[covered]).mean())
    weakest = matrix[:, -1] != ABSTAIN
    weakest_accuracy = float((matrix[weakest, -1] == truth[weakest]).mean())
    assert weakest_accuracy < 0.65
    assert accuracy > 0.75
    assert accuracy > weakest_accuracy + 0.1


def test_fit_weights_rank_lfs_by_their_true_accuracy(synthetic) -> None:
    """The estimated accuracies order the best LF above the worst, the two best above the
    two worst, and describe() names them."""
    _, _, fitted = synthetic
    w = fitted.weights
    assert len(w) == 5 and all(0.0 < x < 1.0 for x in w)
    assert w[0] > w[4]
    assert min(w[0], w[1]) > max(w[3], w[4])
    assert fitted.lf_names == ["kw_0", "kw_1", "kw_2", "kw_3", "kw_4"]
    assert fitted.describe()["weights"] == dict(zip(fitted.lf_names, w, strict=True))
    assert fitted.class_balance == [0.5, 0.5]
    assert fitted.n_gold == 0 and fitted.prec_init == [DEFAULT_PREC] * 5


def test_fit_records_gold_priors_and_digest() -> None:
    """Gold rows set prec_init per LF, n_gold counts them and gold_sha is kept."""
    matrix, truth = _synthetic_votes(300, seed=1)
    y = np.full(300, ABSTAIN)
    y[:40] = truth[:40]
    fitted = fit_label_model(_five_lf_spec(), matrix, y, epochs=50, seed=0,
                             gold_sha="abc")
    assert fitted.n_gold == 40 and fitted.gold_sha == "abc"
    np.testing.assert_allclose(fitted.prec_init, prec_from_gold(matrix, y))
    assert fitted.lf_sha == lf_fingerprint(_five_lf_spec())


def test_fit_uses_the_class_balance_given() -> None:
    """A balance of 3:1 is normalised and is the prior of a row with no vote."""
    matrix, _ = _synthetic_votes(500, seed=2)
    fitted = fit_label_model(_five_lf_spec(), matrix, np.full(500, ABSTAIN), epochs=100,
                             seed=0, class_balance=[3, 1])
    assert fitted.class_balance == [0.75, 0.25]
    no_votes = np.full((2, 5), ABSTAIN)
    np.testing.assert_allclose(fitted.predict_proba(no_votes), [[0.75, 0.25]] * 2, atol=1e-6)


@pytest.mark.parametrize("balance", [[1.0], [0.5, 0.3, 0.2], [1.2, -0.2], [1.0, 0.0]])
def test_fit_refuses_a_wrong_class_balance(balance: list[float]) -> None:
    """A balance of the wrong length or with a share that is not positive is refused."""
    matrix, _ = _synthetic_votes(50, seed=3)
    with pytest.raises(ValueError, match="class balance needs 2 positive shares"):
        fit_label_model(_five_lf_spec(), matrix, np.full(50, ABSTAIN), epochs=5, seed=0,
                        class_balance=balance)


def test_fit_without_any_vote_gives_no_model_and_the_balance_per_row() -> None:
    """An all-abstain matrix skips the fit; predictions are the class balance per row."""
    matrix = np.full((4, 5), ABSTAIN)
    fitted = fit_label_model(_five_lf_spec(), matrix, np.full(4, ABSTAIN), epochs=5, seed=0,
                             class_balance=[1, 3])
    assert fitted.model is None
    assert fitted.weights == [DEFAULT_PREC] * 5
    proba = fitted.predict_proba(matrix)
    assert proba.shape == (4, 2)
    np.testing.assert_allclose(proba, [[0.25, 0.75]] * 4)
    assert fitted.predict_proba(np.zeros((0, 5), np.int64)).shape == (0, 2)


# -- assign -------------------------------------------------------------------------------

N_PER_CLUSTER = 150
COVERED_PER_CLUSTER = 90


@pytest.fixture(scope="module")
def clusters() -> dict[str, np.ndarray]:
    """Two gaussian clusters in 16 dims (class = cluster); LFs vote on the first 90 rows of
    each cluster, nothing on the other 60."""
    rng = np.random.default_rng(7)
    n = 2 * N_PER_CLUSTER
    truth = np.repeat([0, 1], N_PER_CLUSTER)
    centre = np.full(16, 1.5)
    vectors = rng.normal(size=(n, 16)) + np.where(truth[:, None] == 0, centre, -centre)
    covered = np.tile(np.arange(N_PER_CLUSTER) < COVERED_PER_CLUSTER, 2)
    matrix = np.full((n, 3), ABSTAIN, dtype=np.int64)
    for j, acc in enumerate((0.9, 0.8, 0.75)):
        votes = covered & (rng.random(n) < 0.7)
        if j == 0:
            votes |= covered  # every covered row has at least this vote
        right = rng.random(n) < acc
        matrix[votes, j] = np.where(right[votes], truth[votes], 1 - truth[votes])
    return {"truth": truth, "vectors": vectors, "matrix": matrix, "covered": covered}


@pytest.fixture(scope="module")
def assigned(clusters) -> dict[str, object]:
    """Gold on rows 0 and 1 (LFs all voted the other class there), a covered row and an
    uncovered row without a vector, and the assignment of all of it."""
    matrix = clusters["matrix"].copy()
    vectors = clusters["vectors"].copy()
    y = np.full(matrix.shape[0], ABSTAIN)
    matrix[0] = [1, 1, 1]
    matrix[1] = [1, ABSTAIN, 1]
    y[[0, 1]] = 0
    uncovered_nan = N_PER_CLUSTER - 1          # cluster 0, uncovered
    covered_nan = N_PER_CLUSTER + 5            # cluster 1, covered
    vectors[uncovered_nan] = np.nan
    vectors[covered_nan] = np.nan
    spec = LabelSpec(labels=["a", "b"], lfs=[keyword_lf(f"lf{j}", 0, [f"w{j}"])
                                             for j in range(3)], source="t")
    fitted = fit_label_model(spec, matrix, y, epochs=200, seed=0)
    return {"fitted": fitted, "matrix": matrix, "y": y, "vectors": vectors,
            "result": assign(fitted, matrix, y, vectors, seed=0),
            "uncovered_nan": uncovered_nan, "covered_nan": covered_nan}


def test_assign_gold_overrides_the_votes(assigned) -> None:
    """Gold rows get their gold label at probability 1.0 from source "gold", even where
    every LF voted the other class."""
    result = assigned["result"]
    assert result.label[:2].tolist() == [0, 0]
    assert result.prob[:2].tolist() == [1.0, 1.0]
    assert result.source[:2] == ["gold", "gold"]
    assert result.source[0] is LabelSource.GOLD
    np.testing.assert_array_equal(result.probs[:2], [[1.0, 0.0], [1.0, 0.0]])


def test_assign_covered_rows_take_the_label_model(assigned, clusters) -> None:
    """Every covered row without gold is the label model's argmax and max probability."""
    result, fitted, matrix = assigned["result"], assigned["fitted"], assigned["matrix"]
    rows = np.flatnonzero(clusters["covered"])
    rows = rows[rows > 1]
    proba = fitted.predict_proba(matrix)
    assert {result.source[i] for i in rows} == {"label_model"}
    np.testing.assert_array_equal(result.label[rows], proba[rows].argmax(axis=1))
    np.testing.assert_allclose(result.prob[rows], proba[rows].max(axis=1))
    assert result.source[assigned["covered_nan"]] == "label_model"
    accuracy = (result.label[rows] == clusters["truth"][rows]).mean()
    assert accuracy > 0.85


def test_assign_uncovered_rows_take_the_end_model(assigned, clusters) -> None:
    """Uncovered rows with a vector are labelled by the end model, each cluster's rows
    with its own class more than 90 % of the time."""
    result, truth = assigned["result"], clusters["truth"]
    todo = ~clusters["covered"]
    todo[assigned["uncovered_nan"]] = False
    rows = np.flatnonzero(todo)
    assert len(rows) == 2 * (N_PER_CLUSTER - COVERED_PER_CLUSTER) - 1
    assert {result.source[i] for i in rows} == {"end_model"}
    for cls in (0, 1):
        mine = rows[truth[rows] == cls]
        assert (result.label[mine] == cls).mean() > 0.9, cls
    np.testing.assert_allclose(result.probs[rows].sum(axis=1), 1.0)
    np.testing.assert_allclose(result.prob[rows], result.probs[rows].max(axis=1))
    assert (result.prob[rows] >= 0.5).all()


def test_assign_leaves_an_uncovered_row_without_a_vector_unlabelled(assigned) -> None:
    """An uncovered row whose vector is NaN gets -1, probability 0 and no source."""
    result, i = assigned["result"], assigned["uncovered_nan"]
    assert (int(result.label[i]), float(result.prob[i]), result.source[i]) == (-1, 0.0, None)


def test_assign_without_vectors_leaves_uncovered_rows_unlabelled(assigned, clusters) -> None:
    """With no vectors at all there is no end model: uncovered rows stay -1."""
    result = assign(assigned["fitted"], assigned["matrix"], assigned["y"], None, seed=0)
    rows = np.flatnonzero(~clusters["covered"])
    assert (result.label[rows] == ABSTAIN).all()
    assert (result.prob[rows] == 0.0).all()
    assert {result.source[i] for i in rows} == {None}
    assert result.source[:2] == ["gold", "gold"]
    covered = np.flatnonzero(clusters["covered"])[2:]
    np.testing.assert_array_equal(result.label[covered], assigned["result"].label[covered])


def test_assign_without_a_model_keeps_only_gold_and_end_model_labels() -> None:
    """No vote at all: covered rows do not exist, gold stays and others are -1 without
    vectors."""
    spec = _spec()
    matrix = np.full((3, 2), ABSTAIN)
    y = np.array([1, ABSTAIN, ABSTAIN])
    fitted = fit_label_model(spec, matrix, y, epochs=5, seed=0)
    result = assign(fitted, matrix, y, None, seed=0)
    assert result.label.tolist() == [1, -1, -1]
    assert result.source == ["gold", None, None]
    np.testing.assert_allclose(result.probs, [[0.0, 1.0], [0.5, 0.5], [0.5, 0.5]])


# -- review_order, conflicts, entropy -----------------------------------------------------


def test_review_order_by_entropy_excludes_gold_and_keeps_row_order_on_ties() -> None:
    """Most uncertain first; equal entropies (0.3/0.7 and 0.7/0.3 too) in row order; gold
    rows never."""
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5], [0.7, 0.3], [0.5, 0.5],
                      [0.5, 0.5]])
    matrix = np.full((6, 2), ABSTAIN)
    exclude = np.array([False, False, False, False, False, True])
    assert review_order(probs, matrix, exclude).tolist() == [2, 4, 1, 3, 0]
    assert review_order(probs, matrix, exclude, by="entropy").tolist() == [2, 4, 1, 3, 0]


def test_review_order_by_conflict_puts_disagreements_first() -> None:
    """Rows where LFs disagree come first (by entropy among them), then the rest."""
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5], [0.7, 0.3], [0.5, 0.5],
                      [0.55, 0.45]])
    matrix = np.array([[0, -1], [0, 1], [-1, -1], [1, 0], [0, 0], [1, 0]])
    exclude = np.array([False, False, False, False, True, True])
    assert review_order(probs, matrix, exclude, by="conflict").tolist() == [1, 3, 2, 0]
    assert review_order(probs, matrix, exclude, by="entropy").tolist() == [2, 1, 3, 0]


def test_review_order_refuses_an_unknown_criterion() -> None:
    """Only "entropy" and "conflict" are orders."""
    with pytest.raises(ValueError, match="'entropy' or 'conflict', not 'random'"):
        review_order(np.array([[0.5, 0.5]]), np.array([[0]]), np.array([False]), by="random")


def test_conflicts_flags_rows_with_two_different_votes() -> None:
    """Agreement, one vote or no vote is no conflict; two classes among the votes are."""
    matrix = np.array([[0, 1, -1], [0, 0, -1], [-1, -1, -1], [1, -1, 1], [2, 0, 1],
                       [-1, 2, -1]])
    assert conflicts(matrix).tolist() == [True, False, False, False, True, False]
    assert conflicts(np.zeros((0, 3), np.int64)).tolist() == []


def test_entropy_exact_values() -> None:
    """Natural-log entropy per row: ln 2, ~0 for a certain row, ln 3, and 0.25/0.75."""
    got = entropy(np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3],
                            [0.25, 0.75, 0.0]]))
    expected = [math.log(2), 0.0, math.log(3),
                -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_assign_trains_one_end_model_per_vector_space(clusters) -> None:
    """Rows of two embedding models each get their own end model: the second space has
    the classes the other way round, so one linear model over both cannot label both
    (about half right), while one per space labels each."""
    truth, matrix = clusters["truth"], clusters["matrix"]
    n = len(truth)
    second = np.random.default_rng(3).random(n) < 0.5
    vectors = clusters["vectors"].copy()
    vectors[second] = -vectors[second]
    spec = LabelSpec(labels=["a", "b"], lfs=[keyword_lf(f"lf{j}", 0, [f"w{j}"])
                                             for j in range(3)], source="t")
    none = np.full(n, ABSTAIN)
    fitted = fit_label_model(spec, matrix, none, epochs=200, seed=0)
    uncovered = ~clusters["covered"]
    grouped = assign(fitted, matrix, none, vectors, seed=0, groups=second.astype(int))
    assert (grouped.label[uncovered] == truth[uncovered]).mean() > 0.9
    mixed = assign(fitted, matrix, none, vectors, seed=0)
    assert (mixed.label[uncovered] == truth[uncovered]).mean() < 0.75
