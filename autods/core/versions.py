"""Dataset versions: immutable files, each listing a version's complete shards.

``versions/v000003.json`` names its parent version, the job that made it, what it added and
removed, and every shard it holds in ``wids``' shard-list format (urls relative to the file),
so a training run can pin it with any reader and read the same bytes for as long as the
version exists: shards are never rewritten, a change writes new shards and a new version.
``index.json`` at the dataset root is a copy of the latest version, for readers that expect
one index, and ``versions/LATEST`` holds the latest number, so finding it is one small read.

Two sidecars per version make reads fast at any size without opening the shards' own
manifests: ``v000003.summary.arrow`` (Arrow IPC) has one row per shard with its aggregates
(the query's shard skipping maps one file and takes the columns it needs, see
``autods.core.prune``), and ``v000003.keys.parquet`` maps every sample key to its shard and
byte range, sorted by key in small row groups, so finding a key reads the footer and one
row group. Both are built from the parent version's plus the new shards'.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from autods.core.manifest import write_index
from autods.core.prune import summary_table
from autods.core.records import ShardInfo
from autods.core.schema import SAMPLE, SampleSchema
from autods.core.storage import LocalStore, ObjectStore

logger = logging.getLogger(__name__)

VERSION_KIND = "autods-dataset-version-v1"
VERSIONS_DIR = "versions"
INDEX_KEY = "index.json"
KEY_ROW_GROUP = 8192
#: Keys sorted in memory at once when a version's keys sidecar is written.
KEY_RUN = 131_072
_VERSION_FILE = re.compile(r"^versions/v(\d{6})\.json$")


class DatasetNotFound(LookupError):
    """No index and no version at a location, or no such version."""


LATEST_KEY = f"{VERSIONS_DIR}/LATEST"


def version_key(number: int) -> str:
    return f"{VERSIONS_DIR}/v{number:06d}.json"


def keys_key(number: int) -> str:
    return f"{VERSIONS_DIR}/v{number:06d}.keys.parquet"


def summary_key(number: int) -> str:
    return f"{VERSIONS_DIR}/v{number:06d}.summary.arrow"


@dataclass(frozen=True, slots=True)
class Location:
    """Where one sample lies: ``shard``'s tar, ``size`` bytes from ``offset``."""

    key: str
    shard: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Fresh:
    """What a writer already holds of a shard it has just written: its ``manifest.json``
    and its key and byte-range columns, so the version need not read them back."""

    manifest: dict[str, Any]
    keys: pa.Table


class Version:
    """One version: its number (None for an index written before versions existed), its
    document and its shards, with store keys resolved. The document is read on first use:
    a query needs only the number (its summary names the manifests)."""

    def __init__(self, number: int | None, key: str, store: ObjectStore | None = None,
                 doc: dict[str, Any] | None = None) -> None:
        self.number, self._key, self._store, self._doc = number, key, store, doc
        self._entries: dict[str, dict[str, Any]] | None = None
        self._resolved: dict[str, ShardInfo] = {}

    def __repr__(self) -> str:
        return f"Version({self.number}, {self._key})"

    @property
    def doc(self) -> dict[str, Any]:
        if self._doc is None:
            self._doc = json.loads(self._store.get(self._key))
        return self._doc

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = {_shard_name(e): e for e in self.doc.get("shardlist", [])}
        return self._entries

    @property
    def shards(self) -> tuple[ShardInfo, ...]:
        return tuple(self.shard(name) for name in self.entries)

    @property
    def names(self) -> list[str]:
        return list(self.entries)

    def shard(self, name: str) -> ShardInfo:
        if name not in self._resolved:
            if name not in self.entries:
                raise KeyError(f"no shard {name!r} in version {self.number}")
            self._resolved[name] = _shard_info(self.entries[name],
                                               posixpath.dirname(self._key))
        return self._resolved[name]

    @property
    def num_samples(self) -> int:
        return sum(int(e["nsamples"]) for e in self.entries.values())


