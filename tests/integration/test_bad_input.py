"""Bad input, one job: more than thirty kinds of garbage next to good samples. Each gets its
expected status and reason, none stops the job, none reaches a shard, and nothing is written
outside the object store and the output folder."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import struct
import tarfile
import threading
import time
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import autods
from autods.embedded import WorkerProcess
from examples.sampledata import near_duplicate_bytes, structured_image
from tests.integration.conftest import service_settings

pytestmark = pytest.mark.integration

MAX_BYTES = 300_000


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _picture(seed: int, size: int = 96) -> Image.Image:
    return structured_image(seed, (size, size))


def _bomb() -> bytes:
    png = bytearray(_encode(Image.new("1", (8, 8)), "PNG"))
    png[16:24] = struct.pack(">II", 40_000, 40_000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def _exif_rotated() -> bytes:
    img = _picture(41, 120).resize((120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    return _encode(img, "JPEG", exif=exif)


def _animated_gif() -> bytes:
    frames = [_picture(50 + i).convert("P") for i in range(3)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80)


# name -> (bytes, caption, expected status, expected reason)
FOLDER_CASES: dict[str, tuple[bytes, str | None, str, str | None]] = {
    "good_a.jpg": (_encode(_picture(1), "JPEG"), "a good picture", "published", None),
    "good_b.png": (_encode(_picture(2), "PNG"), None, "published", None),
    "good_a_copy.jpg": (_encode(_picture(1), "JPEG"), "same bytes", "exact_duplicate",
                        "exact_duplicate"),
    "good_b_near.jpg": (near_duplicate_bytes(_picture(2)), None, "near_duplicate",
                        "near_duplicate"),
    "truncated.jpg": (_encode(_picture(3, 256), "JPEG")[:1500], None, "failed",
                      "corrupt_image"),
    "truncated.png": (_encode(_picture(4, 128), "PNG")[:600], None, "failed", "corrupt_image"),
    "zero.jpg": (b"", None, "failed", "empty"),
    "bomb.png": (_bomb(), None, "failed", "decompression_bomb"),
    "png_named.jpg": (_encode(_picture(5), "PNG"), None, "failed", "format_mismatch"),
    "svg_named.png": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
                      None, "failed", "not_an_image"),
    "html_named.jpg": (b"<!doctype html><html><body>hi</body></html>", None, "failed",
                       "not_an_image"),
    "random.jpg": (np.random.default_rng(0).bytes(5000), None, "failed", "not_an_image"),
    "ppm_named.bmp": (_encode(_picture(6), "PPM"), None, "failed", "unsupported_format"),
    "animated.gif": (_animated_gif(), "moving", "published", None),
    "cmyk.jpg": (_encode(_picture(7).convert("CMYK"), "JPEG"), None, "published", None),
    "sixteen.png": (_encode(Image.fromarray(
        np.asarray(_picture(8).convert("L"), dtype=np.uint16) * 257), "PNG"), None,
        "published", None),
    "exif_rotated.jpg": (_exif_rotated(), None, "published", None),
    "palette_alpha.png": (_encode(_picture(9).convert("P"), "PNG", transparency=0), None,
                          "published", None),
    "huge_caption.jpg": (_encode(_picture(10), "JPEG"), "x" * 1_000_000, "published", None),
    "control_caption.jpg": (_encode(_picture(11), "JPEG"), "bad\x00cap\x07tion\x1b[31m",
                            "published", None),
    "latin1_caption.jpg": (_encode(_picture(12), "JPEG"), None, "published", None),
}

TEXT_ROWS = [
    b'{"text": "a fine text about circles"}',
    b'{"text": "nul\\u0000 and bell\\u0007 inside"}',
    b'{"text": "caf\xe9 in latin-1"}',
    b'{"nottext": 1}',
    b'{"text": "   "}',
    b'{"text": "' + b"y" * 200_001 + b'"}',
    b"{not json",
]
TEXT_EXPECTED = [("published", None), ("published", None), ("failed", "invalid_utf8"),
                 ("failed", "bad_record"), ("failed", "empty"), ("failed", "text_too_long"),
                 ("failed", "bad_record")]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    good = _encode(_picture(30), "JPEG")

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "image/jpeg",
              length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path
        if path == "/ok.jpg":
            self._send(200, self.good)
        elif path == "/missing.jpg":
            self._send(404, b"no", "text/plain")
        elif path == "/error.jpg":
            self._send(500, b"boom", "text/plain")
        elif path == "/html.jpg":
            self._send(200, b"<html><body>login</body></html>", "image/jpeg")
        elif path == "/html-typed":
            self._send(200, self.good, "text/html")
        elif path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/drip.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(60):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.25)
            except OSError:
                pass
        elif path == "/lying.jpg":
            self._send(200, self.good[:1000], length=100_000)
            self.close_connection = True
        elif path == "/big.jpg":
            self._send(200, b"\xff" * (MAX_BYTES + 1000))
        elif path == "/svg":
            self._send(200, b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")
        else:
            self._send(404, b"", "text/plain")


URL_CASES = {  # path or full URL -> (status, reason)
    "/ok.jpg": ("published", None),
    "/missing.jpg": ("failed", "not_found"),
    "/error.jpg": ("failed", "http_error"),
    "/html.jpg": ("failed", "not_an_image"),
    "/html-typed": ("failed", "not_an_image"),
    "/loop": ("failed", "too_many_redirects"),
    "/drip.jpg": ("failed", "timeout"),
    "/lying.jpg": ("failed", "connection_error"),
    "/big.jpg": ("failed", "too_large"),
    "/svg": ("failed", "not_an_image"),
    "file:///etc/passwd": ("failed", "blocked_scheme"),
    "ftp://127.0.0.1/a.jpg": ("failed", "blocked_scheme"),
    "gopher://127.0.0.1/x": ("failed", "blocked_scheme"),
}


@pytest.fixture
def http_base():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _write_inputs(root: Path, base: str) -> None:
    folder = root / "photos"
    folder.mkdir(parents=True)
    for name, (data, caption, _, _) in FOLDER_CASES.items():
        (folder / name).write_bytes(data)
        if caption is not None:
            (folder / (name.rsplit(".", 1)[0] + ".txt")).write_text(caption)
    (folder / "latin1_caption.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (folder / "metadata.jsonl").write_text(
        json.dumps({"file_name": "good_a.jpg", "../../escape": "x", "license": "CC0-1.0"}) + "\n"
        + json.dumps({"file_name": "../outside.jpg", "caption": "never"}) + "\n"
        + "{broken json\n")
    (root / "texts.jsonl").write_bytes(b"\n".join(TEXT_ROWS) + b"\n")
    lines = ["url"] + [u if "://" in u else base + u for u in URL_CASES]
    (root / "urls.csv").write_text("\n".join(lines))


def test_thirty_kinds_of_bad_input_are_classified_and_never_leak(pg_url, tmp_path, http_base):
    _write_inputs(tmp_path / "in", http_base)
    settings = service_settings(pg_url, f"bad-{uuid.uuid4().hex[:8]}:", "unused", "unused")
    settings.storage.url, settings.storage.endpoint_url = (tmp_path / "objects").as_uri(), None
    settings.clip.enabled = False
    settings.fetch.timeout_s = 2.0
    settings.fetch.max_bytes = MAX_BYTES
    settings.fetch.max_text_chars = 200_000
    worker = WorkerProcess(settings, 2, tmp_path / "worker.log", name="bad@%h").start()
    worker.wait_ready()
    try:
        job = autods.submit([str(tmp_path / "in" / "photos"), str(tmp_path / "in" / "texts.jsonl"),
                             str(tmp_path / "in" / "urls.csv")], "bad", settings=settings,
                            output_url=(tmp_path / "out").as_uri())
        status = job.wait(timeout=240)
    finally:
        worker.stop()
    assert status.status == "succeeded", status.error

    from sqlalchemy import select

    from autods.db.models import Item
    from autods.db.session import session_scope

    with session_scope(job.runtime.engine) as db:
        items = db.execute(select(Item.uri, Item.status, Item.reason, Item.caption, Item.id)
                           .where(Item.job_id == job.id).order_by(Item.ordinal)).all()
    by_name = {uri.rsplit("/", 1)[-1]: (st, reason) for uri, st, reason, _, _ in items
               if uri.startswith("file://") and "#" not in uri}
    for name, (_, _, st, reason) in FOLDER_CASES.items():
        assert by_name[name] == (st, reason), name
    texts = [(st, reason) for uri, st, reason, _, _ in items if "texts.jsonl#" in uri]
    assert texts == TEXT_EXPECTED
    urls = {uri: (st, reason) for uri, st, reason, _, _ in items if "urls.csv" not in uri
            and not uri.startswith("file://") or uri == "file:///etc/passwd"}
    for path, expected in URL_CASES.items():
        assert urls[path if "://" in path else http_base + path] == expected, path
    captions = {uri.rsplit("/", 1)[-1]: cap for uri, _, _, cap, _ in items}
    assert len(captions["huge_caption.jpg"]) == 10_000
    assert captions["control_caption.jpg"] == "badcaption[31m"
    assert captions["latin1_caption.jpg"] is None

    published = {}
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    for entry in index["shardlist"]:
        with tarfile.open(tmp_path / "out" / entry["url"]) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(m).read())
                    assert meta["sha256"] not in published
                    published[meta["sha256"]] = meta
    good_folder = {hashlib.sha256(FOLDER_CASES[n][0]).hexdigest()
                   for n, c in FOLDER_CASES.items() if c[2] == "published"}
    good_texts = {hashlib.sha256(t.encode()).hexdigest()
                  for t in ("a fine text about circles", "nul and bell inside")}
    good_url = {hashlib.sha256(_Handler.good).hexdigest()}
    assert set(published) == good_folder | good_texts | good_url
    assert published[hashlib.sha256(FOLDER_CASES["good_a.jpg"][0]).hexdigest()]["meta"] == {
        "../../escape": "x"}

    everything = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    allowed = ("in/", "objects/", "out/", "worker.log")
    assert all(str(p).startswith(allowed) for p in everything), everything
    assert not (tmp_path / "outside.jpg").exists() and not (tmp_path.parent / "escape").exists()
    assert status.statuses["published"] == len(published)
    assert status.n_items == len(FOLDER_CASES) + len(TEXT_ROWS) + len(URL_CASES)
