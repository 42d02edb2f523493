"""Embedding stage: ``ClipEmbedder.embed_images`` on JPEG bytes (decoding and preprocessing
included, as the embed stage runs it) against raw open_clip ``encode_image`` on tensors
decoded and preprocessed beforehand, at its best batch size of 16, 32 and 64.

Both use the same model object (randomly initialised: no weights can be downloaded here),
the same device and torch's thread setting, and the embedder keeps its configured defaults
(batch size, decode threads) from ``ClipSettings``.
"""

from __future__ import annotations

import io
import time

from bench import data
from bench.common import (
    Context,
    Row,
    alternate,
    fmt_rate,
    log,
    median,
    not_run,
    paired_ratio,
    target_row,
)

GROUP = "embed"
RAW_BATCHES = (16, 32, 64)


def _compare(ctx: Context, model: str, device: str, n: int, rounds: int) -> Row:
    import torch
    from PIL import Image

    from autods.config import ClipSettings
    from autods.core.embed import ClipEmbedder

    blobs = [p.read_bytes() for p in data.jpegs_512(ctx, n)]
    cfg = ClipSettings()
    embedder = ClipEmbedder(model, "", device, cfg.batch_size, cfg.decode_threads,
                            cfg.torch_threads)
    tensors = torch.stack([embedder.preprocess(Image.open(io.BytesIO(b)).convert("RGB"))
                           for b in blobs]).to(device)
    cuda = device.startswith("cuda")
    if cuda:
        tensors = tensors.half()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def raw(batch: int) -> float:
        with torch.inference_mode():
            sync()
            start = time.perf_counter()
            for s in range(0, n, batch):
                embedder.model.encode_image(tensors[s:s + batch], normalize=True)
            sync()
            return time.perf_counter() - start

    def autods() -> float:
        start = time.perf_counter()
        out = embedder.embed_images(blobs)
        elapsed = time.perf_counter() - start
        assert out.shape[0] == n
        return elapsed

    autods()  # warm: thread pools, allocator, kernels
    raw(RAW_BATCHES[0])
    log(f"embed: {model} on {device} ({torch.get_num_threads()} torch threads), {n} images, "
        f"{rounds} rounds")
    runs = {"autods": autods} | {f"raw{b}": (lambda b=b: raw(b)) for b in RAW_BATCHES}
    times = alternate(runs, rounds, f"embed {device}")
    # The best batch size is the one with the best median; its own runs, paired with the
    # autods run of the same round, give the ratio (a per-round minimum over three noisy
    # runs would flatter the reference).
    best_batch = min(RAW_BATCHES, key=lambda b: median(times[f"raw{b}"]))
    best_times = times[f"raw{best_batch}"]
    ratio = paired_ratio(best_times, times["autods"])
    per_batch = ", ".join(f"bs{b} {fmt_rate(n / median(times[f'raw{b}']))}"
                          for b in RAW_BATCHES)
    return target_row(
        GROUP, f"Embedding: embed_images vs raw encode_image ({model}, {device.upper()})",
        fmt_rate(n / median(times["autods"])),
        f"{fmt_rate(n / median(best_times))} (bs {best_batch})", ratio, ">=", 0.85,
        [f"{n} 512x512 JPEGs; embedder batch {embedder.batch_size}, {cfg.decode_threads} decode "
         f"threads, {torch.get_num_threads()} torch threads; raw per batch size: {per_batch}"])


def run(ctx: Context, model: str | None = None) -> list[Row]:
    import torch

    model = model or ("autods-tiny-vit" if ctx.quick else "ViT-B-32")
    rounds = ctx.size(3, 5)
    rows = [_compare(ctx, model, "cpu", 64, rounds)]
    if torch.cuda.is_available():
        rows.append(_compare(ctx, model, "cuda", ctx.size(128, 1024), rounds))
    else:
        rows.append(not_run(GROUP, "Embedding: embed_images vs raw encode_image (GPU)",
                            "no GPU", ">= 0.85x"))
    return rows
