"""Content hashes: sha256 for exact identity, pHash and a check hash for perceptual
similarity.

pHash only needs a 32x32 grayscale thumbnail, so JPEGs are decoded at reduced size with
Pillow's ``draft`` (the DCT scaler skips most of the work): that is the difference between
hashing at the speed of decoding a full image and hashing several times faster. The check
hash (``autods.core.nearimage`` says why it is a vertical dHash) is computed from the same
thumbnail, so it costs a 32x32 -> 8x9 resize and no second pass over the image.

Both hashes are imagehash's ``phash`` and ``dhash_vertical``, bit for bit, computed from
the thumbnail's array: the library's own calls would copy the thumbnail twice and wrap
each result in an object, a sixth of the hashing time once the image is decoded.
"""

from __future__ import annotations

import hashlib
import io

import imagehash
import numpy as np
from PIL import Image

from autods.core import nearimage
from autods.core.records import ImageFeatures, Reason, Rejected

# pHash resizes to hash_size * highfreq_factor = 32 px; drafting to >= 64 px keeps the
# thumbnail's detail while letting libjpeg scale by up to 1/8 while decoding.
_DRAFT_SIZE = (64, 64)
# The thumbnail imagehash.phash resizes to (with the same filter): handing phash a thumbnail
# of exactly this size leaves its resize a copy, so the pHash is unchanged.
_THUMB_SIZE = (32, 32)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def to_grayscale(img: Image.Image) -> Image.Image:
    """Grayscale any mode faithfully: 16-bit rescaled, transparency flattened on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.uint32 if img.mode == "I" else np.uint16)
        top = 65535 if img.mode != "I" else max(int(arr.max()), 1)
        return Image.fromarray((arr.astype(np.float32) * (255.0 / top)).astype(np.uint8))
    if img.mode == "F":
        return img.convert("L")
    return flatten_alpha(img).convert("L")


def flatten_alpha(img: Image.Image) -> Image.Image:
    """Transparent images composited on white (as viewers show them); others unchanged."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")  # no copy when RGBA
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba)
    return img


def image_features(data: bytes) -> ImageFeatures:
    """pHash, check hash and header facts of one image, decoding as little as pHash needs.

    A truncated or otherwise undecodable image is rejected here, since this is the first
    place its pixels are read.
    """
    try:
        img = Image.open(io.BytesIO(data))
        width, height, fmt, mode = img.width, img.height, img.format or "", img.mode
        if fmt == "JPEG":
            img.draft("L", _DRAFT_SIZE)
        img.load()
        gray = to_grayscale(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise Rejected(Reason.CORRUPT_IMAGE, str(exc)) from exc
    # Imported here, as imagehash imports it: a model worker imports this module on the
    # thread that builds CLIP while its main thread imports sentence-transformers, which
    # imports SciPy too, and one package imported by two threads at once can fail.
    import scipy.fftpack

    thumb = gray.resize(_THUMB_SIZE, imagehash.ANTIALIAS)
    # imagehash.phash: the 8x8 lowest frequencies of the thumbnail's 2-D DCT against their
    # median; imagehash.dhash_vertical: brightness steps down an 8x9 resize.
    dct = scipy.fftpack.dct(scipy.fftpack.dct(np.asarray(thumb), axis=0), axis=1)[:8, :8]
    low = np.sort(dct, axis=None)
    median = (low[31] + low[32]) / 2  # np.median's value, without its 8 us of dispatch
    steps = np.asarray(thumb.resize((8, 9), imagehash.ANTIALIAS))
    return ImageFeatures(
        phash=_signed_bits(dct > median), width=width, height=height, format=fmt,
        mode=mode, nbytes=len(data), check=_signed_bits(steps[1:] > steps[:-1]),
        thumb=nearimage.thumbnail(thumb),
    )


def phash_to_int(digest: imagehash.ImageHash) -> int:
    """The 64 bits of a pHash (or any 8x8 imagehash) as a signed 64-bit integer (what a
    BIGINT column stores)."""
    return _signed_bits(digest.hash)


def _signed_bits(bits: np.ndarray) -> int:
    """8x8 booleans as a signed 64-bit integer, row-major, first bit most significant:
    ``int(str(digest), 16)`` without the string round trip, which imagehash builds one
    character per bit."""
    value = int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")
    return value - (1 << 64) if value >= (1 << 63) else value


def hash_hex(value: int) -> str:
    """A 64-bit hash stored signed (a BIGINT) as the 16 hex digits of its unsigned bits,
    the way manifests and lineage show it."""
    return f"{value & 0xFFFFFFFFFFFFFFFF:016x}"


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()
