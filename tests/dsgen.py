"""Small datasets written with the real shard writer and versions, fields known per sample."""

from __future__ import annotations

import hashlib
import json
import random

from autods.core.records import ShardInfo, ShardSample
from autods.core.shard import write_shard
from autods.core.storage import ObjectStore
from autods.core.versions import Version, list_versions, read_version, write_version

LABELS = ("cat", "dog", "bird", "fish")


def sample(i: int, rng: random.Random, labelled: bool = True, caption: bool = True
           ) -> ShardSample:
    """One text sample whose fields are drawn from ``rng``; its key is a content hash."""
    text = f"sample {i} {rng.random()}".encode()
    sha = hashlib.sha256(text).hexdigest()
    fields = {"sha256": sha, "uri": f"file:///in/{i}.txt", "modality": "text",
              "source": rng.choice(["web", "scan"]), "nbytes": len(text),
              "width": rng.randrange(32, 1024), "height": rng.randrange(32, 1024),
              "ordinal": i, "job": 1, "ingested_at": f"2026-01-{1 + i % 28:02d}T00:00:00+00:00",
              "has_caption": caption}
    if labelled:
        label = rng.choice(LABELS + (None,))
        fields.update(label=label, label_id=LABELS.index(label) if label else -1,
                      confidence=round(rng.random(), 3) if label else None)
    if caption:
        fields["caption"] = rng.choice(["a beach at dusk", "city at night", "a cat on a mat"])
    members = {"txt": text, "json": json.dumps({"key": sha[:24]}).encode()}
    return ShardSample(key=sha[:24], members=members, fields=fields)


def write_dataset(store: ObjectStore, n_shards: int, per_shard: int, seed: int = 0,
                  start_shard: int = 0, labelled: bool = True, name: str = "demo",
                  job: int = 1) -> Version:
    """``n_shards`` shards of ``per_shard`` samples, published as the next version."""
    rng = random.Random(seed)
    infos: list[ShardInfo] = []
    for s in range(start_shard, start_shard + n_shards):
        samples = [sample(s * per_shard + i, rng, labelled=labelled) for i in range(per_shard)]
        infos.append(write_shard(samples, f"shard-{s:06d}", store,
                                 {"dataset": name, "job": job, "modality": "text"}))
    parent = read_version(store) if list_versions(store) else None
    shards = list(parent.shards) + infos if parent else infos
    return write_version(store, name, shards, parent, job=job, kind="build")
