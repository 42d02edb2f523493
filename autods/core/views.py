"""Materialized views: a query's answer written as a dataset of its own.

A sample's bytes in a tar (its members' headers, contents and padding) stand on their own,
so a view's shard is the matching samples' byte ranges copied one after another, then the
end-of-archive blocks: no decode, no re-encode, and the members stay byte-identical. Its
manifests are the matching manifest rows with new offsets, summed up again.

A view is cached by the hash of its predicate (as DuckDB parses it, so spacing and case do
not matter) and of the source version: asking again returns the version that holds the
answer; a new source version gives the view a new version of its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from autods.core.manifest import manifest_keys, write_table_manifests
from autods.core.predicate import Predicate, parse_predicate
from autods.core.query import LOCATION, run_query
from autods.core.records import ShardInfo
from autods.core.shard import end_of_archive
from autods.core.storage import LocalStore, ObjectStore
from autods.core.versions import Fresh, Version, list_versions, read_version, write_version
from autods.version import PIPELINE_VERSION

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class View:
    """A materialized view: the version holding the answer, and whether it was cached."""

    version: Version
    cached: bool
    key: str


def view_key(pred: Predicate, source_version: int | None) -> str:
    """The cache key of a view: its parsed predicate and its source version."""
    doc = json.dumps([pred.canonical(), source_version])
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def cached_view(target: ObjectStore, key: str) -> Version | None:
    for number in reversed(list_versions(target)):
        version = read_version(target, number)
        if version.doc.get("view", {}).get("key") == key:
            return version
    return None


def materialize(source: ObjectStore, version: Version, predicate: str, target: ObjectStore,
                name: str, shard_size: int = 1000) -> View:
    """Write the samples of ``version`` matching ``predicate`` as dataset ``name`` in
    ``target``; return the cached version when this question was answered already."""
    pred = parse_predicate(predicate)
    key = view_key(pred, version.number)
    found = cached_view(target, key)
    if found is not None:
        return View(found, True, key)
    answer = run_query(source, version, pred, columns=["*"]).table
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = defaultdict(list)
    shard_of = {s.name: s for s in version.shards}
    for i, shard in enumerate(answer["shard"].to_pylist()):
        s = shard_of[shard]
        groups[(s.modality, tuple(s.extensions))].append(i)
    jobs = []
    for (modality, extensions), rows in sorted(groups.items()):
        for start in range(0, len(rows), shard_size):
            jobs.append((f"view-{key[:8]}-{len(jobs):06d}",
                         answer.take(pa.array(rows[start:start + shard_size])),
                         modality, list(extensions)))
    # Shards are written side by side: copies run in the kernel and hashing outside the
    # GIL, so a second core takes the next shard while one builds its manifests.
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        results = list(pool.map(lambda job: _write_view_shard(source, version, target, *job,
                                                              name), jobs))
    written = [info for info, _ in results]
    parent = read_version(target) if list_versions(target) else None
    meta = {"key": key, "predicate": pred.sql, "source": source.url,
            "source_version": version.number}
    result = write_version(target, name, written, parent, job=None, kind="view",
                           extra={"view": meta},
                           fresh={info.name: fresh for info, fresh in results})
    logger.info("view %s: %d samples in %d shards", name, result.num_samples, len(written))
    return View(result, False, key)


def _runs(shards: list[str], offsets: list[int], sizes: list[int]
          ) -> Iterator[tuple[str, int, int]]:
    """Adjacent byte ranges of one shard merged, so a run of neighbours is one read."""
    run: list[Any] | None = None
    for shard, offset, size in zip(shards, offsets, sizes, strict=True):
        if run is not None and run[0] == shard and run[1] + run[2] == offset:
            run[2] += size
            continue
        if run is not None:
            yield tuple(run)
        run = [shard, offset, size]
    if run is not None:
        yield tuple(run)


def _copy_ranges(source: ObjectStore, version: Version, part: pa.Table, out: int,
                 sha256: hashlib._Hash) -> int:
    """Append the rows' byte ranges to the file ``out``, hashing each while it is still in
    the cache; return how many bytes. ``hashlib`` and file I/O let go of the GIL, so the
    shards written side by side use every core."""
    handles: dict[str, int] = {}
    written = 0
    try:
        for shard, offset, size in _runs(part["shard"].to_pylist(),
                                         part["offset"].to_pylist(), part["size"].to_pylist()):
            tar_key = version.shard(shard).tar_key
            if isinstance(source, LocalStore):
                if shard not in handles:
                    handles[shard] = os.open(source.local_path(tar_key), os.O_RDONLY)
                data = os.pread(handles[shard], size, offset)
            else:
                data = source.get_range(tar_key, offset, size)
            if len(data) != size:
                raise OSError(f"{tar_key}: {size} bytes at {offset}, got {len(data)}")
            sha256.update(data)
            view = memoryview(data)
            while view:
                view = view[os.write(out, view):]
            written += size
    finally:
        for handle in handles.values():
            os.close(handle)
    return written


def _write_view_shard(source: ObjectStore, version: Version, target: ObjectStore,
                      shard_name: str, part: pa.Table, modality: str, extensions: list[str],
                      dataset: str) -> tuple[ShardInfo, Fresh]:
    """Copy one view shard's samples into its tar, then write its manifests."""
    tar_key = f"shards/{shard_name}.tar"
    # Next to its final place when the target is a folder, so placing it is a rename.
    folder = target.local_path(tar_key).parent if isinstance(target, LocalStore) else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-view-", suffix=".tar", dir=folder)
    digest = hashlib.sha256()
    try:
        try:
            size = _copy_ranges(source, version, part, fd, digest)
            tail = end_of_archive(size)
            os.write(fd, tail)
            digest.update(tail)
            size += len(tail)
        finally:
            os.close(fd)
        target.put_file(tar_key, Path(tmp))
    finally:
        Path(tmp).unlink(missing_ok=True)
    sha256 = digest.hexdigest()
    # Each sample starts where the one before it ends.
    offsets = pc.subtract(pc.cumulative_sum(part["size"]), part["size"])
    rows = {"__key__": part["key"], "__offset__": offsets, "__size__": part["size"]}
    rows.update({c: part[c] for c in part.column_names if c not in LOCATION})
    parents = sorted(set(part["shard"].to_pylist()))
    table = pa.table(rows)
    manifest = write_table_manifests(
        target, "shards", shard_name, table,
        {"dataset": dataset, "pipeline_version": PIPELINE_VERSION, "modality": modality,
         "parent_shards": parents}, size_bytes=size, sha256=sha256)
    json_key, parquet_key = manifest_keys("shards", shard_name)
    info = ShardInfo(name=shard_name, count=part.num_rows, nbytes=size, sha256=sha256,
                     tar_key=tar_key, manifest_json_key=json_key,
                     manifest_parquet_key=parquet_key, modality=modality,
                     extensions=extensions)
    return info, Fresh(manifest, table.select(["__key__", "__offset__", "__size__"]))
