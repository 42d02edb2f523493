"""One label model per dataset version, calibrated by gold labels, and an end model.

Snorkel's LabelModel estimates each LF's accuracy from how LFs agree and disagree; fitted
on every vote of a version (not a batch), its estimates come from all the evidence there
is. Gold labels, from people, override the model on their own samples and set each LF's
accuracy prior (``prec_init``) to its accuracy on the gold it voted on, so the fit starts
where the evidence says; they train the end model too.

LFs abstain on most samples of a real corpus (keywords match few texts). The end model, a
logistic regression on the samples' embeddings trained on the label model's
probabilistic labels plus the gold, labels those too: embeddings carry what keywords
miss. Where LFs voted, the label model's answer is kept, as it is at least as good as the
first fit there; the end model answers only where nothing voted.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from autods.core.label import ABSTAIN, LabelSpec

#: The accuracy prior of an LF that gold does not speak for (Snorkel's own default).
DEFAULT_PREC = 0.7
#: The end model's inverse regularisation. Its training labels are noisy (LF-derived): on
#: movie-review snippets with MiniLM vectors and 200 gold taken through the loop, held-out
#: accuracy at 1,000 / 2,000 / 4,000 samples was 0.716 / 0.738 / 0.738 with C=0.1,
#: 0.711 / 0.749 / 0.741 with 0.25, 0.688 / 0.734 / 0.723 with 1 and 0.704 / 0.711 / 0.707
#: with 4.
END_MODEL_C = 0.25


class LabelSource(StrEnum):
    """Where a sample's label came from, most trusted first."""

    GOLD = "gold"
    LABEL_MODEL = "label_model"
    END_MODEL = "end_model"


def _stable_repr(value: Any) -> str:
    if isinstance(value, re.Pattern):
        return f"re({value.pattern!r},{value.flags})"
    if callable(value) and hasattr(value, "__code__"):
        return _code_digest(value)
    return re.sub(r" at 0x[0-9a-f]+", "", repr(value))


def _code_digest(fn: Any) -> str:
    """What an LF computes: its bytecode, constants and the values it closes over (a
    keyword LF is one function closing over its pattern), or an LF object's own
    fingerprint (a zero-shot LF's prompts)."""
    fingerprint = getattr(fn, "fingerprint", None)
    if callable(fingerprint):
        return fingerprint()
    code = getattr(fn, "__code__", None)
    if code is None:
        return hashlib.sha256(_stable_repr(fn).encode()).hexdigest()
    cells = [_stable_repr(c.cell_contents) for c in (fn.__closure__ or ())]
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = ""
    payload = [code.co_code.hex(), [_stable_repr(c) for c in code.co_consts], cells, source]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def lf_fingerprint(spec: LabelSpec) -> str:
    """A digest of the LF code and the classes: changing any LF changes it."""
    parts = [spec.labels, [[lf.name, _code_digest(lf._f)] for lf in spec.lfs]]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def gold_digest(gold: Mapping[str, str]) -> str:
    """A digest of a gold set: sample keys and their labels."""
    return hashlib.sha256(json.dumps(sorted(gold.items())).encode()).hexdigest()


@dataclass(slots=True)
class FittedLabelModel:
    """A label model fitted on one version's votes, and what made it."""

    labels: list[str]
    lf_names: list[str]
    weights: list[float]
    class_balance: list[float]
    prec_init: list[float]
    lf_sha: str
    gold_sha: str
    n_gold: int
    model: Any = field(repr=False, default=None)

    @property
    def version(self) -> str:
        """Hashes the LF code, the fitted weights and the gold set."""
        payload = [self.lf_sha, [round(w, 6) for w in self.weights],
                   [round(c, 6) for c in self.class_balance], self.gold_sha]
        return "lm-" + hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:12]

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "labels": self.labels,
                "weights": dict(zip(self.lf_names, self.weights, strict=True)),
                "class_balance": self.class_balance, "n_gold": self.n_gold,
                "gold_sha": self.gold_sha, "lf_sha": self.lf_sha}

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Class probabilities per row; a row with no vote gets the class balance."""
        n, k = matrix.shape[0], len(self.labels)
        if self.model is None or n == 0:
            return np.tile(np.asarray(self.class_balance, np.float64), (n, 1)).reshape(n, k)
        return self.model.predict_proba(matrix).astype(np.float64)


def gold_vector(keys: Sequence[str], gold: Mapping[str, str], labels: Sequence[str]
                ) -> np.ndarray:
    """Gold class index per row, -1 where no gold label exists."""
    index = {name: i for i, name in enumerate(labels)}
    return np.array([index[gold[k]] if k in gold else ABSTAIN for k in keys], dtype=np.int64)


def prec_from_gold(matrix: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each LF's accuracy on the gold rows it voted on, with one pseudo-vote each way so a
    handful of votes cannot pin it to 0 or 1; ``DEFAULT_PREC`` where it voted on none."""
    has = y != ABSTAIN
    votes, truth = matrix[has], y[has]
    out = np.full(matrix.shape[1], DEFAULT_PREC)
    for j in range(matrix.shape[1]):
        voted = votes[:, j] != ABSTAIN
        n = int(voted.sum())
        if n:
            out[j] = (float((votes[voted, j] == truth[voted]).sum()) + 1.0) / (n + 2.0)
    return np.clip(out, 0.05, 0.95)


