"""Write one WebDataset shard: a plain tar that every common reader accepts as is.

The readers we target (``webdataset``, Hugging Face ``datasets``' webdataset builder and
``wids``) each parse tars their own way, so the writer sticks to the subset they all agree
on: USTAR headers with the whole member name in the 100-byte name field (``wids`` ignores
the prefix field), one ``key.ext`` regular file per member, a sample's members adjacent,
the same extensions in every sample (Hugging Face infers one schema from the first few),
lower-case extensions (``webdataset`` lower-cases them on read) and member contents the
readers' extension-based decoders can parse. Violations are programming errors upstream
and raise ``ValueError`` before anything is written.

The tar is written directly rather than with ``webdataset.TarWriter``, which always sorts a
sample's members alphabetically and exposes no per-sample positions (both the member order
and the byte offsets are part of our contract), or with :mod:`tarfile`, whose per-member
``TarInfo`` copy and generic header code cost more than the tar's own bytes. The output is
byte for byte what ``tarfile`` writes in ``USTAR_FORMAT`` for the same members (a test
holds it to that), so shards written before and after the change are interchangeable.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from autods.core.manifest import SampleSpan, write_manifests
from autods.core.records import ShardInfo, ShardSample
from autods.core.schema import SAMPLE, SampleSchema
from autods.core.storage import ObjectStore
from autods.core.validate import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

# After the image: the order a person skimming ``tar tvf`` expects; the rest alphabetical.
_LEADING_EXTENSIONS = ("txt", "json", "npy", "cls")

_KEY = re.compile(r"[A-Za-z0-9_\-]+(?:/[A-Za-z0-9_\-]+)*")
_EXTENSION = re.compile(r"[a-z0-9]+(?:[._][a-z0-9]+)*")
_INTEGER = re.compile(rb"-?[0-9]+")
_MAX_NAME_BYTES = 99  # USTAR name field is 100 bytes; a full one has no NUL terminator

_OWNER = "root"
_MEMBER_MODE = 0o444

# A USTAR header (POSIX.1-1988) for a regular file whose owner, mode and mtime are fixed:
# only the name, the size and the checksum over both vary between members.
_BLOCK = 512
_RECORD = 20 * _BLOCK  # tar pads the archive to whole records, as ``tarfile`` does
_NAME_FIELD = 100
_MODE_UID_GID = b"%07o\0" % _MEMBER_MODE + b"%07o\0" % 0 + b"%07o\0" % 0
_MTIME = b"%011o\0" % 0
_AFTER_CHECKSUM = (
    b"0"  # typeflag: regular file
    + bytes(100)  # linkname
    + b"ustar\x0000"  # magic and version
    + _OWNER.encode("ascii").ljust(32, b"\0") * 2  # uname, gname
    + bytes(8 + 8 + 155 + 12)  # devmajor, devminor (unset for regular files), prefix, pad
)
# The checksum is the byte sum of the header with its own 8-byte field read as spaces.
_CHECKSUM_BASE = sum(_MODE_UID_GID) + sum(_MTIME) + 8 * ord(" ") + sum(_AFTER_CHECKSUM)
_MAX_SIZE = 8**11 - 1  # 11 octal digits


def _check_integer(data: bytes) -> None:
    if not _INTEGER.fullmatch(data):
        raise ValueError(f"must be an ASCII integer, got {data[:32]!r}")


def _check_text(data: bytes) -> None:
    data.decode("utf-8")


def _check_json(data: bytes) -> None:
    json.loads(data)


def _check_npy(data: bytes) -> None:
    np.load(io.BytesIO(data), allow_pickle=False)


# Hugging Face decodes these extensions eagerly while loading (``int``, UTF-8, ``json``,
# ``numpy`` without pickles); one undecodable member makes the whole split fail to load.
_CONTENT_CHECKS: dict[str, Callable[[bytes], None]] = {
    "cls": _check_integer,
    "cls2": _check_integer,
    "id": _check_integer,
    "index": _check_integer,
    "inx": _check_integer,
    "txt": _check_text,
    "text": _check_text,
    "transcript": _check_text,
    "json": _check_json,
    "jsn": _check_json,
    "npy": _check_npy,
}


def member_order(extensions: Iterable[str]) -> list[str]:
    """Extensions in member order: images first, then text, json, npy, cls, then the rest.

    A fixed order keeps tars byte-identical for the same samples and lets a streaming
    reader see the image before its annotations.
    """

    def rank(ext: str) -> tuple[int, str]:
        if ext in IMAGE_EXTENSIONS:
            return 0, ext
        if ext in _LEADING_EXTENSIONS:
            return 1 + _LEADING_EXTENSIONS.index(ext), ext
        return 1 + len(_LEADING_EXTENSIONS), ext

    return sorted(extensions, key=rank)


def _check_key(key: str) -> None:
    # Readers split a member name at the first dot of its last path component.
    if not _KEY.fullmatch(key):
        raise ValueError(f"sample key {key!r} must be ASCII letters, digits, '_', '-', '/'")


def _check_extension(key: str, ext: str) -> None:
    if not _EXTENSION.fullmatch(ext):
        raise ValueError(f"sample {key!r}: extension {ext!r} must be lower-case ASCII")
    name = f"{key}.{ext}"
    if len(name) > _MAX_NAME_BYTES:
        raise ValueError(f"member name {name!r} is longer than {_MAX_NAME_BYTES} bytes")


def _check_member(key: str, ext: str, data: bytes) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"sample {key!r}: member {ext!r} is {type(data).__name__}, not bytes")
    check = _CONTENT_CHECKS.get(ext.rsplit(".", 1)[-1])
    if check is None:
        return
    try:
        check(bytes(data))
    except ValueError as exc:  # json and unicode errors are ValueErrors too
        raise ValueError(f"sample {key!r}: member {ext!r} is not decodable: {exc}") from exc


def validate_samples(samples: list[ShardSample]) -> list[str]:
    """Check the reader rules for a whole shard; return its extensions in member order."""
    if not samples:
        raise ValueError("a shard needs at least one sample")
    expected = set(samples[0].members)
    seen: set[str] = set()
    for sample in samples:
        _check_key(sample.key)
        if sample.key in seen:
            raise ValueError(f"duplicate sample key {sample.key!r}")
        seen.add(sample.key)
        if set(sample.members) != expected:
            raise ValueError(
                f"sample {sample.key!r} has extensions {sorted(sample.members)}, "
                f"the shard has {sorted(expected)}"
            )
        for ext, data in sample.members.items():
            _check_extension(sample.key, ext)
            _check_member(sample.key, ext, data)
    if not expected:
        raise ValueError("samples must have at least one member")
    return member_order(expected)


def _header(name: bytes, size: int) -> bytes:
    """The member's USTAR header; it depends only on name and size, so equal input gives
    equal bytes."""
    if size > _MAX_SIZE:
        raise ValueError(f"member {name!r} has {size} bytes, more than USTAR can record")
    size_field = b"%011o\0" % size
    checksum = _CHECKSUM_BASE + sum(name) + sum(size_field)
    return b"".join(
        (
            name.ljust(_NAME_FIELD, b"\0"),
            _MODE_UID_GID,
            size_field,
            _MTIME,
            b"%06o\0 " % checksum,
            _AFTER_CHECKSUM,
        )
    )


class _HashingWriter:
    """Writes to a file while hashing and counting the bytes, so the offsets come for free
    and the finished tar never has to be read back to be hashed."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._sha256 = hashlib.sha256()
        self.offset = 0

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self._sha256.update(data)
        self.offset += len(data)

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


