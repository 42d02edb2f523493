"""Maps over the samples of existing shards: what a job over shards does to each sample.

A map takes a sample (key, members, manifest fields) and returns it changed, or None to
drop it. Shards are read back into samples by their tar and ``manifest.parquet``, mapped,
and written as new shards by the ordinary shard writer, so an unchanged sample keeps its
exact bytes. Maps are registered by name: a job stores the name and its parameters, and a
worker anywhere rebuilds the map from them.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from typing import Any

import pyarrow.parquet as pq

from autods.core.records import ShardInfo, ShardSample
from autods.core.storage import ObjectStore

SampleMap = Callable[[ShardSample], ShardSample | None]
_LOCATION = ("__key__", "__offset__", "__size__")


def forget(params: dict[str, Any]) -> SampleMap:
    """Drop the samples whose keys are listed; keep every other one as it is."""
    keys = frozenset(params["keys"])
    return lambda sample: None if sample.key in keys else sample


MAPS: dict[str, Callable[[dict[str, Any]], SampleMap]] = {"forget": forget}


def sample_map(name: str, params: dict[str, Any]) -> SampleMap:
    if name not in MAPS:
        raise ValueError(f"no sample map {name!r}; known: {', '.join(sorted(MAPS))}")
    return MAPS[name](params)


def read_samples(store: ObjectStore, shard: ShardInfo) -> list[ShardSample]:
    """A shard's samples in order: members from its tar, fields from its manifest."""
    rows = pq.read_table(io.BytesIO(store.get(shard.manifest_parquet_key))).to_pylist()
    members: dict[str, dict[str, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(store.get(shard.tar_key)), mode="r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
            folder, _, base = info.name.rpartition("/")
            stem, _, ext = base.partition(".")
            key = f"{folder}/{stem}" if folder else stem
            members.setdefault(key, {})[ext] = tar.extractfile(info).read()
    samples = []
    for row in rows:
        key = row["__key__"]
        fields = {k: v for k, v in row.items() if k not in _LOCATION}
        samples.append(ShardSample(key=key, members=members[key], fields=fields))
    return samples


def map_samples(samples: list[ShardSample], fn: SampleMap) -> list[ShardSample]:
    return [out for out in map(fn, samples) if out is not None]