def fit_label_model(spec: LabelSpec, matrix: np.ndarray, y: np.ndarray, *, epochs: int,
                    seed: int, class_balance: Sequence[float] | None = None,
                    gold_sha: str = "") -> FittedLabelModel:
    """Fit on every row of ``matrix``; ``y`` holds gold (-1 for none) aligned with it.

    The class balance is the one given, else uniform, never the gold's own shares: gold
    is chosen where the model is least sure, which is not a sample of the dataset. On 50/50
    movie reviews, 200 such labels were 69 % negative, and a label model fitted to that
    balance fell from 0.80 to 0.51 accuracy on the samples LFs cover.
    """
    from snorkel.labeling.model import LabelModel

    k = len(spec.labels)
    if class_balance is not None:
        if len(class_balance) != k or min(class_balance) <= 0:
            raise ValueError(f"class balance needs {k} positive shares, got {class_balance}")
        balance = (np.asarray(class_balance, np.float64) / sum(class_balance)).tolist()
    else:
        balance = [1.0 / k] * k
    prec = prec_from_gold(matrix, y)
    fitted = FittedLabelModel(labels=list(spec.labels), lf_names=[lf.name for lf in spec.lfs],
                              weights=[], class_balance=balance, prec_init=prec.tolist(),
                              lf_sha=lf_fingerprint(spec), gold_sha=gold_sha,
                              n_gold=int((y != ABSTAIN).sum()))
    if matrix.shape[0] == 0 or not (matrix != ABSTAIN).any():
        fitted.weights = prec.tolist()
        return fitted
    model = LabelModel(cardinality=k, verbose=False)
    model.fit(matrix, class_balance=np.asarray(balance), n_epochs=epochs, seed=seed,
              prec_init=prec, progress_bar=False)
    fitted.model = model
    with np.errstate(divide="ignore", invalid="ignore"):  # an LF that never voted
        fitted.weights = [float(w) for w in model.get_weights()]
    return fitted


def train_end_model(vectors: np.ndarray, probs: np.ndarray, seed: int,
                    balance: Sequence[float]):
    """A logistic regression on L2-normalised vectors, trained on probabilistic labels:
    each row once per class, weighted by its probability (a gold row is one-hot), and each
    class's total weight scaled to its share of ``balance``.

    Without that scaling the end model learns the skew of what it is shown, and both
    sources are skewed: LFs of one class often fire more than the other's (praise has more
    stock words than complaint), and gold is chosen where the model is least sure. On
    1,000 movie reviews with 200 such gold labels (76 % of one class), held-out accuracy
    was 0.530 unscaled and 0.711 scaled; on 4,000, 0.733 and 0.741. Gold rows weigh as
    much as others: weighing them up imposes their skew further."""
    from sklearn.linear_model import LogisticRegression

    n, k = probs.shape
    x = np.repeat(_normalised(vectors), k, axis=0)
    classes = np.tile(np.arange(k), n)
    totals = probs.sum(axis=0)
    scale = np.asarray(balance, np.float64) * totals.sum() / np.where(totals > 0, totals, 1.0)
    w = (probs * scale[None, :]).reshape(-1)
    keep = w > 1e-6
    if len(np.unique(classes[keep])) < 2:
        return None
    model = LogisticRegression(C=END_MODEL_C, max_iter=2000, random_state=seed)
    model.fit(x[keep], classes[keep], sample_weight=w[keep])
    return model


