"""Sources: turn a spec (folder, URL list, text records, S3 prefix) into ``SourceItem``s.

The order is deterministic (sorted paths and keys, file order for record files), so the
same spec gives the same ordinals on every run and a resumed job lines up with the first
attempt. Nothing is fetched or decoded here, and bad rows are not dropped: a row that
cannot become an input is still yielded, with ``error`` set to a ``Reason`` value, so the
job report accounts for every line a user gave.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from autods.core.records import (
    Modality,
    Reason,
    SourceDenied,
    SourceError,
    SourceItem,
    SourceNotFound,
    TransientError,
)
from autods.core.validate import LONE_SURROGATE, is_image_name

log = logging.getLogger(__name__)

RECORD_EXTENSIONS = frozenset({".txt", ".csv", ".jsonl", ".parquet"})
METADATA_NAME = "metadata.jsonl"
#: Largest metadata file read: its rows stay in memory while a source is listed (in the
#: API's process, for jobs posted over REST), so a bigger one is refused, not read.
MAX_METADATA_BYTES = 64 * 1024 * 1024
#: Schemes a URL list may name (fetch follows redirects only to these too).
URL_SCHEMES = frozenset({"http", "https"})

_FIELDS = ("caption", "license", "source")
_URL_KEYS = frozenset({"url", *_FIELDS})
_TEXT_KEYS = frozenset({"text", *_FIELDS})
_WARN_LIMIT = 5  # per metadata file; the rest are only counted
_BOM = b"\xef\xbb\xbf"
_MISSING_S3_CODES = frozenset({"NoSuchBucket", "InvalidBucketName"})
_FATAL_S3_CODES = frozenset({"AccessDenied", "AllAccessDisabled"})
# S3 bucket naming rules: 3-63 of lowercase letters, digits, dots and hyphens, starting
# and ending with a letter or digit.
#: An S3 bucket name (shared with the API's schema, which declares the same rule).
BUCKET_PATTERN = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
_BUCKET = re.compile(BUCKET_PATTERN)


# ---------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------


def source_kind(spec: str) -> str:
    """``folder``, ``urls``, ``texts`` or ``s3``; raises ``ValueError`` for anything else."""
    return _classify(spec)[0]


def iter_source(spec: str, start_ordinal: int = 0, s3_client=None) -> Iterator[SourceItem]:
    """Items of one source, numbered from ``start_ordinal`` in a stable order.

    The spec is checked now (a missing path raises ``ValueError`` here, not on the first
    ``next``); listing and reading happen lazily. ``s3_client`` is a boto3 S3 client; for
    an ``s3://`` spec without one, a client is built from the AWS environment.
    """
    kind, path = _classify(spec)
    if kind == "s3":
        items = _iter_s3(spec, s3_client or _default_s3_client())
    elif kind == "folder":
        items = _iter_folder(path)
    else:
        items = _iter_records(path, texts=kind == "texts")
    return _numbered(items, start_ordinal)


def _numbered(items: Iterable[SourceItem], start: int) -> Iterator[SourceItem]:
    """Assign consecutive ordinals in yielded order."""
    for ordinal, item in enumerate(items, start):
        item.ordinal = ordinal
        yield item


def _classify(spec: str) -> tuple[str, Path]:
    """The source kind and, for local specs, the path it names."""
    if spec.startswith("s3://"):
        _split_s3(spec)
        return "s3", Path()
    path = _local_path(spec)
    if path.is_dir():
        return "folder", path
    if path.is_file() and path.suffix.lower() in RECORD_EXTENSIONS:
        return _record_kind(path), path
    if not path.exists():
        raise SourceNotFound(f"source not found: {spec}")
    raise SourceError(
        f"unsupported source {spec}: expected a folder, s3://bucket/prefix, "
        "or a .txt/.csv/.jsonl/.parquet file"
    )


def _local_path(spec: str) -> Path:
    """A filesystem path from a plain path or a ``file://`` URI, made absolute."""
    if spec.startswith("file://"):
        spec = url2pathname(unquote(urlsplit(spec).path))
    return Path(os.path.abspath(os.path.expanduser(spec)))


# ---------------------------------------------------------------------------------------
# Row helpers shared by record files and metadata
# ---------------------------------------------------------------------------------------


