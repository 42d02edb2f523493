"""A labelled near-duplicate set built from real images that ship on this machine.

Originals are pictures installed by packages: the Adwaita icon theme (transparent icons,
full-colour and symbolic line art), other images under ``/usr/share`` (documentation
diagrams, logos, screenshots) and images inside the installed Python packages. Copies are
planted from them the way images get copied in the wild: downscaled, re-encoded as JPEG
or WebP, flattened on white or black by tools that drop transparency, and combinations.

Choosing originals is where such a set goes wrong, so every step is deliberate:

* one file per picture name: icon themes ship each icon at several sizes (Adwaita also as
  a symbolic variant), and the largest full-colour file stands for the icon; elsewhere
  files that differ only by a size in their name (``logo64.gif``, ``logoLarge.gif``) are
  one picture, and the largest file stands for it;
* exact copies (same sha256) and one picture under two names are kept once: two files
  whose renderings at 32x32 on white differ by at most ``SAME_PICTURE_MAE`` grey level on
  average are one picture (``folder`` and ``inode-directory``, a plot saved by two tests,
  icons whose only difference is a glyph a few pixels wide at 512 px). Below one grey
  level the difference is finer than any thumbnail-scale detector resolves; above it the
  pictures stay, however alike (``folder`` and ``folder-download``, the battery levels),
  as the hard cases a detector must keep apart;
* blank or nearly uniform renderings are skipped: they hold no picture to tell apart;
* the order is the sha256 of the bytes, so a set of ``n`` is deterministic and mixes every
  source.

Everything depends only on the files installed, so a set is rebuilt rather than cached.
"""

from __future__ import annotations

import hashlib
import io
import re
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

SHARE = Path("/usr/share")
ICONS = SHARE / "icons"
EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp")
# Smaller images (favicons, navigation arrows) leave nothing to downscale.
MIN_SIDE = 32
# What tells sizes of one picture apart in a file name: "44x44", "150", "Large", "-compressed".
_SIZE_WORDS = re.compile(r"\d+(x\d+)?|large|medium|med|small|compressed|[-_.]")
# Same picture: mean absolute difference of the 32x32 renderings on white, in grey levels.
SAME_PICTURE_MAE = 1.0
# Renderings with a smaller standard deviation (grey levels) are blank or uniform (white
# logos on transparency, an empty plot).
MIN_STDDEV = 4.0
# Flattening on black only makes a copy when the opaque pixels are not dark themselves:
# black symbolic icons flattened on black leave a black square.
MIN_OPAQUE_LUMA_ON_BLACK = 64.0


@dataclass(frozen=True, slots=True)
class Original:
    key: str  # where the file came from: "share/icons/Adwaita/512x512/places/folder.png"
    data: bytes


@dataclass(frozen=True, slots=True)
class Copy:
    key: str
    original: str  # the Original's key
    transform: str
    data: bytes


@dataclass(frozen=True, slots=True)
class NearSet:
    originals: list[Original]
    copies: list[Copy]


# Sources


def _icon_files() -> list[tuple[str, Path]]:
    """One file per icon name across the icon themes: the largest full-colour one, else
    the largest symbolic one."""
    best: dict[str, tuple[tuple[bool, int], Path]] = {}
    for path in ICONS.glob("*/*x*/*/*.png"):
        side = int(path.parts[-3].split("x")[0])
        symbolic = path.name.endswith(".symbolic.png")
        name = path.name.removesuffix(".png").removesuffix(".symbolic").removesuffix("-symbolic")
        rank = (not symbolic, side)
        if name not in best or rank > best[name][0]:
            best[name] = (rank, path)
    return [(f"share/{p.relative_to(SHARE)}", p) for _, p in best.values()]


def _other_files() -> list[tuple[str, Path]]:
    """Images elsewhere under /usr/share and in the installed Python packages, one per
    picture name: the largest of ``logo64.gif``, ``logo100.gif`` and ``logoLarge.gif``."""
    roots = [("share", SHARE), ("site-packages", Path(sysconfig.get_paths()["purelib"]))]
    best: dict[tuple[Path, str], tuple[int, str, Path]] = {}
    for label, root in roots:
        for path in root.rglob("*"):
            if (path.suffix.lower() not in EXTENSIONS or not path.is_file()
                    or ICONS in path.parents):
                continue
            name = _SIZE_WORDS.sub("", path.stem.lower())
            nbytes = path.stat().st_size
            if (path.parent, name) not in best or nbytes > best[path.parent, name][0]:
                best[path.parent, name] = (nbytes, f"{label}/{path.relative_to(root)}", path)
    return [(key, path) for _, key, path in best.values()]


