"""Object store behind one interface: a local folder or S3/MinIO (via boto3).

Keys are always derived by autods (content hashes, shard names), never from user paths, so
nothing a source says can make a write land outside the store's root. Writes are atomic:
a local write goes to a temporary name and is renamed; an S3 object appears only when its
upload completes.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlparse

from autods.core.records import StorageError

#: S3 error codes that mean "no such object" (as opposed to an outage).
S3_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
#: The block a local store copies a file from another filesystem in.
_COPY_BLOCK = 1 << 20

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")


def check_key(key: str) -> str:
    """Refuse keys that could escape the root (``..``, absolute paths, odd characters)."""
    if not _KEY.match(key) or ".." in key.split("/") or "//" in key:
        raise ValueError(f"invalid storage key: {key!r}")
    return key


class ObjectStore(Protocol):
    url: str

    def put(self, key: str, data: bytes) -> None: ...
    def put_file(self, key: str, path: Path) -> None: ...
    def get(self, key: str) -> bytes: ...
    def get_range(self, key: str, start: int, size: int) -> bytes: ...
    def size(self, key: str) -> int: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def uri(self, key: str) -> str: ...
    def list(self, prefix: str) -> list[str]: ...


def _umask() -> int:
    """The process umask (reading it means setting it; set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def _publishable(path: str | Path) -> None:
    """Temporary files are created 0600; a stored object gets the mode a plain ``open``
    would give it (0666 less the umask), so readers under other users can open shards."""
    os.chmod(path, 0o666 & ~_UMASK)


class LocalStore:
    """A folder; the embedded default."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        self._write(key, lambda f: f.write(data))

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            _publishable(path)
            os.replace(path, target)
        except OSError:  # another filesystem: copy next to the target, then rename
            with open(path, "rb") as src:  # in blocks: a shard may not fit in memory
                self._write(key, lambda f: shutil.copyfileobj(src, f, _COPY_BLOCK))
            Path(path).unlink(missing_ok=True)

    def _write(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        """Write an object through a temporary file beside it, renamed into place: a
        reader sees the whole object or none."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            _publishable(tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def get_range(self, key: str, start: int, size: int) -> bytes:
        with self._path(key).open("rb") as f:
            f.seek(start)
            return f.read(size)

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def delete(self, key: str) -> None:
        """Remove an object; an absent one is already removed."""
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path:
        """The object's file, for engines that read files themselves (DuckDB)."""
        return self._path(key)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )


def s3_client(endpoint_url: str | None, region: str, access_key_id: str | None = None,
              secret_access_key: str | None = None):
    """A boto3 S3 client with retries; credentials from arguments or the AWS environment."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=32),
    )


class S3Store:
    """An S3 bucket and prefix (AWS, MinIO, any S3-compatible server)."""

    def __init__(self, url: str, client) -> None:
        parsed = urlparse(url)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.url = url.rstrip("/")
        self.client = client

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError("put", f"S3 put {key}: {exc}") from exc

    def put_file(self, key: str, path: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(str(path), self.bucket, self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError("put", f"S3 upload {key}: {exc}") from exc
        Path(path).unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise StorageError("get", f"S3 get {key}: {exc}") from exc

    def get_range(self, key: str, start: int, size: int) -> bytes:
        """``size`` bytes from ``start`` in one ranged GET (a sample, a parquet footer)."""
        from botocore.exceptions import BotoCoreError, ClientError

        if size <= 0:
            return b""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key),
                                          Range=f"bytes={start}-{start + size - 1}")["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise StorageError("get", f"S3 get {key} [{start}:+{size}]: {exc}") from exc

    def size(self, key: str) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket,
                                               Key=self._key(key))["ContentLength"])
        except (BotoCoreError, ClientError) as exc:
            raise StorageError("head", f"S3 head {key}: {exc}") from exc

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError("delete", f"S3 delete {key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in S3_NOT_FOUND:
                return False
            raise StorageError("head", f"S3 head {key}: {exc}") from exc

    def uri(self, key: str) -> str:
        return f"{self.url}/{key}"

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix) if prefix else self.prefix
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                keys.append(key[len(self.prefix) + 1 :] if self.prefix else key)
        return sorted(keys)


def sub_store(store: ObjectStore, prefix: str) -> ObjectStore:
    """The store rooted at ``prefix`` inside ``store`` (a view inside its source dataset)."""
    check_key(prefix)
    if isinstance(store, S3Store):
        return S3Store(f"{store.url}/{prefix}", store.client)
    return LocalStore(Path(store.root) / prefix)


def open_store(url: str, endpoint_url: str | None = None, region: str = "us-east-1",
               access_key_id: str | None = None, secret_access_key: str | None = None
               ) -> ObjectStore:
    """The store for ``file://``, a plain path, or ``s3://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        client = s3_client(endpoint_url, region, access_key_id, secret_access_key)
        return S3Store(url, client)
    if parsed.scheme == "file":
        return LocalStore(parsed.netloc + parsed.path if parsed.netloc == "." else parsed.path)
    if parsed.scheme == "":
        return LocalStore(url)
    raise ValueError(f"unsupported storage url: {url}")