def _norm_key(key: Any) -> str:
    """Column names match case- and space-insensitively (``URL``, `` caption``)."""
    return key.strip().lower() if isinstance(key, str) else str(key)


def _plain(value: Any) -> Any:
    """A JSON-safe copy of a metadata value (Parquet may hold dates, decimals, bytes)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _opt_str(value: Any) -> str | None:
    """An optional text field: stripped, empty means absent, scalars become strings."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(_plain(value))
    return text.strip() or None


def _split_row(row: dict[str, Any], known: frozenset[str]) -> tuple[dict[str, Any], dict]:
    """Known fields (by normalised name) and everything else, which becomes ``meta``."""
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in row.items():
        name = _norm_key(key)
        if name in known:
            fields[name] = value
        else:
            extra[str(key)] = _plain(value)
    return fields, extra


def _bad(uri: str, reason: Reason, detail: str, modality: Modality) -> SourceItem:
    """An item that stands for an unusable row, so it is reported, not lost."""
    return SourceItem(0, uri, modality=modality, error=reason.value,
                      meta={"error_detail": detail})


def _scheme(url: str) -> str:
    """The URL's scheme, lower-cased. A plain ``http(s)://host/...`` needs no full parse
    (``urlsplit`` is most of the cost of listing a million URLs); anything with brackets
    (IPv6 literals, which it validates), non-ASCII or an unusual scheme goes through it."""
    head, sep, _ = url.partition("://")
    if sep and url.isascii() and head.isalpha() and "[" not in url and "]" not in url:
        return head.lower()
    return urlsplit(url).scheme.lower()


def _url_item(row: dict[str, Any], where: str) -> SourceItem:
    """A URL-list row; non-http(s) schemes are kept but marked ``blocked_scheme``."""
    fields, extra = _split_row(row, _URL_KEYS)
    url = fields.get("url")
    if not isinstance(url, str) or not url.strip():
        return _bad(where, Reason.BAD_RECORD, "missing url", Modality.IMAGE)
    url = url.strip()
    try:
        scheme = _scheme(url)
    except ValueError:
        return _bad(where, Reason.BAD_RECORD, "malformed url", Modality.IMAGE)
    item = SourceItem(
        0, url,
        caption=_opt_str(fields.get("caption")),
        license=_opt_str(fields.get("license")),
        source=_opt_str(fields.get("source")),
        meta=extra,
    )
    if scheme not in URL_SCHEMES:
        item.error = Reason.BLOCKED_SCHEME.value
    return item


def _text_item(row: dict[str, Any], where: str) -> SourceItem:
    """A text record; the text travels inline, the uri only locates the row."""
    fields, extra = _split_row(row, _TEXT_KEYS)
    text = fields.get("text")
    if not isinstance(text, str):
        return _bad(where, Reason.BAD_RECORD, "text missing or not a string", Modality.TEXT)
    if LONE_SURROGATE.search(text):
        return _bad(where, Reason.INVALID_UTF8, "text has a lone surrogate", Modality.TEXT)
    return SourceItem(
        0, where,
        modality=Modality.TEXT,
        text=text,
        caption=_opt_str(fields.get("caption")),
        license=_opt_str(fields.get("license")),
        source=_opt_str(fields.get("source")),
        meta=extra,
    )


# ---------------------------------------------------------------------------------------
# Record files: .txt (URLs), .csv, .jsonl, .parquet
# ---------------------------------------------------------------------------------------


def _record_kind(path: Path) -> str:
    """``texts`` when the records have a ``text`` column and no ``url``, else ``urls``."""
    columns = _record_columns(path)
    return "texts" if "text" in columns and "url" not in columns else "urls"


def _record_columns(path: Path) -> set[str]:
    """Normalised column names, from the header, schema, or first valid JSON object."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open("rb") as f:
            first = f.readline().removeprefix(_BOM).decode("utf-8", "replace")
        return {_norm_key(c) for c in next(csv.reader([first]), [])}
    if suffix == ".jsonl":
        for _, raw in _lines(path):
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            if isinstance(obj, dict):
                return {_norm_key(k) for k in obj}
        return set()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return {_norm_key(n) for n in pq.read_schema(path).names}
    return {"url"}


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """1-based line numbers and raw lines (BOM removed), so each line decodes on its own."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            yield number, raw.removeprefix(_BOM) if number == 1 else raw


