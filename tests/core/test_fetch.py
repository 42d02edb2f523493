"""Fetcher against a real local HTTP server, a moto S3 server and local files.

The HTTP server runs on 127.0.0.1, so most tests allow private networks; the SSRF tests
turn the guard on and check that nothing is sent to a refused address.
"""

from __future__ import annotations

import base64
import collections
import gzip
import io
import ipaddress
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from PIL import Image

from autods.config import FetchSettings
from autods.core import fetch as fetch_module
from autods.core.fetch import Fetcher
from autods.core.records import Fetched, Reason, Rejected, TransientError
from autods.core.validate import validate_image

TIMEOUT_S = 1.5
MAX_BYTES = 20_000
SETTINGS = FetchSettings(timeout_s=TIMEOUT_S, max_bytes=MAX_BYTES, max_redirects=3)


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    return buf.getvalue()


PNG = png_bytes()
HTML = b"<!doctype html><html><body>Sorry, this image is gone</body></html>"


class Handler(BaseHTTPRequestHandler):
    """Routes by path; every request is logged on the server for the tests to inspect."""

    protocol_version = "HTTP/1.1"
    server: TestServer

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self.server.requests.append(self.path)
        parts = urlsplit(self.path)
        route = getattr(self, "route_" + parts.path.strip("/").split("/")[0].replace("-", "_"),
                        None)
        if route is None:
            self.send_body(404, b"no such route", "text/plain")
        else:
            route(parts.path, parse_qs(parts.query))

    def send_body(self, status: int, body: bytes, ctype: str | None = None,
                  headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str, status: int = 302) -> None:
        self.send_body(status, b"", headers={"Location": location})

    def route_img(self, path, query):
        self.send_body(200, PNG, "Image/PNG; charset=binary")

    def route_hangup(self, path, query):
        """An image, then the connection closed without saying so first (no
        ``Connection: close``): the client keeps it, and its next request there fails."""
        self.send_body(200, PNG, "image/png")
        self.close_connection = True

    def route_status(self, path, query):
        self.send_body(int(path.rsplit("/", 1)[1]), b"status page", "text/plain")

    def route_flaky(self, path, query):
        key = query["id"][0]
        self.server.hits[key] += 1
        if self.server.hits[key] == 1:
            self.send_body(500, b"try again", "text/plain")
        else:
            self.send_body(200, PNG, "image/png")

    def route_chain(self, path, query):
        left = int(path.rsplit("/", 1)[1])
        self.redirect(f"/chain/{left - 1}" if left > 1 else "/img/from-chain.png")

    def route_relative(self, path, query):
        self.redirect("../img/relative.png", 301)

    def route_loop(self, path, query):
        self.redirect("/loop/b" if path.endswith("/a") else "/loop/a")

    def route_to_file(self, path, query):
        self.redirect("file:///etc/passwd")

    def route_to_metadata(self, path, query):
        self.redirect("http://169.254.169.254/latest/meta-data/", 307)

    def route_drip(self, path, query):
        """Headers at once, then one byte every 50 ms, never finishing."""
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "10000")
        self.end_headers()
        self.drip(b"x" * 10_000)

    def route_drip_headers(self, path, query):
        """A status line, then header bytes every 50 ms, never finishing the headers."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        self.drip(b"X-Slow: " + b"x" * 10_000)

    def drip(self, data: bytes) -> None:
        self.close_connection = True
        for i in range(len(data)):
            if self.server.stopping.wait(0.05):
                return
            try:
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
            except OSError:
                return

    def route_liar(self, path, query):
        """Declares 1000 bytes, sends 10, closes."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(PNG[:10])

    def route_big(self, path, query):
        self.send_body(200, b"\0" * (MAX_BYTES * 3), "image/png")

    def route_big_unsized(self, path, query):
        """A close-delimited body: no Content-Length to refuse it by."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Connection", "close")
        self.end_headers()
        for _ in range(6):
            self.wfile.write(b"\0" * 10_000)

    def route_empty(self, path, query):
        self.send_body(200, b"", "image/png")

    def route_gzipped(self, path, query):
        """Compressed although identity was asked for."""
        self.send_body(200, gzip.compress(PNG), "image/png", {"Content-Encoding": "gzip"})

    def route_private(self, path, query):
        self.server.cookies.append(self.headers.get("Cookie"))
        expected = "Basic " + base64.b64encode(b"ann:p@ss word").decode()
        if self.headers.get("Authorization") == expected:
            self.send_body(200, PNG, "image/png", {"Set-Cookie": "session=1"})
        else:
            self.send_body(401, b"who are you", "text/plain")

    def route_html_as_jpeg(self, path, query):
        self.send_body(200, HTML, "image/jpeg")


class TestServer(ThreadingHTTPServer):
    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[str] = []
        self.hits: collections.Counter[str] = collections.Counter()
        self.cookies: list[str | None] = []
        self.stopping = threading.Event()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def server() -> Iterator[TestServer]:
    srv = TestServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.stopping.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def fetcher() -> Iterator[Fetcher]:
    with Fetcher(SETTINGS, allow_private_networks=True) as f:
        yield f


@pytest.fixture
def guarded() -> Iterator[Fetcher]:
    with Fetcher(SETTINGS, allow_private_networks=False) as f:
        yield f


def rejection(fetcher: Fetcher, uri: str) -> Rejected:
    with pytest.raises(Rejected) as info:
        fetcher.fetch(uri)
    return info.value


def sent_to(server: TestServer, prefix: str) -> int:
    return sum(1 for path in server.requests if path.startswith(prefix))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# http


def test_fetches_image_with_normalised_type_and_extension(fetcher, server):
    got = fetcher.fetch(f"{server.base}/img/Cat.PNG?size=large#top")
    assert got == Fetched(PNG, "image/png", "png")


def test_missing_and_gone_are_not_found(fetcher, server):
    for status in (404, 410):
        err = rejection(fetcher, f"{server.base}/status/{status}")
        assert (err.reason, err.detail) == (Reason.NOT_FOUND, f"status {status}")


def test_other_client_errors_are_not_retried(fetcher, server):
    err = rejection(fetcher, f"{server.base}/status/403")
    assert (err.reason, err.detail) == (Reason.HTTP_ERROR, "status 403")
    assert sent_to(server, "/status/403") == 1


def test_server_error_is_retried_then_succeeds(fetcher, server):
    got = fetcher.fetch(f"{server.base}/flaky/pic.png?id=once")
    assert got.data == PNG
    assert server.hits["once"] == 2


@pytest.mark.parametrize("status", [503, 429])
def test_persistent_server_error_gives_up_after_three_attempts(fetcher, server, status):
    before = sent_to(server, f"/status/{status}")
    start = time.monotonic()
    err = rejection(fetcher, f"{server.base}/status/{status}")
    assert (err.reason, err.detail) == (Reason.HTTP_ERROR, f"status {status}")
    assert sent_to(server, f"/status/{status}") - before == 3
    assert time.monotonic() - start >= 0.6  # backoff 0.2 s + 0.4 s


def test_connection_refused_is_a_connection_error():
    with Fetcher(SETTINGS, allow_private_networks=True) as f:
        err = rejection(f, f"http://127.0.0.1:{free_port()}/x.png")
    assert err.reason == Reason.CONNECTION_ERROR


def test_redirect_chain_is_followed(fetcher, server):
    got = fetcher.fetch(f"{server.base}/chain/3")
    assert got == Fetched(PNG, "image/png", "png")  # extension of the final URL
    assert fetcher.fetch(f"{server.base}/relative/x").data == PNG


def test_too_many_redirects(fetcher, server):
    err = rejection(fetcher, f"{server.base}/chain/4")
    assert err.reason == Reason.TOO_MANY_REDIRECTS
    assert sent_to(server, "/chain/4") == 1
    assert "more than 3" in err.detail


def test_redirect_loop_ends(fetcher, server):
    err = rejection(fetcher, f"{server.base}/loop/a")
    assert err.reason == Reason.TOO_MANY_REDIRECTS
    assert "loop" in err.detail


def test_redirect_to_file_is_refused(fetcher, server):
    err = rejection(fetcher, f"{server.base}/to-file")
    assert (err.reason, err.detail) == (Reason.BLOCKED_SCHEME, "redirect to scheme 'file'")


@pytest.mark.timeout(10)
def test_drip_feeding_server_is_cut_at_the_deadline(fetcher, server):
    start = time.monotonic()
    err = rejection(fetcher, f"{server.base}/drip")
    elapsed = time.monotonic() - start
    assert err.reason == Reason.TIMEOUT
    assert TIMEOUT_S - 0.1 < elapsed < TIMEOUT_S + 1.0


@pytest.mark.timeout(10)
def test_drip_fed_headers_are_cut_at_the_deadline(fetcher, server):
    start = time.monotonic()
    err = rejection(fetcher, f"{server.base}/drip-headers")
    assert err.reason == Reason.TIMEOUT
    assert time.monotonic() - start < TIMEOUT_S + 1.0


@pytest.mark.timeout(10)
def test_deadline_is_per_thread_on_a_shared_fetcher(fetcher, server):
    with ThreadPoolExecutor(max_workers=8) as pool:
        slow = pool.submit(rejection, fetcher, f"{server.base}/drip")
        time.sleep(0.2)
        quick = [pool.submit(fetcher.fetch, f"{server.base}/img/{i}.png") for i in range(20)]
        assert all(f.result().data == PNG for f in quick)
        assert not slow.done()
        assert slow.result().reason == Reason.TIMEOUT


def test_lying_content_length_is_an_incomplete_body(fetcher, server):
    err = rejection(fetcher, f"{server.base}/liar")
    assert err.reason == Reason.CONNECTION_ERROR
    assert err.detail == "incomplete body (10 of 1000 bytes)"


def test_declared_oversize_is_refused_without_reading(fetcher, server):
    err = rejection(fetcher, f"{server.base}/big")
    assert (err.reason, err.detail) == (
        Reason.TOO_LARGE, f"content-length {MAX_BYTES * 3} > {MAX_BYTES} bytes")


def test_undeclared_oversize_stops_reading_at_the_limit(fetcher, server):
    err = rejection(fetcher, f"{server.base}/big-unsized")
    assert (err.reason, err.detail) == (Reason.TOO_LARGE, f"body exceeds {MAX_BYTES} bytes")


def test_empty_body(fetcher, server):
    assert rejection(fetcher, f"{server.base}/empty").reason == Reason.EMPTY


def test_a_body_compressed_against_the_request_is_refused(fetcher, server):
    err = rejection(fetcher, f"{server.base}/gzipped/a.png")
    assert (err.reason, err.detail) == (Reason.HTTP_ERROR,
                                        "content-encoding 'gzip', identity was asked")


def test_credentials_in_the_url_are_sent_as_basic_auth(fetcher, server):
    assert fetcher.fetch(f"http://ann:p%40ss%20word@{server.base[7:]}/private/a.png").data == PNG
    assert rejection(fetcher, f"{server.base}/private/a.png").reason == Reason.HTTP_ERROR


def test_cookies_set_by_a_server_are_never_sent_back(fetcher, server):
    url = f"http://ann:p%40ss%20word@{server.base[7:]}/private/a.png"
    before = len(server.cookies)
    for _ in range(2):
        assert fetcher.fetch(url).data == PNG  # each answer sets a cookie
    assert server.cookies[before:] == [None, None]


def test_non_ascii_paths_are_percent_encoded(fetcher, server):
    before = len(server.requests)
    assert fetcher.fetch(f"{server.base}/img/café 1.png").data == PNG
    assert server.requests[before:] == ["/img/caf%C3%A9%201.png"]


def test_html_served_as_jpeg_is_fetched_then_refused_by_validation(fetcher, server):
    got = fetcher.fetch(f"{server.base}/html-as-jpeg/photo.jpg")
    assert got == Fetched(HTML, "image/jpeg", "jpg")
    with pytest.raises(Rejected) as info:
        validate_image(got.data, got.declared_ext, got.content_type, 10**6)
    assert info.value.reason == Reason.NOT_AN_IMAGE


@pytest.fixture
def connects(monkeypatch) -> list[str]:
    """The address of every connection the fetcher's connector opens."""
    opened: list[str] = []
    real = fetch_module._GuardedConnector._connect

    def counting(self, *args):
        opened.append(args[0])
        return real(self, *args)

    monkeypatch.setattr(fetch_module._GuardedConnector, "_connect", counting)
    return opened


