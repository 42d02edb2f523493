"""Using a dataset: its versions, queries, samples by key, views and garbage collection.

``open_dataset`` takes an output folder, an ``s3://`` location or a dataset name from the
database, and needs no broker and no worker: everything here reads the dataset's files.
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autods.config import Settings
from autods.core.query import Limits, QueryResult, run_query
from autods.core.storage import ObjectStore, sub_store
from autods.core.versions import (
    DatasetNotFound,
    Summary,
    Version,
    collect_garbage,
    list_versions,
    locate,
    read_version,
    version_key,
)
from autods.core.views import View, materialize

_VIEW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


def members_of(data: bytes) -> dict[str, bytes]:
    """A sample's members from its byte range in a tar (headers and contents)."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data + bytes(1024)), mode="r:") as tar:
        for info in tar:
            out[info.name.rpartition("/")[2].partition(".")[2]] = tar.extractfile(info).read()
    return out


@dataclass
class Dataset:
    """A dataset's files in an object store; ``name`` as its versions call it."""

    store: ObjectStore

    def version(self, number: int | None = None) -> Version:
        return read_version(self.store, number)

    def versions(self) -> list[dict[str, Any]]:
        """One row per version, oldest first (an index from before versions: one row)."""
        numbers = list_versions(self.store)
        found = [self.version(n) for n in numbers] if numbers else [self.version()]
        return [{"version": v.number, "parent": v.doc.get("parent"), "job": v.doc.get("job"),
                 "kind": v.doc.get("kind", "build"), "created_at": v.doc.get("created_at"),
                 "shards": len(v.shards), "samples": v.num_samples,
                 "added": len(v.doc.get("added", [])), "removed": len(v.doc.get("removed", []))}
                for v in found]

    def schema(self, *, version: int | None = None) -> dict[str, Any]:
        """The schema the version declares, and every manifest column it has with its type
        (the declared fields, and the fields its sources brought along)."""
        v = self.version(version)
        return {"declared": v.doc.get("schema"), "columns": Summary(self.store, v).columns}

    def query(self, predicate: str, *, version: int | None = None,
              columns: list[str] | None = None, limit: int | None = None,
              limits: Limits | None = None) -> QueryResult:
        """Matching samples' keys, shards, byte ranges and ``columns`` (``["*"]``: all)."""
        return run_query(self.store, self.version(version), predicate, columns=columns,
                         limit=limit, limits=limits)

    def get(self, key: str, *, version: int | None = None) -> dict[str, bytes]:
        """One sample's members, read from its byte range alone."""
        v = self.version(version)
        where = locate(self.store, v, key)
        if where is None:
            raise KeyError(f"no sample {key!r} in version {v.number}")
        data = self.store.get_range(v.shard(where.shard).tar_key, where.offset, where.size)
        return members_of(data)

    def materialize(self, predicate: str, name: str, *, version: int | None = None,
                    shard_size: int = 1000) -> tuple[View, Dataset]:
        """Write the matching samples as the view ``views/NAME`` inside this dataset."""
        if not _VIEW_NAME.match(name):
            raise ValueError(f"view name {name!r}: letters, digits, '_' and '-' only")
        target = sub_store(self.store, f"views/{name}")
        view = materialize(self.store, self.version(version), predicate, target, name,
                           shard_size=shard_size)
        return view, Dataset(target)

    def urls(self, *, version: int | None = None) -> list[str]:
        """The version's tars, for ``webdataset`` and Hugging Face ``datasets``."""
        return [self.store.uri(s.tar_key) for s in self.version(version).shards]

    def index_url(self, *, version: int | None = None) -> str:
        """The version's shard index, for ``wids`` (``index.json`` is the latest)."""
        number = self.version(version).number
        return self.store.uri(version_key(number) if number is not None else "index.json")

    def gc(self, keep: int) -> dict[str, int]:
        return collect_garbage(self.store, keep)


def dataset_url(ref: str, settings: Settings) -> str:
    """The location of ``ref``: itself when it is a URL or a folder, else the output URL
    the database records for a dataset of that name."""
    if "://" in ref or Path(ref).is_dir():
        return ref if "://" in ref else Path(ref).resolve().as_uri()
    from sqlalchemy import select

    from autods.db.models import Dataset as DatasetRow
    from autods.db.session import engine_for, session_scope

    with session_scope(engine_for(settings.database.url)) as db:
        url = db.scalar(select(DatasetRow.output_url).where(DatasetRow.name == ref))
    if url is None:
        raise DatasetNotFound(f"no dataset {ref!r}: not a folder, a URL or a dataset name")
    return url


def open_dataset(ref: str, settings: Settings | None = None) -> Dataset:
    """A dataset by folder, ``s3://`` location or name (``AUTODS_*`` settings by default)."""
    from autods.pipeline.runtime import Runtime

    settings = settings or Settings()
    return Dataset(Runtime(settings).store(dataset_url(ref, settings)))

