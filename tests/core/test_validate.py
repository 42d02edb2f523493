"""Image and text validation: formats and modes accepted, every rejection with its reason."""

from __future__ import annotations

import io
import os
import struct
import zlib

import pytest
from PIL import Image, ImageFile

from autods.core.hashing import image_features
from autods.core.records import Reason, Rejected
from autods.core.validate import clean_caption, validate_image, validate_text

MAX_PIXELS = 1_000_000


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def noise(mode: str = "RGB", size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Random pixels, so compressed data is large enough to cut in the middle."""
    channels = len(Image.new(mode, (1, 1)).getbands())
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * channels))


def rejected(reason: Reason, data: bytes, ext: str | None = None, ctype: str | None = None,
             max_pixels: int = MAX_PIXELS) -> Rejected:
    with pytest.raises(Rejected) as info:
        validate_image(data, ext, ctype, max_pixels)
    assert info.value.reason == reason, info.value
    return info.value


def with_ihdr_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR claiming another size, CRC fixed so the header is valid."""
    ihdr = bytearray(png[8 : 8 + 25])  # length(4) type(4) data(13) crc(4)
    ihdr[8:16] = struct.pack(">II", width, height)
    ihdr[21:25] = struct.pack(">I", zlib.crc32(bytes(ihdr[4:21])))
    return png[:8] + bytes(ihdr) + png[33:]


def animated_gif() -> bytes:
    frames = [Image.new("P", (16, 16), color) for color in (1, 2, 3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)


@pytest.mark.parametrize(
    ("data", "fmt", "mode", "ext", "mime"),
    [
        (encode(noise("RGB"), "JPEG"), "JPEG", "RGB", "jpg", "image/jpeg"),
        (encode(noise("L"), "JPEG"), "JPEG", "L", "jpg", "image/jpeg"),
        (encode(noise("CMYK"), "JPEG"), "JPEG", "CMYK", "jpg", "image/jpeg"),
        (encode(noise("RGB"), "MPO", save_all=True, append_images=[noise("RGB")]),
         "JPEG", "RGB", "jpg", "image/jpeg"),
        (encode(noise("RGB"), "PNG"), "PNG", "RGB", "png", "image/png"),
        (encode(noise("RGBA"), "PNG"), "PNG", "RGBA", "png", "image/png"),
        (encode(noise("LA"), "PNG"), "PNG", "LA", "png", "image/png"),
        (encode(noise("L"), "PNG"), "PNG", "L", "png", "image/png"),
        (encode(noise("P"), "PNG", transparency=0), "PNG", "P", "png", "image/png"),
        (encode(Image.new("I;16", (64, 48), 40_000), "PNG"), "PNG", "I;16", "png", "image/png"),
        (encode(noise("RGB"), "WEBP"), "WEBP", "RGB", "webp", "image/webp"),
        (encode(noise("RGBA"), "WEBP", lossless=True), "WEBP", "RGBA", "webp", "image/webp"),
        (encode(noise("P"), "GIF"), "GIF", "P", "gif", "image/gif"),
        (encode(noise("RGB"), "BMP"), "BMP", "RGB", "bmp", "image/bmp"),
        (encode(noise("RGB"), "TIFF"), "TIFF", "RGB", "tiff", "image/tiff"),
        (encode(noise("CMYK"), "TIFF", compression="tiff_deflate"), "TIFF", "CMYK", "tiff",
         "image/tiff"),
    ],
    ids=["jpeg", "jpeg-l", "jpeg-cmyk", "mpo", "png", "png-rgba", "png-la", "png-l",
         "png-p-transparency", "png-16bit", "webp", "webp-rgba", "gif", "bmp", "tiff",
         "tiff-cmyk"],
)
def test_supported_images_report_header_facts(data, fmt, mode, ext, mime):
    info = validate_image(data, ext, mime, MAX_PIXELS)
    assert (info.format, info.mode, info.ext, info.mime) == (fmt, mode, ext, mime)
    assert (info.width, info.height) == (64, 48)
    assert (image_features(data).width, image_features(data).height) == (64, 48)


def test_animated_gif_is_accepted():
    info = validate_image(animated_gif(), "gif", "image/gif", MAX_PIXELS)
    assert (info.format, info.ext, info.width, info.height) == ("GIF", "gif", 16, 16)


def test_missing_extension_and_octet_stream_say_nothing():
    data = encode(noise(), "PNG")
    for ctype in (None, "", "application/octet-stream", "Binary/Octet-Stream"):
        assert validate_image(data, None, ctype, MAX_PIXELS).ext == "png"
    assert validate_image(data, "bin", None, MAX_PIXELS).ext == "png"  # not an image ext
    assert validate_image(data, "PNG", "IMAGE/PNG; charset=binary", MAX_PIXELS).ext == "png"
    assert validate_image(encode(noise(), "JPEG"), "jpeg", "image/jpg", MAX_PIXELS).ext == "jpg"


def test_truncated_jpeg_passes_header_checks_but_not_the_hashing_decode():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = encode(noise(size=(256, 256)), "JPEG", quality=95)
    cut = data[: len(data) // 2]
    assert validate_image(cut, "jpg", "image/jpeg", MAX_PIXELS).format == "JPEG"
    with pytest.raises(Rejected) as info:
        image_features(cut)
    assert info.value.reason == Reason.CORRUPT_IMAGE
    assert "truncated" in info.value.detail


def test_truncated_png_is_corrupt():
    data = encode(noise(size=(128, 128)), "PNG")
    err = rejected(Reason.CORRUPT_IMAGE, data[: len(data) // 2], "png")
    assert "verify failed" in err.detail


def test_png_with_a_damaged_chunk_is_corrupt():
    data = bytearray(encode(noise(size=(128, 128)), "PNG"))
    data[len(data) // 2] ^= 0xFF  # inside IDAT: its CRC no longer matches
    err = rejected(Reason.CORRUPT_IMAGE, bytes(data), "png")
    assert "broken PNG" in err.detail


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", Reason.EMPTY),
        (os.urandom(4096), Reason.NOT_AN_IMAGE),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
         Reason.NOT_AN_IMAGE),
        (b"<!doctype html><html><body>Not found</body></html>", Reason.NOT_AN_IMAGE),
        (encode(noise(), "PPM"), Reason.UNSUPPORTED_FORMAT),
        (encode(noise(size=(32, 32)), "ICO"), Reason.UNSUPPORTED_FORMAT),
    ],
    ids=["zero-bytes", "random-bytes", "svg", "html", "ppm", "ico"],
)
def test_non_images_and_unsupported_formats(data, reason):
    rejected(reason, data)


def test_unsupported_format_names_it():
    assert rejected(Reason.UNSUPPORTED_FORMAT, encode(noise(), "PPM")).detail == "format PPM"


def test_header_claiming_too_many_pixels_is_a_bomb_beyond_pillows_limit():
    png = with_ihdr_size(encode(Image.new("1", (8, 8)), "PNG"), 30_000, 30_000)
    rejected(Reason.DECOMPRESSION_BOMB, png, max_pixels=10**12)


def test_header_claiming_too_many_pixels_is_a_bomb_beyond_max_pixels():
    png = with_ihdr_size(encode(Image.new("1", (8, 8)), "PNG"), 5_000, 5_000)
    err = rejected(Reason.DECOMPRESSION_BOMB, png, max_pixels=10_000_000)
    assert err.detail == "5000x5000 = 25000000 pixels > 10000000"


def test_a_real_large_paletted_png_is_refused_before_decoding():
    png = encode(Image.new("P", (4_000, 4_000)), "PNG")
    assert len(png) < 100_000
    rejected(Reason.DECOMPRESSION_BOMB, png, max_pixels=1_000_000)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_as_error_is_mapped():
    png = with_ihdr_size(encode(Image.new("1", (8, 8)), "PNG"), 10_000, 10_000)
    rejected(Reason.DECOMPRESSION_BOMB, png, max_pixels=10**12)


def test_lying_extension_is_a_mismatch():
    err = rejected(Reason.FORMAT_MISMATCH, encode(noise(), "JPEG"), "png")
    assert err.detail == "declared png, actual jpeg"
    assert rejected(Reason.FORMAT_MISMATCH, encode(noise(), "PNG"), "JPG").detail == (
        "declared JPG, actual png")


def test_lying_image_content_type_is_a_mismatch():
    err = rejected(Reason.FORMAT_MISMATCH, encode(noise(), "JPEG"), None, "image/png")
    assert err.detail == "declared image/png, actual jpeg"
    rejected(Reason.FORMAT_MISMATCH, encode(noise(), "PNG"), None, "image/svg+xml")


def test_non_image_content_type_rejects_even_real_image_bytes():
    err = rejected(Reason.NOT_AN_IMAGE, encode(noise(), "PNG"), "png", "text/html; charset=utf-8")
    assert err.detail == "content-type text/html"


def test_validate_text_returns_clean_text():
    assert validate_text("héllo\nwörld\t!\r\n".encode(), 100) == "héllo\nwörld\t!\r\n"
    assert validate_text(b"\xef\xbb\xbfwith bom", 100) == "with bom"
    assert validate_text(b"a\x00b\x07c\x1bd\x7f", 100) == "abcd\x7f"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"caf\xe9", Reason.INVALID_UTF8),  # latin-1
        (b"\xc0\xaf", Reason.INVALID_UTF8),  # overlong
        (b"\xed\xa0\x80", Reason.INVALID_UTF8),  # encoded surrogate
        (b"", Reason.EMPTY),
        (b"\xef\xbb\xbf", Reason.EMPTY),
        (b" \n\t\x00\x01 ", Reason.EMPTY),
        (b"x" * 11, Reason.TEXT_TOO_LONG),
    ],
    ids=["latin1", "overlong", "surrogate", "empty", "bom-only", "blank", "too-long"],
)
def test_validate_text_rejections(data, reason):
    with pytest.raises(Rejected) as info:
        validate_text(data, 10)
    assert info.value.reason == reason


def test_invalid_utf8_says_where():
    with pytest.raises(Rejected) as info:
        validate_text(b"ok \xff", 10)
    assert info.value.detail == "byte 3: invalid start byte"


def test_text_length_counts_characters_after_cleaning():
    assert validate_text(("é" * 10).encode() + b"\x00" * 5, 10) == "é" * 10


def test_clean_caption():
    assert clean_caption(None) is None
    assert clean_caption("") is None
    assert clean_caption(" \x00\x01\r ") is None
    assert clean_caption("  a\x00 cat\r\n\ton a mat\x1b ") == "a cat\n\ton a mat"
    assert clean_caption("cafe\u0301") == "caf\u00e9"  # NFC
    assert clean_caption("lone \ud800surrogate") == "lone surrogate"
    assert clean_caption("abcdef   ghi", max_chars=8) == "abcdef"
    assert clean_caption("x" * 20_000) == "x" * 10_000
