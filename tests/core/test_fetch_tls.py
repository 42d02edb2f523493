"""Fetcher over TLS against a real local HTTPS server with a certificate made here: the
handshake verifies it, the connection is pooled, and the fetch deadline bounds the
encrypted socket as it bounds a plain one."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from autods.core import fetch as fetch_module
from autods.core.fetch import Fetcher
from autods.core.records import Reason, Rejected
from tests.core.test_fetch import PNG, SETTINGS, TIMEOUT_S, TestServer


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificates(folder: Path) -> tuple[bytes, Path, Path]:
    """A CA (its PEM) and a certificate it signed for 127.0.0.1 (files of cert and key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("autods test CA"))
          .issuer_name(_name("autods test CA")).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(2).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca.public_bytes(serialization.Encoding.PEM), cert_file, key_file


class TlsServer(TestServer):
    """The fetch tests' server, each accepted connection wrapped in TLS."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self.context = context

    def get_request(self):
        sock, address = super().get_request()
        return self.context.wrap_socket(sock, server_side=True), address

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Iterator[tuple[TlsServer, bytes]]:
    ca, cert, key = _certificates(tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    srv = TlsServer(context)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, ca
    srv.stopping.set()
    srv.shutdown()
    srv.server_close()


def trusting(ca: bytes) -> Fetcher:
    """A fetcher that also trusts the test CA (its context is its own)."""
    fetcher = Fetcher(SETTINGS, allow_private_networks=True)
    fetcher._pool._ssl_context.load_verify_locations(cadata=ca.decode())
    return fetcher


def test_fetches_over_tls_on_one_pooled_connection(tls, monkeypatch):
    server, ca = tls
    opened = []
    real = fetch_module._GuardedConnector._connect

    def counting(self, *args):
        opened.append(args[0])
        return real(self, *args)

    monkeypatch.setattr(fetch_module._GuardedConnector, "_connect", counting)
    with trusting(ca) as fetcher:
        for i in range(3):
            got = fetcher.fetch(f"{server.base}/img/{i}.png")
            assert (got.data, got.content_type, got.declared_ext) == (PNG, "image/png", "png")
    assert opened == ["127.0.0.1"]


def test_a_certificate_nobody_vouches_for_is_refused_before_any_request(tls):
    server, _ = tls
    before = len(server.requests)
    with Fetcher(SETTINGS, allow_private_networks=True) as fetcher, \
            pytest.raises(Rejected) as info:
        fetcher.fetch(f"{server.base}/img/a.png")
    assert info.value.reason == Reason.CONNECTION_ERROR
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.detail
    assert server.requests[before:] == []


@pytest.mark.timeout(10)
def test_drip_fed_headers_over_tls_are_cut_at_the_deadline(tls):
    server, ca = tls
    start = time.monotonic()
    with trusting(ca) as fetcher, pytest.raises(Rejected) as info:
        fetcher.fetch(f"{server.base}/drip-headers")
    assert info.value.reason == Reason.TIMEOUT
    assert time.monotonic() - start < TIMEOUT_S + 1.0