def test_connections_are_pooled(server, connects):
    with Fetcher(SETTINGS, allow_private_networks=True) as f:
        for _ in range(3):
            f.fetch(f"{server.base}/img/a.png")
    assert connects == ["127.0.0.1"]


def test_a_kept_connection_the_server_closed_is_replaced_once(server, connects, caplog):
    caplog.set_level(logging.INFO, logger="autods.core.fetch")
    with Fetcher(SETTINGS, allow_private_networks=True) as f:
        before = len(server.requests)
        for _ in range(3):
            assert f.fetch(f"{server.base}/hangup/a.png").data == PNG
    assert connects == ["127.0.0.1"] * 3  # each kept connection was found closed
    assert server.requests[before:] == ["/hangup/a.png"] * 3  # and nothing sent twice
    assert "retrying" not in caplog.text  # replaced at once, not after a failed attempt


@pytest.mark.parametrize(
    "uri",
    ["ftp://example.com/a.jpg", "gopher://example.com/", "data:image/png;base64,iVBORw0KGgo=",
     "javascript:alert(1)", "file://fileserver/share/a.png"],
)
def test_other_schemes_are_blocked(fetcher, uri):
    assert rejection(fetcher, uri).reason == Reason.BLOCKED_SCHEME


def test_url_without_host_is_a_bad_record(fetcher):
    assert rejection(fetcher, "http:///a.png").reason == Reason.BAD_RECORD


