"""Zero-shot labelling functions: class prompts against the samples' own embeddings.

A keyword LF sees words; a zero-shot LF sees meaning. Each class is described by one or
more prompts ("a photo of a dog", "a glowing review of a film"); a sample votes for the
class whose prompts are most similar to its vector, when that class leads the next one
by at least ``margin`` in cosine, and abstains otherwise. Prompts are encoded once, by the
model that made the samples' vectors (CLIP's text tower for images, the sentence model
for texts), and a sample whose vector came from another model abstains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from autods.core.label import ABSTAIN, _snorkel


class ZeroShot:
    """The vote of one zero-shot LF; ``bind`` gives it its encoder before it runs."""

    def __init__(self, prompts: Mapping[int, str | Sequence[str]], margin: float,
                 modality: str) -> None:
        if len(prompts) < 2:
            raise ValueError("a zero-shot LF needs prompts for at least two classes")
        self.classes = sorted(prompts)
        self.prompts = {c: [prompts[c]] if isinstance(prompts[c], str) else list(prompts[c])
                        for c in self.classes}
        self.margin = margin
        self.modality = modality
        self.model_name: str | None = None
        self._centroids: np.ndarray | None = None

    def fingerprint(self) -> str:
        payload = [self.prompts, self.margin, self.modality]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def bind(self, encoder: Any) -> None:
        """Encode the prompts with ``encoder`` (``embed_texts`` and ``name``): one unit
        centroid per class."""
        if self._centroids is not None and self.model_name == encoder.name:
            return
        rows = []
        for c in self.classes:
            vectors = np.asarray(encoder.embed_texts(self.prompts[c]), np.float64)
            centroid = vectors.mean(axis=0)
            rows.append(centroid / (np.linalg.norm(centroid) or 1.0))
        self._centroids = np.stack(rows)
        self.model_name = encoder.name

    def __call__(self, x: Any) -> int:
        vector = getattr(x, "embedding", None)
        if vector is None or x.modality != self.modality:
            return ABSTAIN
        if self._centroids is None:
            raise RuntimeError("zero-shot LF used before its encoder was bound")
        model = getattr(x, "embedding_model", None)
        if model and model != self.model_name:
            return ABSTAIN
        v = np.asarray(vector, np.float64)
        norm = np.linalg.norm(v)
        if not norm or v.shape[0] != self._centroids.shape[1]:
            return ABSTAIN
        sims = self._centroids @ (v / norm)
        order = np.argsort(-sims)
        if sims[order[0]] - sims[order[1]] < self.margin:
            return ABSTAIN
        return self.classes[int(order[0])]


def zero_shot_lf(name: str, prompts: Mapping[int, str | Sequence[str]], *,
                 margin: float = 0.02, modality: str = "text"):
    """An LF voting the class (an index into ``LABELS``) whose prompts its sample's vector
    is closest to, by at least ``margin`` of cosine over the runner-up."""
    LabelingFunction, _ = _snorkel()
    return LabelingFunction(name=name, f=ZeroShot(prompts, margin, modality))


def bind_zero_shot(lfs: Sequence[Any], encoder_for: Callable[[str], Any]) -> int:
    """Bind every zero-shot LF of ``lfs`` to the encoder of its modality; returns how many
    there were (encoders are loaded only when one exists)."""
    found = [lf._f for lf in lfs if isinstance(getattr(lf, "_f", None), ZeroShot)]
    for zs in found:
        zs.bind(encoder_for(zs.modality))
    return len(found)
