"""Maps over the samples of existing shards: what a job over shards does to each sample.

A map takes a sample (key, members, manifest fields) and returns it changed, or None to
drop it. Shards are read back into samples by their tar and ``manifest.parquet``, mapped,
and written as new shards by the ordinary shard writer, so an unchanged sample keeps its
exact bytes. Maps are registered by name: a job stores the name and its parameters, and a
worker anywhere rebuilds the map from them.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from typing import Any

import pyarrow.parquet as pq

from autods.core.records import ShardInfo, ShardSample
from autods.core.storage import ObjectStore

SampleMap = Callable[[ShardSample], ShardSample | None]
_LOCATION = ("__key__", "__offset__", "__size__")


def forget(params: dict[str, Any], store: ObjectStore) -> SampleMap:
    """Drop the samples whose keys are listed; keep every other one as it is."""
    keys = frozenset(params["keys"])
    return lambda sample: None if sample.key in keys else sample


def relabel(params: dict[str, Any], store: ObjectStore) -> SampleMap:
    """Give each sample its label from the shard's assignment table (a Parquet object per
    parent shard under ``params["assignments"]``, beside the shards): ``.cls``, the label
    fields of the manifest and of the ``.json`` member; every other byte stays. A sample
    the table lacks is kept as is."""
    key = f"{params['assignments']}/{params['shard']}.parquet"
    table = pq.read_table(io.BytesIO(store.get(key))).to_pylist()
    by_key = {row.pop("key"): row for row in table}
    model = params["model"]

    def fn(sample: ShardSample) -> ShardSample:
        row = by_key.get(sample.key)
        if row is None:
            return sample
        labelled = row["label_source"] is not None
        label = {"label_id": row["label_id"], "label": row["label"],
                 "confidence": row["label_prob"], "label_prob": row["label_prob"],
                 "label_source": row["label_source"],
                 "label_model": model if labelled else None}
        members = dict(sample.members)
        members["cls"] = str(row["label_id"]).encode()
        if "json" in members:
            doc = json.loads(members["json"])
            doc.update({k: ("" if v is None else v) for k, v in label.items()})
            for name in ("confidence", "label_prob"):
                doc[name] = label[name] if label[name] is not None else 0.0
            members["json"] = json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()
        return ShardSample(key=sample.key, members=members, fields={**sample.fields, **label})

    return fn


MAPS: dict[str, Callable[[dict[str, Any], ObjectStore], SampleMap]] = {
    "forget": forget, "relabel": relabel}


def sample_map(name: str, params: dict[str, Any], store: ObjectStore) -> SampleMap:
    """The named map, built from its parameters (with ``shard``, the parent shard being
    rewritten); ``store`` holds the dataset, and any object a map's parameters name."""
    if name not in MAPS:
        raise ValueError(f"no sample map {name!r}; known: {', '.join(sorted(MAPS))}")
    return MAPS[name](params, store)


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