def _picture(data: bytes) -> Image.Image | None:
    """The decoded image (RGBA when transparent, else RGB), or None if not a usable one."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        return None
    if min(img.size) < MIN_SIDE:
        return None
    transparent = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    return img.convert("RGBA" if transparent else "RGB")


def _on(img: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """RGB: a transparent image composited on ``colour``; an opaque one unchanged."""
    if img.mode != "RGBA":
        return img
    background = Image.new("RGBA", img.size, (*colour, 255))
    return Image.alpha_composite(background, img).convert("RGB")


def _rendering(img: Image.Image) -> np.ndarray:
    small = _on(img, (255, 255, 255)).convert("L").resize((32, 32), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32).ravel()


def _candidates() -> Iterator[tuple[str, bytes]]:
    files = _icon_files() + _other_files()
    blobs = sorted((hashlib.sha256(data).digest(), key, data)
                   for key, data in ((key, path.read_bytes()) for key, path in files))
    seen: set[bytes] = set()
    for digest, key, data in blobs:
        if digest not in seen:
            seen.add(digest)
            yield key, data


def originals(n: int) -> list[Original]:
    """Up to ``n`` distinct pictures, in a deterministic order (see the module docstring)."""
    chosen: list[Original] = []
    renderings: list[np.ndarray] = []
    for key, data in _candidates():
        img = _picture(data)
        if img is None:
            continue
        rendering = _rendering(img)
        if rendering.std() < MIN_STDDEV:
            continue
        if renderings and np.abs(np.stack(renderings) - rendering).mean(axis=1).min() <= (
                SAME_PICTURE_MAE):
            continue
        chosen.append(Original(key, data))
        renderings.append(rendering)
        if len(chosen) == n:
            break
    return chosen


# Copies


def _save(img: Image.Image, fmt: str, **options: object) -> bytes:
    """Encoded ``img``; encoder effort is kept low where it changes no pixel (PNG) or few
    (WebP's method), since building the full set encodes thousands of copies."""
    options = {"PNG": {"compress_level": 1}, "WEBP": {"method": 1}}.get(fmt, {}) | options
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def _scaled(img: Image.Image, fx: float, fy: float,
            resample: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
    size = (max(1, round(img.width * fx)), max(1, round(img.height * fy)))
    return img.resize(size, resample)


def _white(img: Image.Image) -> Image.Image:
    return _on(img, (255, 255, 255))


def _black(img: Image.Image) -> Image.Image:
    return _on(img, (0, 0, 0))


# name -> (applies to transparent images only, image -> bytes of the copy)
TRANSFORMS: dict[str, tuple[bool, Callable[[Image.Image], bytes]]] = {
    "png-resave": (False, lambda im: _save(im, "PNG")),
    "webp-q80": (False, lambda im: _save(im, "WEBP", quality=80)),
    "resize-0.5x": (False, lambda im: _save(_scaled(im, 0.5, 0.5), "PNG")),
    "resize-0.75x-bicubic": (False, lambda im: _save(
        _scaled(im, 0.75, 0.75, Image.Resampling.BICUBIC), "PNG")),
    "resize-odd-0.61x0.67-bilinear": (False, lambda im: _save(
        _scaled(im, 0.61, 0.67, Image.Resampling.BILINEAR), "PNG")),
    "upscale-1.5x+jpeg-q85-white": (False, lambda im: _save(
        _white(_scaled(im, 1.5, 1.5, Image.Resampling.BICUBIC)), "JPEG", quality=85)),
    "jpeg-q90-white": (False, lambda im: _save(_white(im), "JPEG", quality=90)),
    "jpeg-q75-white": (False, lambda im: _save(_white(im), "JPEG", quality=75)),
    "jpeg-q60-white": (False, lambda im: _save(_white(im), "JPEG", quality=60)),
    "resize-0.5x+jpeg-q70-white": (False, lambda im: _save(
        _white(_scaled(im, 0.5, 0.5)), "JPEG", quality=70)),
    "resize-0.75x+webp-q75-white": (False, lambda im: _save(
        _white(_scaled(im, 0.75, 0.75)), "WEBP", quality=75)),
    "jpeg-q85-black": (True, lambda im: _save(_black(im), "JPEG", quality=85)),
    "resize-0.5x+jpeg-q75-black": (True, lambda im: _save(
        _black(_scaled(im, 0.5, 0.5)), "JPEG", quality=75)),
}


def _shows_on_black(img: Image.Image) -> bool:
    rgba = np.asarray(img, dtype=np.float32)
    opaque = rgba[rgba[..., 3] >= 128, :3]
    return opaque.size > 0 and float((opaque @ [0.299, 0.587, 0.114]).mean()) >= (
        MIN_OPAQUE_LUMA_ON_BLACK)


def copies_of(original: Original) -> list[Copy]:
    """Every transform that makes a distinct copy of ``original``.

    The black-background transforms apply to transparent originals whose opaque pixels
    show on black; on an opaque original they would repeat the white ones."""
    img = _picture(original.data)
    assert img is not None, original.key
    on_black = img.mode == "RGBA" and _shows_on_black(img)
    return [Copy(f"{original.key}#{name}", original.key, name, make(img))
            for name, (black_only, make) in TRANSFORMS.items() if on_black or not black_only]


def build(n: int) -> NearSet:
    """``n`` distinct originals (fewer if the machine has fewer) and their planted copies."""
    chosen = originals(n)
    return NearSet(chosen, [c for o in chosen for c in copies_of(o)])
