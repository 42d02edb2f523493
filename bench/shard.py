"""Sharding: ``write_shard`` (validation, tar, sha256, both manifests, atomic placement in a
local store) against writing the same members, in the same order, with plain ``tarfile``."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import time
from pathlib import Path

from bench import data
from bench.common import Context, Row, alternate, fmt_rate, log, median, paired_ratio, target_row

GROUP = "shard"


def _samples(paths: list[Path]):
    """Samples shaped like the pipeline's image samples: jpg, txt, json members."""
    from autods.core.records import ShardSample

    samples = []
    for i, p in enumerate(paths):
        blob = p.read_bytes()
        sha = hashlib.sha256(blob).hexdigest()
        fields = {"sha256": sha, "uri": p.as_uri(), "modality": "image", "source": "bench",
                  "license": "CC0-1.0", "nbytes": len(blob), "width": 512, "height": 512,
                  "format": "JPEG", "mode": "RGB", "phash": f"{i:016x}", "has_caption": True,
                  "ordinal": i}
        caption = f"benchmark image {i}"
        doc = dict(fields, caption=caption, key=sha[:24], meta={})
        members = {"jpg": blob, "txt": caption.encode(),
                   "json": json.dumps(doc, sort_keys=True).encode()}
        samples.append(ShardSample(key=sha[:24], members=members, fields=fields))
    return samples


def _plain_tar(samples, order: list[str], path: Path) -> int:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for s in samples:
            for ext in order:
                blob = s.members[ext]
                info = tarfile.TarInfo(f"{s.key}.{ext}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    return path.stat().st_size


def run(ctx: Context) -> list[Row]:
    from autods.core.shard import member_order, write_shard
    from autods.core.storage import LocalStore

    n = ctx.size(100, 1000)
    rounds = ctx.size(3, 7)
    samples = _samples(data.jpegs_512(ctx, n))
    order = member_order(samples[0].members)
    root = ctx.path("shard")
    shutil.rmtree(root, ignore_errors=True)
    (root / "plain").mkdir(parents=True)
    store = LocalStore(root / "store")
    provenance = {"dataset": "bench", "job": 0, "modality": "image", "sources": ["bench"]}
    sizes: dict[str, int] = {}

    def autods() -> float:
        shutil.rmtree(root / "store", ignore_errors=True)
        start = time.perf_counter()
        info = write_shard(samples, "shard-000000", store, provenance)
        elapsed = time.perf_counter() - start
        sizes["autods"] = info.nbytes
        return elapsed

    def plain() -> float:
        path = root / "plain" / "shard-000000.tar"
        path.unlink(missing_ok=True)
        start = time.perf_counter()
        sizes["plain"] = _plain_tar(samples, order, path)
        return time.perf_counter() - start

    autods()
    plain()
    log(f"shard: {n} samples, {rounds} rounds")
    times = alternate({"autods": autods, "plain": plain}, rounds, "shard")
    mib = {k: sizes[k] / 2**20 for k in sizes}
    a, p = median(times["autods"]), median(times["plain"])
    return [target_row(
        GROUP, "Sharding: write_shard vs plain tarfile",
        f"{mib['autods'] / a:,.0f} MiB/s ({fmt_rate(n / a, 'samples/s')})",
        f"{mib['plain'] / p:,.0f} MiB/s ({fmt_rate(n / p, 'samples/s')})",
        paired_ratio(times["plain"], times["autods"]), ">=", 0.8,
        [f"{n} samples (jpg + txt + json), {mib['autods']:.1f} MiB tar; write_shard also "
         "validates members, hashes the tar and writes manifest.json + manifest.parquet"])]