def _shard_name(entry: dict[str, Any]) -> str:
    return entry.get("name") or posixpath.basename(entry["url"]).removesuffix(".tar")


def _resolve(folder: str, url: str) -> str:
    return posixpath.normpath(posixpath.join(folder, url))


def _shard_info(entry: dict[str, Any], folder: str) -> ShardInfo:
    tar = _resolve(folder, entry["url"])
    base = tar.removesuffix(".tar")
    return ShardInfo(
        name=_shard_name(entry), count=int(entry["nsamples"]),
        nbytes=int(entry.get("filesize") or 0), sha256=entry.get("sha256") or "",
        tar_key=tar,
        manifest_json_key=_resolve(folder, entry["manifest"]) if entry.get("manifest")
        else f"{base}.manifest.json",
        manifest_parquet_key=_resolve(folder, entry["manifest_parquet"])
        if entry.get("manifest_parquet") else f"{base}.manifest.parquet",
        modality=entry.get("modality", "image"), extensions=list(entry.get("extensions", [])))


def list_versions(store: ObjectStore) -> list[int]:
    """The dataset's version numbers, oldest first."""
    found = (_VERSION_FILE.match(k) for k in store.list(VERSIONS_DIR))
    return sorted(int(m.group(1)) for m in found if m)


def read_version(store: ObjectStore, number: int | None = None) -> Version:
    """Version ``number``, or the latest; a dataset written before versions existed has
    only ``index.json``, read as an unnumbered latest version."""
    if number is not None:
        if not store.exists(version_key(number)):
            raise DatasetNotFound(f"no version {number} in {store.url}")
        return Version(number, version_key(number), store)
    if store.exists(LATEST_KEY):  # one small read instead of a listing
        return read_version(store, int(store.get(LATEST_KEY)))
    numbers = list_versions(store)
    if numbers:
        return read_version(store, numbers[-1])
    if store.exists(INDEX_KEY):
        return Version(None, INDEX_KEY, store)
    raise DatasetNotFound(f"no dataset index at {store.url}")


def _summary_entry(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"num_samples": manifest["num_samples"],
            "schema_version": manifest.get("schema_version", 1),
            "schema": manifest.get("schema", {}),
            "fields": manifest.get("aggregates", {})}


def _entries(store: ObjectStore, shards: Iterable[ShardInfo],
             fresh: dict[str, Fresh] | None = None
             ) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Each shard's name, ``manifest.parquet`` key and manifest summary."""
    for s in shards:
        known = (fresh or {}).get(s.name)
        manifest = known.manifest if known else json.loads(store.get(s.manifest_json_key))
        yield s.name, s.manifest_parquet_key, _summary_entry(manifest)


class Summary:
    """A version's per-shard summary (see ``autods.core.prune``): every manifest column
    with its type, and the summary's columns read on demand. From the version's sidecar,
    or from each shard's ``manifest.json`` for an index without one."""

    def __init__(self, store: ObjectStore, version: Version) -> None:
        if version.number is not None and store.exists(summary_key(version.number)):
            # An Arrow IPC file: opening it reads no column, a local one is memory-mapped.
            key = summary_key(version.number)
            source = (pa.memory_map(str(store.local_path(key))) if isinstance(store, LocalStore)
                      else pa.BufferReader(store.get(key)))
            self._table = pa.ipc.open_file(source).read_all()
        else:
            self._table = summary_table(_entries(store, version.shards))
        self.names = set(self._table.column_names)
        meta = (self._table.schema.metadata or {}).get(b"autods_columns")
        self.columns: dict[str, str] = json.loads(meta) if meta is not None else \
            summary_columns(self._table)

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """One row per shard, in the version's order; only ``columns`` that exist."""
        if columns is None:
            return self._table
        return self._table.select([c for c in dict.fromkeys(columns) if c in self.names])


def summary_columns(table: pa.Table) -> dict[str, str]:
    """Every manifest column and its arrow type (the first shard's that has it), from the
    summary's ``schema`` column."""
    types: dict[str, str] = {}
    for schema in table["schema"].to_pylist():
        for name, arrow_type in json.loads(schema).items():
            types.setdefault(name, arrow_type)
    return types