def _iter_records(path: Path, texts: bool) -> Iterator[SourceItem]:
    """Rows of a record file as URL or text items; positions are 1-based line numbers
    (row numbers for Parquet) so a user can find a rejected row."""
    file_uri = path.as_uri()
    make = _text_item if texts else _url_item
    modality = Modality.TEXT if texts else Modality.IMAGE
    suffix = path.suffix.lower()
    if suffix == ".txt":
        yield from _iter_url_lines(path, file_uri)
    elif suffix == ".jsonl":
        yield from _iter_jsonl(path, file_uri, make, modality)
    elif suffix == ".csv":
        yield from _iter_csv(path, file_uri, make, modality)
    else:
        yield from _iter_parquet(path, file_uri, make)


def _iter_url_lines(path: Path, file_uri: str) -> Iterator[SourceItem]:
    """One URL per line; blank lines and ``#`` comments are skipped."""
    for number, raw in _lines(path):
        where = f"{file_uri}#{number}"
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            yield _bad(where, Reason.INVALID_UTF8, f"line {number}", Modality.IMAGE)
            continue
        if line and not line.startswith("#"):
            yield _url_item({"url": line}, where)


def _iter_jsonl(path: Path, file_uri: str, make: Callable[[dict, str], SourceItem],
                modality: Modality) -> Iterator[SourceItem]:
    """One JSON object per line; undecodable or non-object lines become error items."""
    for number, raw in _lines(path):
        where = f"{file_uri}#{number}"
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            yield _bad(where, Reason.INVALID_UTF8, f"line {number}", modality)
            continue
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            yield _bad(where, Reason.BAD_RECORD, f"line {number}: invalid JSON", modality)
            continue
        if not isinstance(obj, dict):
            yield _bad(where, Reason.BAD_RECORD, f"line {number}: not an object", modality)
            continue
        yield make(obj, where)


def _decoded(lines: Iterable[tuple[int, bytes]], bad: set[int]) -> Iterator[str]:
    """Feed the csv module text lines; a line that is not UTF-8 becomes an empty line and
    its number goes to ``bad``, so one broken line cannot fail the whole file."""
    for number, raw in lines:
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.add(number)
            yield "\n"


def _iter_csv(path: Path, file_uri: str, make: Callable[[dict, str], SourceItem],
              modality: Modality) -> Iterator[SourceItem]:
    """A CSV with a header row; positions are the line where each record starts."""
    bad: set[int] = set()
    reader = csv.reader(_decoded(_lines(path), bad))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise SourceError(f"{path}: unreadable CSV header: {exc}") from exc
    if bad:
        raise SourceError(f"{path}: CSV header is not UTF-8")
    previous = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _bad(f"{file_uri}#{previous + 1}", Reason.BAD_RECORD, str(exc), modality)
            previous = reader.line_num
            continue
        start, previous = previous + 1, reader.line_num
        where = f"{file_uri}#{start}"
        if any(start <= n <= previous for n in bad):
            yield _bad(where, Reason.INVALID_UTF8, f"line {start}", modality)
        elif not row:
            continue
        elif len(row) > len(header):
            yield _bad(where, Reason.BAD_RECORD, "more fields than the header", modality)
        else:
            yield make(dict(zip(header, row, strict=False)), where)


def _iter_parquet(path: Path, file_uri: str,
                  make: Callable[[dict, str], SourceItem]) -> Iterator[SourceItem]:
    """Parquet rows in file order, read a batch at a time to bound memory."""
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield make(row, f"{file_uri}#{number}")


# ---------------------------------------------------------------------------------------
# Trees: local folders and S3 prefixes
# ---------------------------------------------------------------------------------------


