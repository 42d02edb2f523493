"""Weak supervision with Snorkel: labelling functions vote, a LabelModel reconciles them.

Labelling functions are user code, so they are imported only from the module the
configuration names (``--lfs mypkg.lfs``). That module defines ``LABELS`` (class names; a
vote is an index into it, -1 abstains) and any number of Snorkel ``LabelingFunction``
objects. Each LF sees one data point with ``caption``, ``text``, ``modality``, ``width``,
``height``, ``format``, ``mode``, ``nbytes``, ``source``, ``license``, ``meta`` and, where
the sample has a vector, ``embedding`` and ``embedding_model`` (for zero-shot LFs).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from autods.core.records import LabellingModuleError, Modality

ABSTAIN = -1


def _snorkel(model: bool = False):
    """snorkel's ``LabelingFunction``, and its ``LabelModel`` only when asked for: the model
    imports torch (seconds), which checking a job's LF module before it starts must not
    pay."""
    try:
        from snorkel.labeling import LabelingFunction

        if not model:
            return LabelingFunction, None
        from snorkel.labeling.model import LabelModel
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("labelling needs the 'label' extra: pip install 'autods[label]'") from exc
    return LabelingFunction, LabelModel


@dataclass(slots=True)
class LabelSpec:
    """The class names and the labelling functions of one job, with a stable version tag."""

    labels: list[str]
    lfs: list[Any]
    source: str

    @property
    def version(self) -> str:
        return spec_version(self.source, self.labels, [lf.name for lf in self.lfs])


def spec_version(source: str, labels: Sequence[str], lf_names: Sequence[str]) -> str:
    """The tag of a spec (its module, classes and LF names, in order): votes stored under it
    can be told apart from a changed module's, and named again without running the LFs."""
    names = ",".join(lf_names)
    digest = hashlib.sha256(f"{source}|{list(labels)}|{names}".encode()).hexdigest()
    return f"lm-{digest[:12]}"


def _text_of(x: Any) -> str:
    return " ".join(part for part in (x.caption, x.text) if part).lower()


def keyword_lf(name: str, label: int, keywords: Sequence[str]):
    """An LF voting ``label`` when the caption or text contains one of ``keywords`` as a word."""
    LabelingFunction, _ = _snorkel()
    pattern = re.compile(r"\b(" + "|".join(re.escape(k.lower()) for k in keywords) + r")s?\b")

    def vote(x: Any) -> int:
        return label if pattern.search(_text_of(x)) else ABSTAIN

    return LabelingFunction(name=name, f=vote)


def image_property_lf(name: str, label: int, predicate: Callable[[Any], bool]):
    """An LF voting ``label`` for images whose properties satisfy ``predicate``."""
    LabelingFunction, _ = _snorkel()

    def vote(x: Any) -> int:
        return label if x.modality == Modality.IMAGE and x.width and predicate(x) else ABSTAIN

    return LabelingFunction(name=name, f=vote)


def builtin_lfs(labels: Sequence[str]) -> list[Any]:
    """Built-in LFs that need only the class names: a caption/text mention of each class."""
    return [keyword_lf(f"builtin_mentions_{i}", i, [name]) for i, name in enumerate(labels)]


def find_module(module_name: str) -> None:
    """Check that the LF module exists without running it (nor importing Snorkel), for a
    caller whose worker loads it before any work (``pipeline.warmup``)."""
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as exc:  # a parent package that does not load
        raise _does_not_load(module_name, exc) from exc
    if found is None:
        raise _does_not_load(module_name, ModuleNotFoundError(f"No module named {module_name!r}"))


def _does_not_load(module_name: str, exc: BaseException) -> LabellingModuleError:
    return LabellingModuleError(f"labelling module {module_name!r} does not load: "
                                f"{type(exc).__name__}: {exc}")


def load_spec(module_name: str, builtin: bool = True) -> LabelSpec:
    """Import the configured LF module and collect its LFs in name order."""
    LabelingFunction, _ = _snorkel()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - user code: whatever it raises, say so in a line
        raise _does_not_load(module_name, exc) from exc
    labels = getattr(module, "LABELS", None)
    if not labels or not all(isinstance(x, str) for x in labels):
        raise LabellingModuleError(
            f"{module_name} must define LABELS, a non-empty list of class names")
    lfs = sorted(
        (v for v in vars(module).values() if isinstance(v, LabelingFunction)),
        key=lambda lf: lf.name,
    )
    if builtin:
        lfs += builtin_lfs(labels)
    if not lfs:
        raise LabellingModuleError(f"{module_name} defines no snorkel LabelingFunction")
    return LabelSpec(labels=list(labels), lfs=lfs, source=module_name)


def data_point(**fields: Any) -> SimpleNamespace:
    """What an LF sees; missing fields are None so LFs can test them safely."""
    base = dict.fromkeys(("caption", "text", "modality", "width", "height", "format", "mode",
                          "nbytes", "source", "license", "embedding", "embedding_model"))
    base["meta"] = {}
    base.update(fields)
    return SimpleNamespace(**base)


def apply_lfs(spec: LabelSpec, points: Sequence[SimpleNamespace]) -> np.ndarray:
    """The label matrix: one row per point, one column per LF."""
    if not points:
        return np.zeros((0, len(spec.lfs)), dtype=np.int64)
    from snorkel.labeling import LFApplier

    return LFApplier(spec.lfs).apply(list(points), progress_bar=False).astype(np.int64)


def fit_predict(spec: LabelSpec, matrix: np.ndarray, epochs: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Fit a LabelModel on one batch's matrix; return (label or -1, confidence) per row.

    Rows where every LF abstained get -1 and the model's prior as confidence; a batch with
    no vote at all skips the fit.
    """
    _, LabelModel = _snorkel(model=True)
    n = matrix.shape[0]
    if n == 0 or not (matrix != ABSTAIN).any():
        return np.full(n, ABSTAIN, dtype=np.int64), np.zeros(n, dtype=np.float64)
    model = LabelModel(cardinality=len(spec.labels), verbose=False)
    model.fit(matrix, n_epochs=epochs, seed=seed, progress_bar=False)
    probs = model.predict_proba(matrix)
    labels = probs.argmax(axis=1).astype(np.int64)
    confidence = probs.max(axis=1).astype(np.float64)
    labels[(matrix == ABSTAIN).all(axis=1)] = ABSTAIN
    return labels, confidence