#: The keys sidecar's columns.
KEYS_SCHEMA = pa.schema([("key", pa.string()), ("shard", pa.string()), ("offset", pa.int64()),
                         ("size", pa.int64())])


def _key_tables(store: ObjectStore, shards: Iterable[ShardInfo],
                fresh: dict[str, Fresh] | None = None) -> Iterator[pa.Table]:
    """Each shard's keys and byte ranges, a table per shard."""
    for s in shards:
        known = (fresh or {}).get(s.name)
        t = known.keys if known else pq.read_table(
            io.BytesIO(store.get(s.manifest_parquet_key)),
            columns=["__key__", "__offset__", "__size__"])
        yield pa.table([t["__key__"], pa.array([s.name] * t.num_rows, pa.string()),
                        t["__offset__"], t["__size__"]], schema=KEYS_SCHEMA)


def _open_parquet(store: ObjectStore, key: str) -> pq.ParquetFile:
    """A parquet file that reads only the ranges it needs: the footer, then row groups."""
    if isinstance(store, LocalStore):
        return pq.ParquetFile(store.local_path(key))
    return pq.ParquetFile(RangeFile(store, key))


def locate(store: ObjectStore, version: Version, key: str) -> Location | None:
    """Where sample ``key`` lies in ``version``, by the version's key index: the row
    groups' key ranges point at one group, read on its own."""
    if version.number is None or not store.exists(keys_key(version.number)):
        for table in _key_tables(store, version.shards):
            found = _first(table.filter(pc.equal(table["key"], key)))
            if found is not None:
                return found
        return None
    pf = _open_parquet(store, keys_key(version.number))
    for group in range(pf.num_row_groups):
        stats = pf.metadata.row_group(group).column(0).statistics
        if stats is not None and stats.has_min_max and not stats.min <= key <= stats.max:
            continue
        table = pf.read_row_group(group)
        found = _first(table.filter(pc.equal(table["key"], key)))
        if found is not None:
            return found
    return None


def _first(table: pa.Table) -> Location | None:
    if table.num_rows == 0:
        return None
    row = table.slice(0, 1).to_pylist()[0]
    return Location(row["key"], row["shard"], int(row["offset"]), int(row["size"]))


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over a stored object, read by ranged GETs."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self._store, self._key = store, key
        self._size = store.size(key)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        data = self._store.get_range(self._key, self._pos, end - self._pos)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def write_version(store: ObjectStore, dataset: str, shards: list[ShardInfo],
                  parent: Version | None, *, job: int | None, kind: str,
                  tombstones: list[str] | None = None,
                  extra: dict[str, Any] | None = None,
                  fresh: dict[str, Fresh] | None = None,
                  schema: SampleSchema = SAMPLE) -> Version:
    """Write the next version (sidecars first, then its file, then ``index.json``).

    The caller makes sure one writer at a time writes a dataset's versions (the database
    locks the dataset's row while it does).
    """
    names = [s.name for s in shards]
    if len(set(names)) != len(names):
        raise ValueError("duplicate shard names in a version")
    shards = sorted(shards, key=lambda s: s.name)
    numbers = list_versions(store)
    number = (numbers[-1] if numbers else 0) + 1
    before = set(parent.names) if parent is not None else set()
    added = [s for s in shards if s.name not in before]
    table = _next_summary(store, parent, shards, added, fresh)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    store.put(summary_key(number), sink.getvalue().to_pybytes())
    _put_keys(store, keys_key(number), parent, shards, added, fresh)
    doc = {
        "autods_version_kind": VERSION_KIND, "version": number,
        "parent": parent.number if parent is not None else None,
        "job": job, "kind": kind, "created_at": datetime.now(UTC).isoformat(),
        "num_samples": sum(s.count for s in shards),
        "added": [s.name for s in added],
        "removed": sorted(before - set(names)),
        "tombstones": sorted(tombstones or []),
        "schema": schema.describe(),
        **(extra or {}),
    }
    write_index(store, shards, dataset, key=version_key(number), extra=doc)
    write_index(store, shards, dataset, key=INDEX_KEY, extra=doc)
    store.put(LATEST_KEY, str(number).encode())
    logger.info("dataset %s: version %d, %d shards (%d added, %d removed)", dataset, number,
                len(shards), len(added), len(doc["removed"]))
    return read_version(store, number)