# SSRF guard


@pytest.fixture
def no_traffic(monkeypatch):
    """Fail the test if anything opens a TCP connection."""

    def refuse(sock, address):
        raise AssertionError(f"connection attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/img/a.png",
        "http://localhost:{port}/img/a.png",
        "http://10.0.0.1/a.png",
        "http://192.168.1.1/a.png",
        "https://172.16.5.4/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/img/a.png",
        "http://0.0.0.0:{port}/img/a.png",
        "http://[::]/a.png",
        "http://[::ffff:127.0.0.1]:{port}/img/a.png",
        "http://[fe80::1]/a.png",
        "http://[fd00::1]/a.png",
        "http://224.0.0.1/a.png",
        "http://100.64.0.1/a.png",
        "http://2130706433/a.png",  # 127.0.0.1 as a decimal integer
    ],
)
def test_internal_addresses_are_refused_without_traffic(guarded, server, no_traffic, url):
    before = len(server.requests)
    err = rejection(guarded, url.format(port=server.server_address[1]))
    assert err.reason == Reason.BLOCKED_PRIVATE_ADDRESS
    assert len(server.requests) == before


def fake_dns(monkeypatch, answers: dict[str, list[str]]) -> list[str]:
    """Resolve the given names to the given addresses; everything else as usual.

    Returns the names looked up, in order.
    """
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        if host not in answers:
            return real(host, port, *args, **kwargs)
        if not answers[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_name_with_any_internal_address_is_refused(guarded, no_traffic, monkeypatch):
    fake_dns(monkeypatch, {"cdn.example": ["93.184.216.34", "10.1.2.3"]})
    err = rejection(guarded, "https://cdn.example/a.png")
    assert (err.reason, err.detail) == (
        Reason.BLOCKED_PRIVATE_ADDRESS, "cdn.example resolves to 10.1.2.3")


def test_unresolvable_host(guarded, no_traffic, monkeypatch):
    fake_dns(monkeypatch, {"nowhere.invalid": []})
    assert rejection(guarded, "http://nowhere.invalid/a.png").reason == Reason.UNRESOLVABLE_HOST


def test_connects_to_the_address_it_checked(guarded, server, monkeypatch):
    """One lookup per connection: a second answer (DNS rebinding) is never consulted."""
    asked = fake_dns(monkeypatch, {"images.example": ["127.0.0.1"]})
    monkeypatch.setattr(fetch_module, "_is_public",
                        lambda ip: ip == ipaddress.ip_address("127.0.0.1"))
    got = guarded.fetch(f"http://images.example:{server.server_address[1]}/img/a.png")
    assert got.data == PNG
    assert asked.count("images.example") == 1


def test_every_redirect_hop_is_checked(guarded, server, monkeypatch):
    monkeypatch.setattr(fetch_module, "_is_public",
                        lambda ip: ip == ipaddress.ip_address("127.0.0.1"))
    assert guarded.fetch(f"{server.base}/chain/2").data == PNG  # hops to 127.0.0.1 pass
    err = rejection(guarded, f"{server.base}/to-metadata")
    assert (err.reason, err.detail) == (
        Reason.BLOCKED_PRIVATE_ADDRESS, "169.254.169.254 resolves to 169.254.169.254")


@pytest.mark.parametrize(
    ("address", "public"),
    [("93.184.216.34", True), ("2606:4700:4700::1111", True), ("127.8.9.1", False),
     ("::ffff:10.0.0.1", False), ("255.255.255.255", False), ("240.0.0.1", False)],
)
def test_public_address_rule(address, public):
    assert fetch_module._is_public(ipaddress.ip_address(address)) is public


# local files


def test_local_path_and_file_uri(fetcher, tmp_path):
    path = tmp_path / "dir with space" / "Photo.JPG"
    path.parent.mkdir()
    path.write_bytes(PNG)
    assert fetcher.fetch(str(path)) == Fetched(PNG, None, "jpg")
    assert fetcher.fetch(path.as_uri()) == Fetched(PNG, None, "jpg")
    assert fetcher.fetch(f"file://localhost{path.as_uri()[7:]}").data == PNG


def test_local_rejections(fetcher, tmp_path):
    (tmp_path / "big.png").write_bytes(b"\0" * (MAX_BYTES + 1))
    (tmp_path / "empty.png").write_bytes(b"")
    assert rejection(fetcher, str(tmp_path / "missing.png")).reason == Reason.NOT_FOUND
    assert rejection(fetcher, (tmp_path / "missing.png").as_uri()).reason == Reason.NOT_FOUND
    assert rejection(fetcher, str(tmp_path)).reason == Reason.NOT_FOUND
    assert rejection(fetcher, str(tmp_path / "big.png")).reason == Reason.TOO_LARGE
    assert rejection(fetcher, str(tmp_path / "empty.png")).reason == Reason.EMPTY


def test_fifo_is_refused_without_blocking(fetcher, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert rejection(fetcher, str(fifo)).reason == Reason.NOT_FOUND


# s3


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="inputs")
    client.put_object(Bucket="inputs", Key="cats/one cat.PNG", Body=PNG,
                      ContentType="image/png")
    client.put_object(Bucket="inputs", Key="cats/big.png", Body=b"\0" * (MAX_BYTES + 1))
    client.put_object(Bucket="inputs", Key="cats/empty.png", Body=b"")
    return client


@pytest.fixture(scope="module")
def s3_fetcher(s3) -> Iterator[Fetcher]:
    with Fetcher(SETTINGS, s3_client=s3) as f:
        yield f


def test_s3_object(s3_fetcher):
    assert s3_fetcher.fetch("s3://inputs/cats/one cat.PNG") == Fetched(PNG, "image/png", "png")


def test_s3_rejections(s3_fetcher):
    err = rejection(s3_fetcher, "s3://inputs/cats/missing.png")
    assert (err.reason, err.detail) == (Reason.NOT_FOUND, "s3 NoSuchKey")
    assert rejection(s3_fetcher, "s3://inputs/cats/big.png").reason == Reason.TOO_LARGE
    assert rejection(s3_fetcher, "s3://inputs/cats/empty.png").reason == Reason.EMPTY
    assert rejection(s3_fetcher, "s3://inputs").reason == Reason.BAD_RECORD


def test_s3_missing_bucket_is_a_missing_object_not_an_outage(s3_fetcher):
    err = rejection(s3_fetcher, "s3://no-such-bucket/a.png")
    assert (err.reason, err.detail) == (Reason.NOT_FOUND, "s3 NoSuchBucket")
    assert rejection(s3_fetcher, "s3://Not_A_Bucket/a.png").reason in (
        Reason.NOT_FOUND, Reason.BAD_RECORD)


def test_s3_unreachable_is_transient():
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{_closed_port()}",
                          region_name="us-east-1",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    with Fetcher(SETTINGS, s3_client=client) as f, pytest.raises(TransientError):
        f.fetch("s3://inputs/a.png")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_s3_without_client_is_blocked(fetcher):
    assert rejection(fetcher, "s3://inputs/a.png").reason == Reason.BLOCKED_SCHEME
