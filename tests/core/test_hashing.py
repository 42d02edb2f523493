import io

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw

from autods.core.hashing import (
    hamming,
    image_features,
    phash_to_int,
    sha256_hex,
    to_grayscale,
)
from autods.core.records import Reason, Rejected


def _picture(seed: int, size=(256, 256)) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = (int(v) for v in rng.integers(0, size[0] // 2, 2))
        draw.ellipse([x0, y0, x0 + size[0] // 3, y0 + size[1] // 3],
                     fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return img


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_sha256_matches_hashlib_vector():
    assert sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_draft_decoded_phash_stays_close_to_full_decode():
    for seed in range(10):
        data = _encode(_picture(seed, (512, 512)), "JPEG", quality=90)
        full = phash_to_int(imagehash.phash(Image.open(io.BytesIO(data))))
        assert hamming(image_features(data).phash, full) <= 4


def test_features_report_header_facts():
    data = _encode(_picture(1, (300, 200)), "PNG")
    f = image_features(data)
    assert (f.width, f.height, f.format, f.mode, f.nbytes) == (300, 200, "PNG", "RGB", len(data))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "CMYK", "P", "I;16"])
def test_every_mode_hashes_like_its_rgb_rendering(mode):
    rgb = _picture(3)
    if mode == "I;16":
        arr = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
        img = Image.fromarray(arr)
    else:
        img = rgb.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    got = image_features(_encode(img, fmt)).phash
    ref = phash_to_int(imagehash.phash(rgb.convert("L")))
    assert hamming(got, ref) <= 6


def test_sixteen_bit_is_rescaled_not_clipped():
    arr = np.full((8, 8), 30000, dtype=np.uint16)
    gray = to_grayscale(Image.fromarray(arr))
    assert gray.getpixel((0, 0)) == 116


def test_transparency_is_flattened_on_white():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_grayscale(img).getpixel((0, 0)) == 255


def test_truncated_jpeg_is_rejected_as_corrupt():
    data = _encode(_picture(5, (512, 512)), "JPEG")
    with pytest.raises(Rejected) as err:
        image_features(data[: len(data) // 2])
    assert err.value.reason == Reason.CORRUPT_IMAGE


def test_phash_int_is_signed_64_bit():
    assert phash_to_int(imagehash.hex_to_hash("ffffffffffffffff")) == -1
    assert phash_to_int(imagehash.hex_to_hash("0000000000000001")) == 1


def test_phash_to_int_reads_the_bits_as_imagehash_writes_them():
    rng = np.random.default_rng(3)
    for bits in [np.zeros((8, 8), bool), np.ones((8, 8), bool),
                 *(rng.random((8, 8)) < 0.5 for _ in range(50))]:
        digest = imagehash.ImageHash(bits)
        value = int(str(digest), 16)
        assert phash_to_int(digest) == (value - (1 << 64) if value >= 1 << 63 else value)