def write_latest_index(store: ObjectStore, version: Version) -> None:
    """``index.json`` and ``versions/LATEST`` again from ``version`` (a finalize delivered
    again repairs what a crash between them left)."""
    doc = {k: v for k, v in version.doc.items()
           if k not in ("__kind__", "wids_version", "name", "shardlist")}
    write_index(store, list(version.shards), version.doc["name"], key=INDEX_KEY, extra=doc)
    store.put(LATEST_KEY, str(version.number).encode())


def _next_summary(store: ObjectStore, parent: Version | None, shards: list[ShardInfo],
                  added: list[ShardInfo], fresh: dict[str, Fresh] | None) -> pa.Table:
    """The parent's summary rows of the shards kept, the new shards' rows, in shard order,
    with every column's type in the file's metadata."""
    new = {s.name for s in added}
    kept = [s.name for s in shards if s.name not in new]
    tables = [summary_table(_entries(store, added, fresh))]
    if parent is not None and kept:
        inherited = Summary(store, parent).read()
        tables.append(inherited.filter(pc.is_in(inherited["shard"],
                                                pa.array(kept, pa.string()))))
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables],
                             promote_options="permissive")
    order = {s.name: i for i, s in enumerate(shards)}
    names = table["shard"].to_pylist()
    table = table.take(pa.array(sorted(range(table.num_rows), key=lambda i: order[names[i]]),
                                pa.int64()))
    columns = summary_columns(table)
    return table.replace_schema_metadata({"autods_columns": json.dumps(columns)})


def _put_keys(store: ObjectStore, key: str, parent: Version | None,
              shards: list[ShardInfo], added: list[ShardInfo],
              fresh: dict[str, Fresh] | None) -> None:
    """The keys sidecar of a version: the new shards' keys and the parent's of the shards
    kept, in key order, in row groups of ``KEY_ROW_GROUP``.

    Sorted in runs of ``KEY_RUN`` keys spilled to local files, then merged (the parent's
    file is a run already sorted), and written through a local file handed to the store:
    the memory it takes does not grow with the dataset. Sorted whole in memory, the keys
    of a million-item job's version took its finalizing worker from 790 to 1,027 MiB,
    the highest peak of any task of the job.
    """
    new = {s.name for s in added}
    kept = [s.name for s in shards if s.name not in new]
    with tempfile.TemporaryDirectory(prefix="autods-keys-") as scratch_dir:
        scratch = Path(scratch_dir)
        runs = _spilled_runs(_key_tables(store, added, fresh), scratch, "new")
        if parent is not None and kept:
            if parent.number is not None and store.exists(keys_key(parent.number)):
                runs.append(_kept_keys(store, parent.number, set(kept)))
            else:
                runs += _spilled_runs(_key_tables(store, [parent.shard(n) for n in kept]),
                                      scratch, "parent")
        out = scratch / "keys.parquet"
        with pq.ParquetWriter(out, KEYS_SCHEMA, write_statistics=["key"]) as writer:
            for group in _row_groups(_merged(runs), KEY_ROW_GROUP):
                writer.write_table(group)
        store.put_file(key, out)


def _spilled_runs(tables: Iterable[pa.Table], scratch: Path, tag: str
                  ) -> list[Iterator[pa.Table]]:
    """``tables`` as sorted runs of about ``KEY_RUN`` rows, each written to an Arrow file
    in ``scratch`` and read back a record batch at a time."""
    runs: list[Iterator[pa.Table]] = []
    pending: list[pa.Table] = []

    def spill() -> None:
        path = scratch / f"{tag}-{len(runs)}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, KEYS_SCHEMA) as w:
            w.write_table(pa.concat_tables(pending).sort_by("key"), max_chunksize=KEY_ROW_GROUP)
        pending.clear()
        runs.append(_run(path))

    for table in tables:
        pending.append(table)
        if sum(t.num_rows for t in pending) >= KEY_RUN:
            spill()
    if pending:
        spill()
    return runs