def parse_metadata(data: bytes, where: str) -> tuple[dict[str, dict[str, Any]], int]:
    """Rows of one ``metadata.jsonl`` keyed by normalised ``file_name``, and how many lines
    were malformed (skipped with a warning: metadata is optional, the images are not)."""
    rows: dict[str, dict[str, Any]] = {}
    malformed = 0
    for number, raw in enumerate(data.removeprefix(_BOM).splitlines(), 1):
        if not raw.strip():
            continue
        row, problem = _metadata_row(raw)
        if problem is not None:
            malformed += 1
            if malformed <= _WARN_LIMIT:
                log.warning("%s line %d skipped: %s", where, number, problem)
            continue
        name = row.pop("file_name")
        if name in rows:
            log.warning("%s line %d: %s described twice; the later row wins", where,
                        number, name)
        rows[name] = row
    if malformed:
        log.warning("%s: %d malformed metadata line(s) skipped", where, malformed)
    return rows, malformed


def _metadata_row(raw: bytes) -> tuple[dict[str, Any], str | None]:
    """One metadata line, or why it is unusable."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return {}, "not UTF-8"
    except ValueError:
        return {}, "invalid JSON"
    if not isinstance(obj, dict):
        return {}, "not a JSON object"
    name = _relative_name(obj.get("file_name"))
    if name is None:
        return {}, "file_name missing or outside the folder"
    obj["file_name"] = name
    return obj, None


def _relative_name(value: Any) -> str | None:
    """A ``file_name`` as a clean relative POSIX path, or None if it could escape."""
    if not isinstance(value, str) or not value.strip():
        return None
    name = posixpath.normpath(value.strip().replace("\\", "/"))
    if name.startswith("/") or name == ".." or name.startswith("../") or name == ".":
        return None
    return name


def _is_hidden(rel: str) -> bool:
    """Dot-files and dot-folders (``.git``, ``._x.jpg`` from macOS) are not inputs."""
    return any(part.startswith(".") for part in rel.split("/"))


def _ext(rel: str) -> str:
    return posixpath.splitext(rel)[1].lower()


def _stem_key(rel: str) -> str:
    """Folder plus stem: an image and its caption file share it."""
    return posixpath.splitext(rel)[0]


class _Tree:
    """What a sorted listing of relative paths holds: images, caption files, metadata."""

    def __init__(self, rels: Iterable[str]) -> None:
        self.images: list[str] = []
        self.captions: dict[str, str] = {}
        self.metadata: list[str] = []
        ignored = 0
        for rel in sorted(rels):
            if is_image_name(rel):
                self.images.append(rel)
            elif _ext(rel) == ".txt":
                self.captions[_stem_key(rel)] = rel
            elif posixpath.basename(rel) == METADATA_NAME:
                self.metadata.append(rel)
            else:
                ignored += 1
        if ignored:
            log.debug("%d file(s) ignored: not images, captions or metadata", ignored)

    def caption_of(self, image_rel: str) -> str | None:
        return self.captions.get(_stem_key(image_rel))

    def read_metadata(self, read: Callable[[str], bytes]) -> dict[str, dict[str, Any]]:
        """Metadata by image path; the file nearest to an image wins on conflicts."""
        merged: dict[str, dict[str, Any]] = {}
        for rel in sorted(self.metadata, key=lambda r: (r.count("/"), r)):
            base = posixpath.dirname(rel)
            data = read(rel)
            if len(data) > MAX_METADATA_BYTES:
                raise SourceError(f"{rel}: metadata over {MAX_METADATA_BYTES} bytes; split "
                                  "it into one metadata.jsonl per folder")
            rows, _ = parse_metadata(data, rel)
            for name, row in rows.items():
                merged[posixpath.join(base, name) if base else name] = row
        return merged


def _apply_metadata(item: SourceItem, row: dict[str, Any] | None) -> None:
    """Copy caption/license/source from a metadata row; the rest goes to ``meta``."""
    if not row:
        return
    fields, extra = _split_row(row, frozenset(_FIELDS))
    item.caption = _opt_str(fields.get("caption"))
    item.license = _opt_str(fields.get("license"))
    item.source = _opt_str(fields.get("source"))
    item.meta.update(extra)


def _walk(root: Path) -> list[str]:
    """Relative POSIX paths of the files under ``root``, hidden entries pruned."""
    rels = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        base = Path(dirpath).relative_to(root).as_posix()
        for name in filenames:
            if not name.startswith("."):
                rels.append(name if base == "." else f"{base}/{name}")
    return rels


def _read_caption(path: Path) -> tuple[str | None, str | None]:
    """A caption file's text, or None and why not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.warning("caption %s unreadable: %s", path, exc)
        return None, "unreadable"
    try:
        return data.removeprefix(_BOM).decode("utf-8").strip() or None, None
    except UnicodeDecodeError:
        return None, Reason.INVALID_UTF8.value