def _write_tar(
    samples: list[ShardSample], order: list[str], out: _HashingWriter
) -> list[SampleSpan]:
    """Write the samples as a tar; return where each sample's bytes lie."""
    spans: list[SampleSpan] = []
    suffixes = [f".{ext}".encode("ascii") for ext in order]
    for sample in samples:
        start = out.offset
        key = sample.key.encode("ascii")
        for ext, suffix in zip(order, suffixes, strict=True):
            data = bytes(sample.members[ext])
            out.write(_header(key + suffix, len(data)))
            out.write(data)
            if len(data) % _BLOCK:
                out.write(bytes(_BLOCK - len(data) % _BLOCK))
        spans.append(SampleSpan(key=sample.key, offset=start, size=out.offset - start))
    out.write(end_of_archive(out.offset))
    return spans


def end_of_archive(offset: int) -> bytes:
    """What ends a tar whose members end at ``offset``: two zero blocks, then zeros up to
    a whole record, as ``tarfile`` writes."""
    end = offset + 2 * _BLOCK
    return bytes(2 * _BLOCK + (-end) % _RECORD)


def write_shard(
    samples: list[ShardSample],
    name: str,
    store: ObjectStore,
    provenance: dict[str, Any],
    prefix: str = "shards",
    schema: SampleSchema = SAMPLE,
) -> ShardInfo:
    """Write ``{prefix}/{name}.tar`` and its manifests (typed by ``schema``); return what
    was written.

    The tar is assembled in a local temporary file and handed to the store whole, so a
    shard is either absent or complete; the manifests follow it, so a manifest never
    describes a tar that is not there.
    """
    order = validate_samples(samples)
    tar_key = f"{prefix}/{name}.tar"
    fd, tmp_name = tempfile.mkstemp(prefix="autods-shard-", suffix=".tar")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            out = _HashingWriter(f)
            spans = _write_tar(samples, order, out)
        size, sha256 = out.offset, out.hexdigest()
        store.put_file(tar_key, tmp)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("wrote shard %s: %d samples, %d bytes", tar_key, len(samples), size)
    json_key, parquet_key = write_manifests(
        store, prefix, name, samples, spans, provenance, size_bytes=size, sha256=sha256,
        schema=schema,
    )
    return ShardInfo(
        name=name,
        count=len(samples),
        nbytes=size,
        sha256=sha256,
        tar_key=tar_key,
        manifest_json_key=json_key,
        manifest_parquet_key=parquet_key,
        modality=str(provenance.get("modality", "image")),
        extensions=sorted(order),
    )
