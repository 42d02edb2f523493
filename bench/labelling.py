"""The labelling loop on a real labelled corpus: what a build's labels are worth, and what
relabel with 200 gold labels makes of them.

The corpus is ``bench.reviews`` (Pang & Lee's movie-review snippets, gold polarity for
each) and the LFs are the ten keyword rules of ``examples/reviews_lfs.py`` plus the
built-in class-name mentions, as a build uses them. Before: the build's fit, one
LabelModel per batch of ``--batch-size`` items (the pipeline's default 10,000 holds the
whole corpus; 1,000 shows what batching did), and Snorkel's majority vote as the
reference. After: the loop as ``autods label-studio export`` / ``import`` / ``relabel``
run it, here without the processes: the version's label model, the 200 samples it is
least sure of labelled from the corpus's gold (as a person would in Label Studio), then
the label model refitted with them and the end model on all-MiniLM-L6-v2 vectors. Every
accuracy is measured on gold the loop did not see.
"""

from __future__ import annotations

import time

import numpy as np

from autods.core.label import ABSTAIN, apply_lfs, data_point, fit_predict, load_spec
from autods.core.labelmodel import assign, fit_label_model, review_order
from autods.core.textembed import SentenceEmbedder
from bench.common import Context, Row, log
from bench.reviews import LABELS, reviews

GROUP = "labelling"
N_GOLD = 200
SEED, EPOCHS = 0, 200
COVERAGE_TARGET = 0.95
ACCURACY_TARGET = 0.70


def _accuracy(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    return float((pred[mask] == truth[mask]).mean()) if mask.any() else float("nan")


def _batch_fit(spec, matrix: np.ndarray, batch: int) -> np.ndarray:
    """Labels as a build gives them: one fit per batch of ``batch`` items."""
    out = np.full(matrix.shape[0], ABSTAIN, np.int64)
    for start in range(0, matrix.shape[0], batch):
        out[start:start + batch], _ = fit_predict(spec, matrix[start:start + batch], EPOCHS,
                                                  SEED)
    return out


def _majority(matrix: np.ndarray, k: int) -> np.ndarray:
    from snorkel.labeling.model import MajorityLabelVoter

    pred = MajorityLabelVoter(cardinality=k).predict(matrix, tie_break_policy="abstain")
    return np.asarray(pred, np.int64)


def run(ctx: Context) -> list[Row]:
    corpus = reviews()[:ctx.size(1000, 10**9)]
    spec = load_spec("examples.reviews_lfs")
    truth = np.array([LABELS.index(r.label) for r in corpus])
    log(f"labelling: {len(corpus)} reviews, {len(spec.lfs)} LFs; embedding the texts")
    matrix = apply_lfs(spec, [data_point(text=r.text, modality="text") for r in corpus])
    vectors = SentenceEmbedder().embed_texts([r.text for r in corpus]).astype(np.float32)
    covered = (matrix != ABSTAIN).any(axis=1)
    everyone = np.ones(len(corpus), bool)

    build = _batch_fit(spec, matrix, 10_000)
    batched = _batch_fit(spec, matrix, 1000)
    vote = _majority(matrix, len(LABELS))

    started = time.perf_counter()
    none = np.full(len(corpus), ABSTAIN)
    first = assign(fit_label_model(spec, matrix, none, epochs=EPOCHS, seed=SEED), matrix,
                   none, vectors, SEED)
    chosen = review_order(first.probs, matrix, np.zeros(len(corpus), bool))[:N_GOLD]
    gold = none.copy()
    gold[chosen] = truth[chosen]
    model = fit_label_model(spec, matrix, gold, epochs=EPOCHS, seed=SEED)
    after = assign(model, matrix, gold, vectors, SEED)
    fit_s = time.perf_counter() - started

    held = gold == ABSTAIN
    coverage = float((after.label != ABSTAIN).mean())
    acc = _accuracy(after.label, truth, held)
    acc_covered = _accuracy(after.label, truth, held & covered)
    build_covered = _accuracy(build, truth, held & covered)
    sources = {s: after.source.count(s) for s in ("gold", "label_model", "end_model")}
    setup = (f"{len(corpus)} movie-review snippets (Pang & Lee sentence polarity, "
             f"{int(truth.sum())} positive), {len(spec.lfs)} LFs (10 keyword rules + 2 class "
             f"mentions) covering {covered.mean():.1%}; {N_GOLD} gold taken by entropy "
             f"({int(truth[chosen].sum())} positive), accuracies on the other "
             f"{int(held.sum())}")
    return [
        Row(GROUP, "Labels: coverage, build -> relabel",
            f"{coverage:.1%}", f"build {(build != ABSTAIN).mean():.1%}", None,
            f">= {COVERAGE_TARGET:.0%}",
            verdict="pass" if coverage >= COVERAGE_TARGET else "MISS",
            notes=[setup, "sources after relabel: " + ", ".join(
                f"{k} {v}" for k, v in sources.items())]),
        Row(GROUP, "Labels: accuracy on held-out gold, every sample",
            f"{acc:.3f}", f"build {_accuracy(build, truth, held & (build != ABSTAIN)):.3f} "
            f"on its {(build != ABSTAIN).mean():.1%}; with its abstains counted wrong "
            f"{_accuracy(build, truth, held):.3f}", None, f">= {ACCURACY_TARGET:g}",
            verdict="pass" if acc >= ACCURACY_TARGET else "MISS",
            notes=[f"without gold (the first fit, end model included): "
                   f"{_accuracy(first.label, truth, everyone):.3f}; fit of both models and "
                   f"review order {fit_s:.1f} s"]),
        Row(GROUP, "Labels: accuracy where LFs vote, relabel vs build",
            f"{acc_covered:.3f}", f"{build_covered:.3f}",
            acc_covered / build_covered, ">= 1x", ">=", 1.0,
            notes=[f"build in batches of 1,000: {_accuracy(batched, truth, held & covered):.3f};"
                   f" majority vote: {_accuracy(vote, truth, held & (vote != ABSTAIN)):.3f} on "
                   f"{(vote != ABSTAIN).mean():.1%}"]),
    ]
