"""CLIP embeddings with open_clip, batched, decoding overlapped with inference.

The model name, weights (an open_clip pretrained tag or a local checkpoint path) and device
are configuration. With no weights configured the model is randomly initialised: the same
loading and inference code runs, which is what machines without a model download can test.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from autods.core.hashing import flatten_alpha, to_grayscale

log = logging.getLogger(__name__)

_CONFIG_DIR = Path(__file__).parent / "model_configs"


def _require_open_clip():
    try:
        import open_clip
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "CLIP embeddings need the 'gpu' extra: pip install 'autods[gpu]'"
        ) from exc
    return open_clip, torch


def _split_transform(preprocess):
    """The PIL steps of an open_clip image transform and the per-channel (mean, std) of its
    trailing ToTensor + Normalize, or None when it does not end that way.

    torchvision's ``to_tensor`` and ``Normalize`` per image cost several times the decode
    and resize together; applied to a whole uint8 batch at once they are nearly free."""
    from torchvision.transforms import Normalize, ToTensor

    steps = list(getattr(preprocess, "transforms", ()))
    if len(steps) < 2 or not isinstance(steps[-2], ToTensor) or not isinstance(
            steps[-1], Normalize):
        return None
    return steps[:-2], (tuple(steps[-1].mean), tuple(steps[-1].std))


def _rgb(img: Image.Image) -> Image.Image:
    """RGB for the model: transparency on white, 16-bit scaled, palettes expanded."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return to_grayscale(img).convert("RGB")
    return flatten_alpha(img).convert("RGB")


class ClipEmbedder:
    """A loaded open_clip model and its preprocessing, reused for every chunk of a worker."""

    def __init__(self, model: str, pretrained: str = "", device: str = "auto",
                 batch_size: int = 0, decode_threads: int = 2, torch_threads: int = 0) -> None:
        open_clip, torch = _require_open_clip()
        open_clip.add_model_config(_CONFIG_DIR)
        if torch_threads:
            torch.set_num_threads(torch_threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        precision = "fp16" if self.device.startswith("cuda") else "fp32"
        if not pretrained:
            log.warning("no CLIP weights configured (AUTODS_CLIP_PRETRAINED): %s is randomly "
                        "initialised, embeddings carry no meaning", model)
            # Every worker process must draw the same random model, or vectors of one
            # dataset would come from different models.
            torch.manual_seed(0)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            model, pretrained=pretrained or None, precision=precision, device=self.device,
        )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self.name = f"{model}:{pretrained or 'random-init'}"
        # 0 picks per device: a GPU wants large batches to fill it, while on CPU a batch of
        # 16 keeps activations in cache and ran 9-20 % faster than 64 (docs/benchmarks.md).
        self.batch_size = batch_size or (64 if self.device.startswith("cuda") else 16)
        self.decode_threads = max(1, decode_threads)
        self._torch = torch
        self._image_size = self.model.visual.image_size
        split = _split_transform(self.preprocess)
        self._pil_steps = split[0] if split else None
        if split:
            mean, std = (torch.tensor(v, device=self.device).view(1, 3, 1, 1)
                         for v in split[1])
            self._scale, self._shift = 1.0 / (255.0 * std), mean / std
        self.dim = int(self.model.text_projection.shape[1]) if getattr(
            self.model, "text_projection", None) is not None else None

    def _prepare(self, data: bytes):
        """One image ready for batching: a uint8 HWC array on the fast path, else a tensor."""
        img = Image.open(io.BytesIO(data))
        if img.format == "JPEG":
            size = self._image_size if isinstance(self._image_size, tuple) else (
                self._image_size, self._image_size)
            img.draft("RGB", size)
        img = _rgb(img)
        if self._pil_steps is None:
            return self.preprocess(img)
        for step in self._pil_steps:
            img = step(img)
        return np.asarray(img)

    def _stack(self, prepared: list):
        """A float NCHW batch on the model's device, normalised as the model's own transform
        would. uint8 pixels travel to the device, a quarter of the bytes of float32."""
        torch = self._torch
        if self._pil_steps is None:
            return torch.stack(prepared).to(self.device)
        batch = torch.from_numpy(np.stack(prepared)).to(self.device)
        return batch.permute(0, 3, 1, 2).float().mul_(self._scale).sub_(self._shift)

    def _batches(self, blobs: Sequence[bytes]) -> Iterator[list]:
        """Prepared images batch by batch, the next batch decoding while one is inferred."""
        starts = range(0, len(blobs), self.batch_size)
        with ThreadPoolExecutor(self.decode_threads) as pool:
            pending = None
            for start in starts:
                chunk = blobs[start : start + self.batch_size]
                future = [pool.submit(self._prepare, b) for b in chunk]
                if pending is not None:
                    yield [f.result() for f in pending]
                pending = future
            if pending is not None:
                yield [f.result() for f in pending]

    def embed_images(self, blobs: Sequence[bytes]) -> np.ndarray:
        """L2-normalised image embeddings as float16, one row per blob."""
        torch = self._torch
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for prepared in self._batches(blobs):
                batch = self._stack(prepared)
                if self.device.startswith("cuda"):
                    batch = batch.half()
                feats = self.model.encode_image(batch, normalize=True)
                out.append(feats.float().cpu().numpy().astype(np.float16))
        return np.concatenate(out) if out else np.zeros((0, self.dim or 0), np.float16)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings (same space as images) as float16."""
        torch = self._torch
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(list(texts[start:start + self.batch_size])).to(self.device)
                feats = self.model.encode_text(tokens, normalize=True)
                out.append(feats.float().cpu().numpy().astype(np.float16))
        return np.concatenate(out) if out else np.zeros((0, self.dim or 0), np.float16)


def npy_bytes(vector: np.ndarray) -> bytes:
    """One embedding as the bytes of a ``.npy`` file (the shard member format)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(vector), allow_pickle=False)
    return buf.getvalue()
