"""Packs: the raw contents of one chunk in one stored object, read back by byte ranges.

Creating a file per image cost more than hashing it (a few hundred µs on the virtual
disks this runs on, a request per object on S3); appending to one file costs tens. A pack
is named by the sha256 of its bytes, so a chunk ingested twice with the same outcome
writes the same object once. Each asset records its pack and offset; readers take the
ranges of one pack in one read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from autods.core.storage import ObjectStore


@dataclass(frozen=True, slots=True)
class StoredRef:
    """Where an asset's bytes are: ``size`` bytes at ``offset`` of ``key``, or the whole
    object ``key`` when ``offset`` is None (assets stored before packs)."""

    key: str
    offset: int | None
    size: int

    @classmethod
    def of(cls, row) -> StoredRef:
        """The ref of a row that selected ``Asset.storage_key``, ``pack_offset`` and
        ``nbytes``."""
        return cls(row.storage_key, row.pack_offset, row.nbytes)


def pack_key(digest: str) -> str:
    return f"packs/{digest[:2]}/{digest}.pack"


class PackWriter:
    """Appends contents, each once, to a local temporary file; thread-safe.

    ``directory`` should be on the store's filesystem for a local store, so publishing is
    a rename.
    """

    def __init__(self, directory: Path | None = None) -> None:
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-pack-")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._lock = threading.Lock()
        self._offsets: dict[str, tuple[int, int]] = {}
        self._size = 0

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(self, *exc) -> None:
        """A pack never published (its chunk failed) leaves no temporary file behind."""
        self._file.close()
        self.path.unlink(missing_ok=True)

    def add(self, sha256: str, data: bytes) -> bool:
        """Append ``data`` unless the same content was added (``publish`` says where);
        True when this call appended it."""
        with self._lock:
            if sha256 in self._offsets:
                return False
            self._offsets[sha256] = (self._size, len(data))
            self._file.write(data)
            self._size += len(data)
            return True

    def publish(self, store: ObjectStore, drop: Iterable[str] = ()
                ) -> tuple[str | None, dict[str, int]]:
        """Store the pack without the contents in ``drop`` (stored before); returns its key
        and each kept content's offset in it. Nothing is stored when nothing is kept."""
        self._file.close()
        drop = set(drop)
        kept = {sha: span for sha, span in self._offsets.items() if sha not in drop}
        path = self.path
        try:
            if not kept:
                return None, {}
            if len(kept) < len(self._offsets):
                path, kept = self._rewrite(kept)
            digest = _file_sha256(path)
            key = pack_key(digest)
            if not store.exists(key):  # else: the same chunk ingested again, same outcome
                store.put_file(key, path)
            return key, {sha: offset for sha, (offset, _) in kept.items()}
        finally:
            for p in {self.path, path}:
                p.unlink(missing_ok=True)

    def _rewrite(self, kept: dict[str, tuple[int, int]]
                 ) -> tuple[Path, dict[str, tuple[int, int]]]:
        """A new temporary pack of the kept contents only, in their order."""
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-pack-")
        moved: dict[str, tuple[int, int]] = {}
        with open(self.path, "rb") as src, os.fdopen(fd, "wb") as dst:
            for sha, (offset, size) in sorted(kept.items(), key=lambda kv: kv[1][0]):
                moved[sha] = (dst.tell(), size)
                dst.write(os.pread(src.fileno(), size, offset))
        return Path(name), moved


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


#: The most bytes one read of a pack spans: readers hold at most this much at once.
MAX_SPAN = 64 * 1024 * 1024


def iter_bytes(store: ObjectStore, refs: Iterable[StoredRef],
               max_span: int = MAX_SPAN) -> Iterator[bytes]:
    """The bytes of each ref, in order. Refs that follow one another into the same pack
    (in any order within it: a chunk's pack is in fetch-completion order) are read
    together, one ranged read per run while its span stays under ``max_span``."""
    run: list[StoredRef] = []
    lo = hi = 0
    for ref in refs:
        if run and not (ref.offset is not None and ref.key == run[0].key
                        and max(hi, ref.offset + ref.size) - min(lo, ref.offset) <= max_span):
            yield from _read_run(store, run, lo, hi)
            run = []
        if ref.offset is None:
            yield store.get(ref.key)
            continue
        lo, hi = ((min(lo, ref.offset), max(hi, ref.offset + ref.size)) if run
                  else (ref.offset, ref.offset + ref.size))
        run.append(ref)
    if run:
        yield from _read_run(store, run, lo, hi)


def _read_run(store: ObjectStore, run: list[StoredRef], lo: int, hi: int) -> Iterator[bytes]:
    span = store.get_range(run[0].key, lo, hi - lo)
    for ref in run:
        yield span[ref.offset - lo:ref.offset - lo + ref.size]


def read_one(store: ObjectStore, ref: StoredRef) -> bytes:
    if ref.offset is None:
        return store.get(ref.key)
    return store.get_range(ref.key, ref.offset, ref.size)


def blank(store: ObjectStore, key: str, ranges: Iterable[tuple[int, int]]) -> None:
    """Overwrite ``(offset, size)`` ranges of a pack with zeros: forgotten content leaves
    the store while the other assets' offsets stay valid. The pack keeps its name."""
    data = bytearray(store.get(key))
    for offset, size in ranges:
        data[offset:offset + size] = bytes(size)
    store.put(key, bytes(data))
