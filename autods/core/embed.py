"""CLIP embeddings with open_clip, batched, decoding overlapped with inference.

The model name, weights (an open_clip pretrained tag or a local checkpoint path) and device
are configuration. Weights that cannot be had stop a job before any work
(``check_weights``); a randomly initialised model is built only when ``random`` is asked
for: the same loading and inference code runs, which is what machines without a model
download can test.
"""

from __future__ import annotations

import io
import logging
import os
import socket
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from autods.core.hashing import flatten_alpha, to_grayscale
from autods.core.records import JobRefused

log = logging.getLogger(__name__)

_CONFIG_DIR = Path(__file__).parent / "model_configs"
#: ``pretrained`` asking for a randomly initialised model.
RANDOM = "random"


class WeightsUnavailable(JobRefused):  # noqa: N818 - a verdict on a request
    """The configured CLIP weights are neither cached, nor a file, nor downloadable."""

    def __init__(self, model: str, pretrained: str, why: str) -> None:
        super().__init__(
            f"CLIP weights {pretrained!r} for {model} unavailable ({why}): set "
            f"AUTODS_CLIP_PRETRAINED to a local checkpoint path (or a cached open_clip "
            f"tag), or build with --no-embed")


def check_weights(model: str, pretrained: str) -> str:
    """Where the weights will load from: a path, a cache entry, or a fresh download.

    Called when a job is planned, so a job whose weights cannot be had fails in one line
    before any work rather than in every embed task. The cache is looked at first, and a
    download is tried only when the hub's host resolves: without a network, open_clip's
    own retries would take about a minute to give up.
    """
    if pretrained == RANDOM:
        return RANDOM
    if os.path.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin",
                                                         ".safetensors")):
        if not Path(pretrained).is_file():
            raise WeightsUnavailable(model, pretrained, "no such file")
        return pretrained
    open_clip, _ = _require_open_clip()
    open_clip.add_model_config(_CONFIG_DIR)
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        tags = ", ".join(t for m, t in open_clip.list_pretrained() if m == model) or "none"
        raise WeightsUnavailable(model, pretrained, f"not a tag of this model; its tags: {tags}")
    cached = _cached_weights(cfg)
    if cached:
        return cached
    host = "huggingface.co" if cfg.get("hf_hub") else (cfg.get("url") or "").split("/")[2]
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        raise WeightsUnavailable(model, pretrained, f"not cached, and {host}: {exc}") from exc
    from open_clip.pretrained import download_pretrained

    try:
        return download_pretrained(cfg)
    except (OSError, RuntimeError) as exc:
        raise WeightsUnavailable(model, pretrained, str(exc).splitlines()[0][:200]) from exc


def _cached_weights(cfg: dict) -> str | None:
    """The cached file open_clip would load for this pretrained config, if any."""
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (
            hub.rstrip("/"), "open_clip_pytorch_model.bin")
        stem = filename.rsplit(".", 1)[0]
        names = ["open_clip_model.safetensors" if stem == "open_clip_pytorch_model"
                 else f"{stem}.safetensors", filename]
        for name in names:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str):
                return found
        return None
    url = cfg.get("url", "")
    local = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
    return str(local) if url and local.is_file() else None


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
                 batch_size: int = 0, decode_threads: int = 2, torch_threads: int = 0,
                 parallel_batches: int = 1) -> None:
        open_clip, torch = _require_open_clip()
        open_clip.add_model_config(_CONFIG_DIR)
        if torch_threads:
            torch.set_num_threads(torch_threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        precision = "fp16" if self.device.startswith("cuda") else "fp32"
        random_init = pretrained in ("", RANDOM)
        if random_init:
            log.warning("CLIP %s with random weights (AUTODS_CLIP_PRETRAINED=random): "
                        "embeddings carry no meaning", model)
            # Every worker process must draw the same random model, or vectors of one
            # dataset would come from different models.
            torch.manual_seed(0)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            model, pretrained=None if random_init else pretrained, precision=precision,
            device=self.device,
        )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self.name = f"{model}:{'random-init' if random_init else pretrained}"
        # 0 picks per device: a GPU wants large batches to fill it, while on CPU a batch of
        # 16 keeps activations in cache and ran 9-20 % faster than 64 (docs/benchmarks.md).
        self.batch_size = batch_size or (64 if self.device.startswith("cuda") else 16)
        self.decode_threads = max(1, decode_threads)
        self.parallel_batches = max(1, parallel_batches)
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

    def _bounds(self, n: int) -> list[tuple[int, int]]:
        """Batches of at most ``batch_size``, even in size and as many as a multiple of
        ``parallel_batches``, so a chunk's last round leaves no core idle: 46 images on two
        cores are inferred as 11 + 12 twice, not 16 + 16 then 14 alone."""
        count = -(-n // self.batch_size)
        count = min(n, -(-count // self.parallel_batches) * self.parallel_batches)
        edges = [n * i // count for i in range(count + 1)] if count else []
        return list(zip(edges, edges[1:], strict=False))

    def _batches(self, blobs: Sequence[bytes]) -> Iterator[list]:
        """Prepared images batch by batch, the next batch decoding while one is inferred."""
        with ThreadPoolExecutor(self.decode_threads) as pool:
            pending = None
            for start, end in self._bounds(len(blobs)):
                chunk = blobs[start:end]
                future = [pool.submit(self._prepare, b) for b in chunk]
                if pending is not None:
                    yield [f.result() for f in pending]
                pending = future
            if pending is not None:
                yield [f.result() for f in pending]

    def _infer(self, prepared: list) -> np.ndarray:
        with self._torch.inference_mode():
            batch = self._stack(prepared)
            if self.device.startswith("cuda"):
                batch = batch.half()
            feats = self.model.encode_image(batch, normalize=True)
            return feats.float().cpu().numpy().astype(np.float16)

    def embed_images(self, blobs: Sequence[bytes]) -> np.ndarray:
        """L2-normalised image embeddings as float16, one row per blob; ``parallel_batches``
        batches are inferred at once while the next ones decode."""
        out: list[np.ndarray] = []
        pending: deque[Future] = deque()
        with ThreadPoolExecutor(self.parallel_batches) as pool:
            for prepared in self._batches(blobs):
                pending.append(pool.submit(self._infer, prepared))
                if len(pending) > self.parallel_batches:
                    out.append(pending.popleft().result())
            out += [f.result() for f in pending]
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