def _run(path: Path) -> Iterator[pa.Table]:
    """A spilled run's batches, read from the file one at a time (not memory-mapped: the
    pages of a mapped file count in the process's resident memory)."""
    with pa.OSFile(str(path)) as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield pa.Table.from_batches([reader.get_batch(i)])


def _kept_keys(store: ObjectStore, number: int, kept: set[str]) -> Iterator[pa.Table]:
    """The parent's keys of the shards kept, in its file's (key) order, a row group at a
    time."""
    pf = _open_parquet(store, keys_key(number))
    names = pa.array(sorted(kept), pa.string())
    for group in range(pf.num_row_groups):
        table = pf.read_row_group(group)
        yield table.filter(pc.is_in(table["shard"], names)).cast(KEYS_SCHEMA)


def _merged(runs: list[Iterator[pa.Table]]) -> Iterator[pa.Table]:
    """The rows of sorted runs in key order, a slice of the runs' heads at a time: every
    row up to the smallest of the heads' last keys can go, since no row still unread in
    any run sorts before it."""
    heads: list[pa.Table | None] = [None] * len(runs)
    while True:
        for i, run in enumerate(runs):
            while heads[i] is None or heads[i].num_rows == 0:
                heads[i] = next(run, None)
                if heads[i] is None:
                    break
        live = [i for i, head in enumerate(heads) if head is not None]
        if not live:
            return
        cutoff = min(heads[i]["key"][-1].as_py() for i in live)
        parts = []
        for i in live:
            head = heads[i]
            n = pc.sum(pc.less_equal(head["key"], cutoff)).as_py() or 0
            parts.append(head.slice(0, n))
            heads[i] = head.slice(n)  # an emptied head is refilled at the next round
        yield pa.concat_tables(parts).sort_by("key")


def _row_groups(tables: Iterable[pa.Table], size: int) -> Iterator[pa.Table]:
    """``tables`` cut again into tables of ``size`` rows (the last may be shorter)."""
    pending: list[pa.Table] = []
    rows = 0
    for table in tables:
        pending.append(table)
        rows += table.num_rows
        while rows >= size:
            whole = pa.concat_tables(pending)
            yield whole.slice(0, size)
            pending, rows = [whole.slice(size)], rows - size
    if rows:
        yield pa.concat_tables(pending)


def referenced_keys(version: Version) -> set[str]:
    """Every object a version needs: its shards' tars and manifests."""
    return {k for s in version.shards
            for k in (s.tar_key, s.manifest_json_key, s.manifest_parquet_key)}


def collect_garbage(store: ObjectStore, keep: int) -> dict[str, int]:
    """Remove all but the newest ``keep`` versions and the objects only they reference.

    Objects of no version at all (a shard a running job has just written) are left alone:
    only what a removed version listed, and no kept version lists, is deleted.
    """
    if keep < 1:
        raise ValueError("keep at least one version")
    numbers = list_versions(store)
    removed, kept = numbers[:-keep], numbers[-keep:]
    if not removed:
        return {"versions_removed": 0, "objects_deleted": 0}
    needed: set[str] = set()
    for n in kept:
        needed |= referenced_keys(read_version(store, n))
    doomed: set[str] = set()
    for n in removed:
        doomed |= referenced_keys(read_version(store, n))
    objects = sorted(doomed - needed)
    for key in objects:
        store.delete(key)
    for n in removed:
        for key in (summary_key(n), keys_key(n), version_key(n)):
            store.delete(key)
    logger.info("gc %s: %d versions and %d objects removed", store.url, len(removed),
                len(objects))
    return {"versions_removed": len(removed), "objects_deleted": len(objects)}
