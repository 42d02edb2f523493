"""Fetch the bytes behind one input URI: ``http(s)://``, ``s3://``, ``file://`` or a path.

Every fetch is bounded in time, bytes and redirects, because inputs come from lists that
nobody has vetted. A remote server that still misbehaves after a couple of quick retries is
bad input (``Rejected``); ``TransientError`` is kept for our own S3 storage failing.

URLs are untrusted, so HTTP connections go through ``_GuardedBackend``: it resolves each
host itself, refuses internal addresses (SSRF) and connects to exactly the address it
checked, for the first request and every redirect hop alike.

Requests go to httpcore's connection pool directly. httpx parses and joins URLs (IDNA,
percent-encoding), but its client adds nothing a fetch loop needs (redirects are followed
here, cookies are refused, bodies are not decoded) and its request and response models
cost as much time per small image as the HTTP exchange itself.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import httpcore
import httpx
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from autods.config import FetchSettings
from autods.core.records import Fetched, Reason, Rejected, TransientError
from autods.core.sources import URL_SCHEMES
from autods.core.storage import S3_NOT_FOUND
from autods.core.validate import media_type

log = logging.getLogger(__name__)

#: Schemes fetched over the network, where threads hide latency.
REMOTE_SCHEMES = URL_SCHEMES | {"s3"}
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_GONE_STATUSES = frozenset({404, 410})
_BACKOFF_S = (0.2, 0.4)
_S3_DENIED = frozenset({"AccessDenied", "AllAccessDisabled", "403"})
# A bucket that does not exist will not appear by retrying: every object in it is missing.
_S3_NO_BUCKET = frozenset({"NoSuchBucket", "InvalidBucketName"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Retryable(Rejected):
    """A rejection worth another attempt (5xx, 429, timeout, dropped connection)."""


def _is_public(ip: IPAddress) -> bool:
    """Whether a fetched URL may reach this address; internal ranges are where SSRF harms.

    An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) reaches its IPv4 address, so that
    is the one judged.
    """
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    internal = (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )
    return ip.is_global and not internal


def _resolve(host: str, port: int) -> list[str]:
    """All addresses of ``host``, in resolver order, without duplicates."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Rejected(Reason.UNRESOLVABLE_HOST, f"{host}: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise Rejected(Reason.UNRESOLVABLE_HOST, f"{host}: no address")
    return addresses