def _normalised(vectors: np.ndarray) -> np.ndarray:
    v = vectors.astype(np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms == 0, 1.0, norms)


def end_model_proba(model, vectors: np.ndarray, k: int) -> np.ndarray:
    """Class probabilities from the end model, columns in class order."""
    out = np.zeros((vectors.shape[0], k))
    out[:, model.classes_] = model.predict_proba(_normalised(vectors))
    return out


@dataclass(slots=True)
class Assignment:
    """Every sample's label, its probability and where it came from."""

    label: np.ndarray
    prob: np.ndarray
    source: list[str | None]
    probs: np.ndarray  # the class distribution behind each label, for review order



def assign(fitted: FittedLabelModel, matrix: np.ndarray, y: np.ndarray,
           vectors: np.ndarray | None, seed: int,
           groups: np.ndarray | None = None) -> Assignment:
    """Gold where there is gold; the label model where an LF voted; the end model on the
    embeddings elsewhere (no label, ``-1``, where a sample has no vector or no end model
    could be trained).

    ``groups`` names each row's vector space (its embedding model): one end model is
    trained per group, as CLIP image vectors and sentence vectors of texts cannot share
    one. Rows of narrower spaces are zero-padded to the matrix's width."""
    n, k = matrix.shape[0], len(fitted.labels)
    probs = fitted.predict_proba(matrix)
    covered = (matrix != ABSTAIN).any(axis=1) if n else np.zeros(0, bool)
    gold = y != ABSTAIN
    onehot = np.zeros((n, k))
    onehot[np.flatnonzero(gold), y[gold]] = 1.0
    label = np.full(n, ABSTAIN, dtype=np.int64)
    prob = np.zeros(n)
    source: list[str | None] = [None] * n
    out_probs = probs.copy()
    if fitted.model is not None:
        label[covered] = probs[covered].argmax(axis=1)
        prob[covered] = probs[covered].max(axis=1)
        for i in np.flatnonzero(covered):
            source[i] = LabelSource.LABEL_MODEL
    if vectors is not None and n:
        has_vec = ~np.isnan(vectors).any(axis=1)
        group_of = np.zeros(n, np.int64) if groups is None else np.asarray(groups)
        target = np.where(gold[:, None], onehot, probs)
        for group in np.unique(group_of[has_vec]):
            mine = has_vec & (group_of == group)
            train = mine & (covered | gold)
            model = train_end_model(vectors[train], target[train], seed,
                                    fitted.class_balance) if train.any() else None
            todo = mine & ~covered
            if model is None or not todo.any():
                continue
            end = end_model_proba(model, vectors[todo], k)
            rows = np.flatnonzero(todo)
            label[rows] = end.argmax(axis=1)
            prob[rows] = end.max(axis=1)
            out_probs[rows] = end
            for i in rows:
                source[i] = LabelSource.END_MODEL
    label[gold] = y[gold]
    prob[gold] = 1.0
    out_probs[gold] = onehot[gold]
    for i in np.flatnonzero(gold):
        source[i] = LabelSource.GOLD
    return Assignment(label=label, prob=prob, source=source, probs=out_probs)


def entropy(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def conflicts(matrix: np.ndarray) -> np.ndarray:
    """Rows where two LFs voted different classes."""
    out = np.zeros(matrix.shape[0], bool)
    for i, row in enumerate(matrix):
        votes = set(row[row != ABSTAIN].tolist())
        out[i] = len(votes) > 1
    return out


def review_order(probs: np.ndarray, matrix: np.ndarray, exclude: np.ndarray,
                 by: str = "entropy") -> np.ndarray:
    """Rows a person should label first: highest entropy (``by="entropy"``) or LF conflicts
    first, by entropy among them (``by="conflict"``); rows in ``exclude`` (gold) never.
    Ties keep row order, so the same inputs give the same tasks."""
    ent = entropy(probs)
    if by == "conflict":
        primary = conflicts(matrix).astype(np.float64)
    elif by == "entropy":
        primary = np.zeros(len(ent))
    else:
        raise ValueError(f"review order is 'entropy' or 'conflict', not {by!r}")
    order = np.lexsort((np.arange(len(ent)), -ent.round(9), -primary))
    return order[~exclude[order]]