def _iter_folder(root: Path) -> Iterator[SourceItem]:
    """Images under a folder, sorted by relative path, with captions and metadata."""
    tree = _Tree(_walk(root))
    metadata = tree.read_metadata(lambda rel: _read_bounded(root / rel))
    log.info("folder %s: %d image file(s), %d caption file(s), %d metadata file(s)",
             root, len(tree.images), len(tree.captions), len(tree.metadata))
    for rel in tree.images:
        item = SourceItem(0, (root / rel).as_uri())
        _apply_metadata(item, metadata.get(rel))
        caption_rel = tree.caption_of(rel)
        if caption_rel is not None:
            caption, problem = _read_caption(root / caption_rel)
            item.caption = caption
            if problem is not None:
                item.meta["caption_error"] = problem
        yield item


def _split_s3(spec: str) -> tuple[str, str]:
    """Bucket and key prefix; a non-empty prefix always ends in ``/`` (folder semantics,
    so ``s3://b/photos`` does not pick up ``photos2/``)."""
    parsed = urlsplit(spec)
    if not parsed.netloc:
        raise SourceError(f"S3 source needs a bucket: {spec}")
    if not _BUCKET.fullmatch(parsed.netloc):
        raise SourceError(f"not a valid S3 bucket name: {parsed.netloc[:80]!r}")
    if "\x00" in spec:
        raise SourceError("an S3 prefix cannot contain NUL")
    prefix = parsed.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return parsed.netloc, prefix


def _default_s3_client():
    """A client from the standard AWS environment (credentials, region, endpoint)."""
    from autods.core.storage import s3_client

    return s3_client(None, os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))


def _s3_failure(action: str, exc: Exception) -> Exception:
    """Missing buckets and denied access are bad specs; anything else may pass."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _MISSING_S3_CODES:
            return SourceNotFound(f"{action}: {code}")
        if code in _FATAL_S3_CODES:
            return SourceDenied(f"{action}: {code}")
    return TransientError(f"{action}: {exc}")


def _list_s3(client, bucket: str, prefix: str) -> list[str]:
    """Every key under the prefix, relative to it, directory markers left out."""
    from botocore.exceptions import BotoCoreError, ClientError

    rels = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if not key.endswith("/"):
                    rels.append(key[len(prefix):])
    except (BotoCoreError, ClientError) as exc:
        raise _s3_failure(f"list s3://{bucket}/{prefix}", exc) from exc
    return rels


def _read_bounded(path: Path) -> bytes:
    """A metadata file, or its first bytes past the limit (enough to refuse it)."""
    with path.open("rb") as f:
        return f.read(MAX_METADATA_BYTES + 1)


def _get_s3(client, bucket: str, key: str) -> bytes:
    """A metadata object, at most one byte past the limit (enough to refuse it)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read(MAX_METADATA_BYTES + 1)
    except (BotoCoreError, ClientError) as exc:
        raise _s3_failure(f"get s3://{bucket}/{key}", exc) from exc


def _iter_s3(spec: str, client) -> Iterator[SourceItem]:
    """Images under an S3 prefix, sorted by key; captions are referenced by
    ``caption_uri`` and read at ingest, where fetching already happens."""
    bucket, prefix = _split_s3(spec)
    tree = _Tree(rel for rel in _list_s3(client, bucket, prefix) if not _is_hidden(rel))
    metadata = tree.read_metadata(lambda rel: _get_s3(client, bucket, prefix + rel))
    log.info("s3://%s/%s: %d image object(s), %d caption object(s), %d metadata file(s)",
             bucket, prefix, len(tree.images), len(tree.captions), len(tree.metadata))
    for rel in tree.images:
        item = SourceItem(0, f"s3://{bucket}/{prefix}{rel}")
        _apply_metadata(item, metadata.get(rel))
        caption_rel = tree.caption_of(rel)
        if caption_rel is not None:
            item.caption = None  # the caption file wins over metadata, as for folders
            item.caption_uri = f"s3://{bucket}/{prefix}{caption_rel}"
        yield item