def _refuse_internal(host: str, addresses: Iterable[str]) -> None:
    """Refuse the host if any of its addresses is internal: a client may use any of them."""
    for address in addresses:
        if not _is_public(ipaddress.ip_address(address)):
            raise Rejected(Reason.BLOCKED_PRIVATE_ADDRESS, f"{host} resolves to {address}")


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every operation ends by the fetch deadline of its thread."""

    def __init__(self, inner: httpcore.NetworkStream, backend: _GuardedBackend) -> None:
        self._inner = inner
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._backend.bound(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._backend.bound(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._backend.bound(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, bounded), self._backend
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """Opens the pool's connections: resolve, vet, connect to the vetted address.

    Checking where the socket is opened, rather than before the request, means a DNS
    answer cannot change between the check and the connect (DNS rebinding), and that
    redirects and pooled connections cannot bypass it. Each thread's fetch deadline bounds
    every socket operation, so a server that drips bytes, headers included, cannot hold a
    worker thread past ``timeout_s``.
    """

    def __init__(self, allow_private_networks: bool) -> None:
        self._allow_private_networks = allow_private_networks
        self._local = threading.local()

    @contextmanager
    def deadline(self, at: float) -> Iterator[None]:
        """Bound this thread's socket operations by ``at`` (a ``time.monotonic`` value)."""
        self._local.at = at
        try:
            yield
        finally:
            self._local.at = None

    def bound(self, timeout: float | None, expired: type[httpcore.TimeoutException]
              ) -> float | None:
        """The smaller of the pool's per-operation timeout and the time left to the deadline."""
        at = getattr(self._local, "at", None)
        if at is None:
            return timeout
        left = at - time.monotonic()
        if left <= 0:
            raise expired("fetch deadline passed")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _resolve(host, port)
        if not self._allow_private_networks:
            _refuse_internal(host, addresses)
        *others, last = addresses
        for address in others:
            try:
                return self._connect(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                log.debug("connect to %s (%s) failed, trying the next address: %s",
                          host, address, exc)
        return self._connect(last, port, timeout, local_address, socket_options)

    def _connect(self, address: str, port: int, timeout: float | None,
                 local_address: str | None, socket_options: Iterable[Any] | None
                 ) -> httpcore.NetworkStream:
        stream = super().connect_tcp(address, port, self.bound(timeout, httpcore.ConnectTimeout),
                                     local_address, socket_options)
        return _DeadlineStream(stream, self)


def _extension(name: str) -> str | None:
    """Lower-case extension of a file name or URL path, without the dot."""
    suffix = PurePosixPath(name).suffix[1:].lower()
    return suffix if suffix.isalnum() else None


def _for_log(url: httpx.URL) -> str:
    """The URL without credentials or query (presigned URLs carry their signature there)."""
    return str(url.copy_with(userinfo=b"", query=None, fragment=None))


def _parse_url(value: str, base: httpx.URL | None = None) -> httpx.URL:
    """An absolute httpx URL, resolving a redirect's ``Location`` against ``base``."""
    try:
        return base.join(value) if base is not None else httpx.URL(value)
    except httpx.InvalidURL as exc:
        reason = Reason.HTTP_ERROR if base is not None else Reason.BAD_RECORD
        raise Rejected(reason, f"invalid url {value[:200]!r}: {exc}") from exc


def _check_status(status: int) -> None:
    """Map a non-success status to its rejection; 5xx and 429 may pass on a retry."""
    if 200 <= status < 300:
        return
    if status in _GONE_STATUSES:
        raise Rejected(Reason.NOT_FOUND, f"status {status}")
    if status == 429 or status >= 500:
        raise _Retryable(Reason.HTTP_ERROR, f"status {status}")
    raise Rejected(Reason.HTTP_ERROR, f"status {status}")


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    """The declared body size; None when absent or malformed (the read bound then decides)."""
    try:
        return int(headers[b"content-length"])
    except (KeyError, ValueError):
        return None


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None


def _local_path(uri: str) -> Path:
    """The path a ``file://`` URI or a plain path names; remote file hosts are refused."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        return Path(uri)
    if parts.netloc not in ("", "localhost"):
        raise Rejected(Reason.BLOCKED_SCHEME, f"file:// on host {parts.netloc!r}")
    return Path(unquote(parts.path))


def _s3_rejection(uri: str, exc: ClientError) -> Exception:
    """A missing or forbidden object is bad input; any other S3 error is ours to retry."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in S3_NOT_FOUND or code in _S3_NO_BUCKET:
        return Rejected(Reason.NOT_FOUND, f"s3 {code}")
    if code in _S3_DENIED:
        return Rejected(Reason.HTTP_ERROR, f"s3 {code}")
    return TransientError(f"S3 get {uri}: {exc}")


class Fetcher:
    """Fetches inputs for one worker process; its HTTP connection pool is shared by threads.

    Use as a context manager, or call ``close()``, to release pooled connections.
    """

    def __init__(self, settings: FetchSettings, allow_private_networks: bool = False,
                 s3_client: Any = None, s3_client_factory: Callable[[], Any] | None = None
                 ) -> None:
        self.settings = settings
        self._s3 = s3_client
        # Built on the first s3:// fetch only: creating a boto3 client resolves
        # credentials, which may query the instance metadata endpoint.
        self._s3_factory = s3_client_factory
        self._backend = _GuardedBackend(allow_private_networks)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=self._backend,
        )
        # Identity encoding: images are compressed already, and max_bytes then counts what
        # travels. No cookie is ever sent, so nothing accumulates or leaks across sites.
        self._headers = [(b"User-Agent", settings.user_agent.encode("latin-1")),
                         (b"Accept-Encoding", b"identity"), (b"Accept", b"*/*")]
        timeout = settings.timeout_s
        self._timeouts = {"connect": timeout, "read": timeout, "write": timeout,
                          "pool": timeout}

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._pool.close()

    def fetch(self, uri: str) -> Fetched:
        """The bytes behind ``uri``, or ``Rejected`` saying why they cannot be used."""
        try:
            scheme = urlsplit(uri).scheme.lower()
        except ValueError as exc:
            raise Rejected(Reason.BAD_RECORD, f"invalid uri: {exc}") from exc
        if scheme in URL_SCHEMES:
            return self._fetch_http(uri)
        if scheme == "s3":
            return self._fetch_s3(uri)
        if scheme in ("file", ""):
            return self._fetch_file(uri)
        raise Rejected(Reason.BLOCKED_SCHEME, f"scheme {scheme!r}")

    # http(s)

    def _fetch_http(self, uri: str) -> Fetched:
        """Follow ``uri`` within one deadline, retrying what a retry may fix while time is left."""
        url = _parse_url(uri)
        deadline = time.monotonic() + self.settings.timeout_s
        with self._backend.deadline(deadline):
            for pause in _BACKOFF_S:
                try:
                    return self._follow(url)
                except _Retryable as exc:
                    if time.monotonic() + pause >= deadline:
                        raise
                    log.info("retrying %s in %.1fs: %s", _for_log(url), pause, exc)
                    time.sleep(pause)
            return self._follow(url)

    def _follow(self, url: httpx.URL) -> Fetched:
        """Request ``url``, following redirects by hand so each hop is checked like the first."""
        seen = {url}
        for _ in range(self.settings.max_redirects + 1):
            if not url.host:
                raise Rejected(Reason.BAD_RECORD, f"no host in {_for_log(url)}")
            result = self._request(url)
            if isinstance(result, Fetched):
                return result
            if result.scheme not in URL_SCHEMES:
                raise Rejected(Reason.BLOCKED_SCHEME, f"redirect to scheme {result.scheme!r}")
            if result in seen:
                raise Rejected(Reason.TOO_MANY_REDIRECTS, f"redirect loop at {_for_log(result)}")
            seen.add(result)
            url = result
        raise Rejected(Reason.TOO_MANY_REDIRECTS,
                       f"more than {self.settings.max_redirects} redirects")

    def _request(self, url: httpx.URL) -> Fetched | httpx.URL:
        """One GET: the fetched body, or the URL a redirect points to."""
        target = httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                              target=url.raw_path)
        headers = [(b"Host", url.netloc), *self._headers]
        if url.userinfo:
            headers.append((b"Authorization", b"Basic " + base64.b64encode(
                f"{url.username}:{url.password}".encode())))
        try:
            with self._pool.stream("GET", target, headers=headers,
                                   extensions={"timeout": self._timeouts}) as response:
                fields = {k.lower(): v for k, v in response.headers}
                location = _header(fields, b"location")
                if response.status in _REDIRECT_STATUSES and location:
                    return _parse_url(location, base=url)
                _check_status(response.status)
                encoding = _header(fields, b"content-encoding")
                if encoding and encoding.strip().lower() != "identity":
                    raise Rejected(Reason.HTTP_ERROR,
                                   f"content-encoding {encoding[:40]!r}, identity was asked")
                data = self._read(response, fields)
                content_type = media_type(_header(fields, b"content-type"))
        except httpcore.TimeoutException as exc:
            raise _Retryable(Reason.TIMEOUT, str(exc) or type(exc).__name__) from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise _Retryable(Reason.CONNECTION_ERROR, str(exc) or type(exc).__name__) from exc
        return Fetched(data, content_type, _extension(url.path))

    def _read(self, response: httpcore.Response, fields: dict[bytes, bytes]) -> bytes:
        """The body, read no further than ``max_bytes``; a short body is a dropped connection."""
        limit = self.settings.max_bytes
        declared = _content_length(fields)
        if declared is not None and declared > limit:
            raise Rejected(Reason.TOO_LARGE, f"content-length {declared} > {limit} bytes")
        body = bytearray()
        try:
            for chunk in response.iter_stream():
                body += chunk
                if len(body) > limit:
                    raise Rejected(Reason.TOO_LARGE, f"body exceeds {limit} bytes")
        except httpcore.RemoteProtocolError as exc:
            raise _Retryable(Reason.CONNECTION_ERROR,
                             f"incomplete body ({len(body)} of {declared} bytes)") from exc
        if not body:
            raise Rejected(Reason.EMPTY, "empty body")
        return bytes(body)

    # s3

    def _fetch_s3(self, uri: str) -> Fetched:
        """An S3 object, refused by its ContentLength before any of the body is read."""
        if self._s3 is None and self._s3_factory is not None:
            self._s3 = self._s3_factory()
        if self._s3 is None:
            raise Rejected(Reason.BLOCKED_SCHEME, "s3:// needs an S3 client")
        bucket, _, key = uri[len("s3://"):].partition("/")
        if not bucket or not key:
            raise Rejected(Reason.BAD_RECORD, f"s3 uri without bucket or key: {uri!r}")
        try:
            obj = self._s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            raise _s3_rejection(uri, exc) from exc
        except ParamValidationError as exc:  # a name S3 could never accept
            raise Rejected(Reason.BAD_RECORD, f"s3 {exc}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"S3 get {uri}: {exc}") from exc
        with closing(obj["Body"]) as body:
            data = self._read_s3_body(uri, body, obj.get("ContentLength"))
        return Fetched(data, media_type(obj.get("ContentType")), _extension(key))

    def _read_s3_body(self, uri: str, body: Any, size: int | None) -> bytes:
        limit = self.settings.max_bytes
        if size is not None and size > limit:
            raise Rejected(Reason.TOO_LARGE, f"content-length {size} > {limit} bytes")
        try:
            data = body.read(limit + 1)
        except BotoCoreError as exc:
            raise TransientError(f"S3 read {uri}: {exc}") from exc
        return self._bounded(data)

    # local files

    def _fetch_file(self, uri: str) -> Fetched:
        """A regular local file; devices and FIFOs are refused before they are opened."""
        path = _local_path(uri)
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):
                raise Rejected(Reason.NOT_FOUND, f"not a regular file: {path}")
            if info.st_size > self.settings.max_bytes:
                raise Rejected(Reason.TOO_LARGE,
                               f"{info.st_size} > {self.settings.max_bytes} bytes")
            with path.open("rb") as f:
                # Read what stat saw (asking for ``max_bytes`` allocates that much first),
                # and on, still bounded, if the file grew since.
                data = f.read(info.st_size + 1)
                if len(data) > info.st_size:
                    data += f.read(self.settings.max_bytes + 1 - len(data))
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise Rejected(Reason.NOT_FOUND, f"no such file: {path}") from exc
        except PermissionError as exc:
            raise Rejected(Reason.NOT_FOUND, f"permission denied: {path}") from exc
        except OSError as exc:
            raise TransientError(f"reading {path}: {exc}") from exc
        return Fetched(self._bounded(data), None, _extension(path.name))

    def _bounded(self, data: bytes) -> bytes:
        """Refuse a body that grew past ``max_bytes`` after its size was checked, or is empty."""
        if len(data) > self.settings.max_bytes:
            raise Rejected(Reason.TOO_LARGE, f"more than {self.settings.max_bytes} bytes")
        if not data:
            raise Rejected(Reason.EMPTY, "empty body")
        return data
