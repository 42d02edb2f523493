"""Decide whether fetched bytes are an image or a text record that autods keeps.

Image validation reads headers (format, mode, size) and chunk checksums only; pixels are
decoded once, later, in preprocessing. That order is what makes the pixel limit a defence:
a decompression bomb is refused before a single row of it is decoded.
"""

from __future__ import annotations

import posixpath
import re
import struct
import unicodedata
from io import BytesIO

from PIL import Image, UnidentifiedImageError

from autods.core.records import ImageInfo, Reason, Rejected

# Supported Pillow formats -> (extension of the shard member, MIME type).
_FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tiff", "image/tiff"),
}
# Camera JPEGs carrying extra frames (MPO) are JPEG files to every reader.
_FORMAT_ALIASES = {"MPO": "JPEG"}
_EXTENSION_FORMATS = {
    "jpg": "JPEG", "jpeg": "JPEG", "jpe": "JPEG", "jfif": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "gif": "GIF",
    "bmp": "BMP",
    "tif": "TIFF", "tiff": "TIFF",
}
#: File extensions (lower case, no dot) read as images, wherever a name is all there is.
IMAGE_EXTENSIONS = frozenset(_EXTENSION_FORMATS)
_MIME_FORMATS = {
    "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/pjpeg": "JPEG",
    "image/png": "PNG", "image/x-png": "PNG", "image/apng": "PNG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
    "image/bmp": "BMP", "image/x-bmp": "BMP", "image/x-ms-bmp": "BMP",
    "image/tiff": "TIFF",
}
# Content types that say nothing about the bytes (S3's default is binary/octet-stream).
_UNTYPED = frozenset({"application/octet-stream", "binary/octet-stream"})
# What Pillow raises on malformed image data besides UnidentifiedImageError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)

# C0 controls other than \t \n \r (text) or \t \n (captions), and lone surrogates, which
# could not be written out as UTF-8.
_TEXT_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
#: A lone surrogate (a JSON "\udcff" escape): no UTF-8 text, and no database, can hold it.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_CAPTION_DROPPED = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff]")


def media_type(content_type: str | None) -> str | None:
    """``Image/PNG; charset=x`` -> ``image/png``; None when absent or blank."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media or None


def _check_declared_image(media: str | None) -> None:
    """A server that calls the bytes text/html (or any non-image type) is not serving an
    image, even if the bytes happen to decode as one."""
    if media and not media.startswith("image/") and media not in _UNTYPED:
        raise Rejected(Reason.NOT_AN_IMAGE, f"content-type {media}")


def _open(data: bytes) -> Image.Image:
    """The image with its header read and no pixel decoded."""
    try:
        return Image.open(BytesIO(data))
    except UnidentifiedImageError as exc:
        raise Rejected(Reason.NOT_AN_IMAGE, "no known image format") from exc
    except _BOMB_ERRORS as exc:
        raise Rejected(Reason.DECOMPRESSION_BOMB, str(exc)) from exc
    except _DECODE_ERRORS as exc:
        raise Rejected(Reason.CORRUPT_IMAGE, f"unreadable header: {exc}") from exc


def _check_format_claims(actual: str, declared_ext: str | None, media: str | None) -> None:
    """Refuse bytes whose extension or image/* content type names another format."""
    claimed = _EXTENSION_FORMATS.get((declared_ext or "").lower())
    if claimed is not None and claimed != actual:
        raise Rejected(Reason.FORMAT_MISMATCH, f"declared {declared_ext}, actual {actual.lower()}")
    if media and media.startswith("image/") and _MIME_FORMATS.get(media) != actual:
        raise Rejected(Reason.FORMAT_MISMATCH, f"declared {media}, actual {actual.lower()}")


def _verify(img: Image.Image) -> None:
    """Check structure and checksums (a corrupt PNG chunk). ``verify`` must come straight
    after ``open``, before any pixel is loaded, and leaves the image unusable."""
    try:
        img.verify()
    except _DECODE_ERRORS as exc:
        raise Rejected(Reason.CORRUPT_IMAGE, f"verify failed: {exc}") from exc


def validate_image(data: bytes, declared_ext: str | None, content_type: str | None,
                   max_pixels: int) -> ImageInfo:
    """What the image header says, if the bytes are a supported, intact, honest image.

    Pillow's own DecompressionBombWarning only warns unless a process turns it into an
    error; ``max_pixels`` is the limit enforced here either way.
    """
    if not data:
        raise Rejected(Reason.EMPTY, "no bytes")
    media = media_type(content_type)
    _check_declared_image(media)
    with _open(data) as img:
        fmt = _FORMAT_ALIASES.get(img.format or "", img.format or "")
        if fmt not in _FORMATS:
            raise Rejected(Reason.UNSUPPORTED_FORMAT, f"format {fmt}")
        mode, (width, height) = img.mode, img.size
        if width * height > max_pixels:
            raise Rejected(Reason.DECOMPRESSION_BOMB,
                           f"{width}x{height} = {width * height} pixels > {max_pixels}")
        _check_format_claims(fmt, declared_ext, media)
        _verify(img)
    ext, mime = _FORMATS[fmt]
    return ImageInfo(format=fmt, mode=mode, width=width, height=height, ext=ext, mime=mime)


def is_image_name(name: str) -> bool:
    """True when a file or object name has an image extension."""
    return posixpath.splitext(name)[1][1:].lower() in IMAGE_EXTENSIONS


def validate_text(data: bytes, max_chars: int) -> str:
    """A text record as strict UTF-8 (BOM dropped), without stray control characters."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Rejected(Reason.INVALID_UTF8, f"byte {exc.start}: {exc.reason}") from exc
    text = _TEXT_CONTROLS.sub("", text)
    if not text.strip():
        raise Rejected(Reason.EMPTY, "no text")
    if len(text) > max_chars:
        raise Rejected(Reason.TEXT_TOO_LONG, f"{len(text)} > {max_chars} characters")
    return text


def clean_caption(text: str | None, max_chars: int = 10_000) -> str | None:
    """A caption fit to store: captions are kept, never a reason to reject their image."""
    if text is None:
        return None
    cleaned = unicodedata.normalize("NFC", _CAPTION_DROPPED.sub("", text)).strip()
    return cleaned[:max_chars].rstrip() or None
