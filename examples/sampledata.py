"""Deterministic synthetic images and texts: the bundled sample set and benchmark inputs.

Images are drawn, not sampled from noise: a two-colour gradient, a soft low-frequency
shading field, one large shape (circle, square, triangle or stripes) and a few small
accents, all placed by a seeded RNG. Structure is what makes a perceptual hash meaningful:
two seeds land far apart in pHash space, while ``near_duplicate`` stays within a couple of
bits, so dedup can be checked against a known answer.

``python -m examples.sampledata examples/sample`` regenerates the bundled sample folder.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

log = logging.getLogger(__name__)

SHAPES = ("circle", "square", "triangle", "stripes")
LICENSE_ID = "CC0-1.0"
SOURCE_NAME = "autods-synthetic"

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "orange": (245, 140, 30),
    "yellow": (240, 215, 50),
    "green": (44, 160, 60),
    "teal": (30, 150, 150),
    "blue": (35, 75, 200),
    "purple": (130, 60, 180),
    "pink": (240, 130, 180),
    "brown": (130, 80, 40),
    "white": (245, 245, 240),
    "black": (25, 25, 30),
    "grey": (128, 128, 128),
}

# Wording per shape, picked by the scene's ``wording``; examples/sample_lfs.py matches all.
SHAPE_WORDS = {
    "circle": ("circle", "disc", "round dot"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "stripes": ("stripes", "striped patch", "band of stripes"),
}


@dataclass(slots=True)
class Accent:
    """A small secondary shape; it varies the hash and gives captions a second noun."""

    shape: str
    colour: str
    cx: float
    cy: float
    r: float


@dataclass(slots=True)
class Scene:
    """Everything random about one image, drawn once from the seed so caption and pixels
    describe the same thing."""

    seed: int
    size: tuple[int, int]
    shape: str
    fg: str
    bg: str
    bg2: str
    angle: float
    cx: float
    cy: float
    r: float
    tilt: float
    stripe_angle: float
    shading: np.ndarray
    accents: list[Accent] = field(default_factory=list)
    wording: int = 0
    mention_accent: bool = False


def make_scene(seed: int, size: tuple[int, int] = (512, 512), shape: str | None = None) -> Scene:
    """Draw every random choice for ``seed``; ``shape`` pins the main shape when given."""
    if shape is not None and shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    rng = np.random.default_rng(seed)
    names = list(PALETTE)
    fg, bg, bg2 = (names[i] for i in rng.choice(len(names), size=3, replace=False))
    main = shape or SHAPES[int(rng.integers(len(SHAPES)))]
    scene = Scene(
        seed=seed,
        size=size,
        shape=main,
        fg=fg,
        bg=bg,
        bg2=bg2,
        angle=float(rng.uniform(0, 2 * math.pi)),
        cx=float(rng.uniform(0.3, 0.7)),
        cy=float(rng.uniform(0.3, 0.7)),
        r=float(rng.uniform(0.2, 0.3)),
        tilt=float(rng.uniform(-0.4, 0.4)),
        stripe_angle=float(rng.choice([0.0, 45.0, 90.0, 135.0])),
        shading=rng.uniform(0.55, 1.35, size=(6, 6)),
        wording=int(rng.integers(3)),
        mention_accent=bool(rng.random() < 0.3),
    )
    for _ in range(int(rng.integers(2, 5))):
        scene.accents.append(
            Accent(
                shape=SHAPES[int(rng.integers(3))],  # accents are never stripes
                colour=names[int(rng.integers(len(names)))],
                cx=float(rng.uniform(0.08, 0.92)),
                cy=float(rng.uniform(0.08, 0.92)),
                r=float(rng.uniform(0.05, 0.09)),
            )
        )
    return scene


def _gradient(scene: Scene) -> np.ndarray:
    """Background: a linear blend of two colours along the scene's angle, then shaded."""
    w, h = scene.size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xs / max(w - 1, 1) - 0.5) * math.cos(scene.angle)
    u += (ys / max(h - 1, 1) - 0.5) * math.sin(scene.angle)
    t = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    a = np.array(PALETTE[scene.bg], np.float32)
    b = np.array(PALETTE[scene.bg2], np.float32)
    return a * (1 - t[..., None]) + b * t[..., None]


def _shading(scene: Scene) -> np.ndarray:
    """A smooth brightness field from a 6x6 grid: it spreads energy over the low DCT
    block the pHash reads, so unrelated seeds differ in many bits."""
    w, h = scene.size
    grid = Image.fromarray(scene.shading.astype(np.float32), mode="F")
    return np.asarray(grid.resize((w, h), Image.Resampling.BILINEAR), np.float32)


def _polygon(shape: str, cx: float, cy: float, r: float, tilt: float) -> list[tuple[float, float]]:
    """Vertices of a square or triangle centred at (cx, cy) with circumradius r."""
    sides = 4 if shape == "square" else 3
    start = tilt + (math.pi / 4 if sides == 4 else -math.pi / 2)
    return [
        (cx + r * math.cos(start + 2 * math.pi * k / sides),
         cy + r * math.sin(start + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, centre: tuple[float, float], r: float,
                colour: tuple[int, int, int], tilt: float) -> None:
    """Fill one circle, square or triangle."""
    cx, cy = centre
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, tilt), fill=colour)


def _stripes(pixels: np.ndarray, scene: Scene, phase: float) -> None:
    """Paint alternating bars inside a square patch, in place; ``phase`` shifts the bars."""
    h, w = pixels.shape[:2]
    side = min(w, h)
    cx, cy, half = scene.cx * w, scene.cy * h, scene.r * side * 1.2
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    inside = (np.abs(xs - cx) <= half) & (np.abs(ys - cy) <= half)
    theta = math.radians(scene.stripe_angle)
    u = (xs - cx) * math.cos(theta) + (ys - cy) * math.sin(theta)
    period = max(half / 3, 4.0)
    bars = np.floor((u + phase * period) / period).astype(np.int64) % 2 == 0
    pixels[inside & bars] = PALETTE[scene.fg]


def render(scene: Scene, phase: float = 0.0) -> Image.Image:
    """Pixels for a scene (RGB); ``phase`` only moves stripes, for animation frames."""
    w, h = scene.size
    side = min(w, h)
    base = _gradient(scene) * _shading(scene)[..., None]
    pixels = np.clip(base, 0, 255).astype(np.uint8)
    if scene.shape == "stripes":
        _stripes(pixels, scene, phase)
    img = Image.fromarray(pixels, mode="RGB")
    draw = ImageDraw.Draw(img)
    if scene.shape != "stripes":
        _draw_shape(draw, scene.shape, (scene.cx * w, scene.cy * h), scene.r * side,
                    PALETTE[scene.fg], scene.tilt)
    for acc in scene.accents:
        _draw_shape(draw, acc.shape, (acc.cx * w, acc.cy * h), acc.r * side,
                    PALETTE[acc.colour], scene.tilt)
    return img


def _article(word: str) -> str:
    """``a`` or ``an`` for the word that follows."""
    return "an" if word[0] in "aeiou" else "a"


def describe(scene: Scene, greyscale: bool = False) -> str:
    """A caption naming the main shape and colours, sometimes also the first accent;
    ``greyscale`` drops colour words for images stored without colour."""
    words = SHAPE_WORDS[scene.shape]
    noun = words[scene.wording % len(words)]
    if greyscale:
        fg, bg, bg2, acc_colour = "grey", "light", "dark", "grey"
    else:
        fg, bg, bg2 = scene.fg, scene.bg, scene.bg2
        acc_colour = scene.accents[0].colour if scene.accents else ""
    head = f"{fg} {noun}" if noun == "stripes" else f"{_article(fg)} {fg} {noun}"
    templates = (
        f"{head} on {_article(bg)} {bg} background",
        f"{head} over {_article(bg)} {bg} to {bg2} gradient",
        f"{head} on {bg}, fading to {bg2}",
    )
    caption = templates[scene.wording % len(templates)]
    if scene.mention_accent and scene.accents:
        caption += f", with a small {acc_colour} {scene.accents[0].shape} nearby"
    if greyscale:
        caption = f"a greyscale picture: {caption}"
    return caption


def structured_image(seed: int, size: tuple[int, int] = (512, 512),
                     shape: str | None = None) -> Image.Image:
    """An RGB image with gradients and filled shapes, fully determined by its arguments."""
    return render(make_scene(seed, size, shape))


_DCT = np.cos(np.pi * np.arange(32)[:, None] * (2 * np.arange(32)[None, :] + 1) / 64)

# (crop fraction per side, brightness gain, JPEG quality), strongest first.
_NEAR_VARIANTS = (
    (0.006, 1.015, 70), (0.006, 0.985, 70), (0.004, 1.02, 75), (0.004, 0.98, 75),
    (0.003, 1.012, 80), (0.003, 0.988, 80), (0.002, 1.01, 85), (0.002, 0.99, 85),
    (0.0, 1.01, 90), (0.0, 0.99, 90), (0.0, 1.0, 95),
)


def phash(img: Image.Image) -> int:
    """64-bit DCT perceptual hash, computed as ``imagehash.phash`` does (grey 32x32,
    low 8x8 DCT block against its median), so the generator can check its own output."""
    small = img.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    coeffs = _DCT @ np.asarray(small, np.float64) @ _DCT.T
    low = coeffs[:8, :8]
    bits = (low > np.median(low)).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    """Bits that differ between two hashes."""
    return (a ^ b).bit_count()


def _perturb(rgb: Image.Image, crop: float, gain: float, quality: int) -> bytes:
    """Trim ``crop`` of each side, resize back, scale brightness, encode as JPEG."""
    w, h = rgb.size
    dx, dy = round(w * crop), round(h * crop)
    if dx or dy:
        rgb = rgb.crop((dx, dy, w - dx, h - dy)).resize((w, h), Image.Resampling.BICUBIC)
    brighter = ImageEnhance.Brightness(rgb).enhance(gain)
    buf = io.BytesIO()
    brighter.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def near_duplicate_bytes(img: Image.Image, max_distance: int = 2) -> bytes:
    """JPEG bytes of a near duplicate of ``img``.

    A pHash bit flips whenever two DCT coefficients straddle the median, so no fixed edit
    is safe for every image; the strongest edit whose hash and whose second perceptual
    hash (the vertical dHash near-duplicate checks confirm with) both stay within
    ``max_distance`` bits wins, falling back to a plain high-quality re-encode.
    """
    from autods.core.hashing import hamming as signed_hamming
    from autods.core.hashing import image_features

    rgb = img.convert("RGB")
    target = phash(rgb)
    lossless = io.BytesIO()
    rgb.save(lossless, format="PNG")
    check = image_features(lossless.getvalue()).check
    data = b""
    for crop, gain, quality in _NEAR_VARIANTS:
        data = _perturb(rgb, crop, gain, quality)
        if (hamming(phash(Image.open(io.BytesIO(data))), target) <= max_distance
                and signed_hamming(image_features(data).check, check) <= max_distance):
            return data
    log.debug("no edit kept the hash within %d bits; returning a plain re-encode", max_distance)
    return data


def near_duplicate(img: Image.Image) -> Image.Image:
    """A barely different copy (tiny crop-resize, 1-2% brightness, JPEG re-encode) whose
    pHash is within 2 bits of the input's (checked, see ``near_duplicate_bytes``)."""
    out = Image.open(io.BytesIO(near_duplicate_bytes(img)))
    out.load()
    return out


# ---------------------------------------------------------------------------------------
# The bundled sample set
# ---------------------------------------------------------------------------------------

N_UNIQUE = 40

# (format, mode) per unique image, in order; shape i is SHAPES[i % 4], so GIFs sit at
# stripes positions (i % 4 == 3) and the "GIF means stripes" labelling rule holds.
_PLAN: tuple[tuple[str, str], ...] = (
    ("JPEG", "RGB"), ("PNG", "RGB"), ("PNG", "RGBA"), ("JPEG", "RGB"),
    ("PNG", "LA"), ("JPEG", "RGB"), ("PNG", "P"), ("WEBP", "RGB"),
    ("JPEG", "CMYK"), ("PNG", "L"), ("JPEG", "RGB"), ("PNG", "RGB"),
    ("PNG", "I;16"), ("JPEG", "RGB"), ("WEBP", "RGBA"), ("JPEG", "RGB"),
    ("JPEG", "RGB"), ("PNG", "RGBA"), ("JPEG", "L"), ("PNG", "RGB"),
    ("WEBP", "RGB"), ("JPEG", "RGB"), ("PNG", "LA"), ("JPEG", "RGB"),
    ("PNG", "P"), ("JPEG", "CMYK"), ("PNG", "RGB"), ("WEBP", "RGBA"),
    ("JPEG", "RGB"), ("PNG", "L"), ("PNG", "I;16"), ("JPEG", "RGB"),
    ("PNG", "RGBA"), ("JPEG", "RGB"), ("PNG", "RGB"), ("GIF", "P"),
    ("JPEG", "RGB"), ("PNG", "RGB"), ("JPEG", "RGB"), ("GIF", "P-animated"),
)
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}

# Stripes are drawn wide; one of the other sizes is wide too, so an aspect-ratio rule is
# usually right but sometimes disagrees with the caption.
_STRIPES_SIZES = ((256, 176), (240, 160))
_OTHER_SIZES = ((192, 192), (160, 208), (208, 176), (256, 176), (128, 128), (224, 224),
                (176, 160))

_UNCAPTIONED = {7, 17, 27, 37}
_EXACT_DUPS = ((5, "same caption"), (11, "other caption"), (22, "no caption"))
_NEAR_DUPS = (0, 13, 26)  # JPEG RGB, JPEG RGB, PNG RGB originals
_TRUNCATED_SEED = 1000


def sample_size(index: int) -> tuple[int, int]:
    """Pixel size of unique sample image ``index`` (width, height)."""
    if SHAPES[index % 4] == "stripes":
        return _STRIPES_SIZES[(index // 4) % len(_STRIPES_SIZES)]
    return _OTHER_SIZES[index % len(_OTHER_SIZES)]


def _alpha_ramp(size: tuple[int, int]) -> Image.Image:
    """An opaque-to-half-transparent ramp, so alpha is visibly used but nothing vanishes."""
    w, h = size
    ramp = np.linspace(255, 128, w, dtype=np.float32)[None, :].repeat(h, axis=0)
    return Image.fromarray(ramp.astype(np.uint8), mode="L")


def _encode_palette(img: Image.Image) -> bytes:
    """PNG in palette mode with the top-left colour transparent (a band of background)."""
    pal = img.quantize(colors=48)
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=pal.getpixel((0, 0)), optimize=True)
    return buf.getvalue()


def _encode_animated(scene: Scene) -> bytes:
    """A four-frame GIF whose stripes slide; frame 0 equals the still render."""
    frames = [render(scene, phase=k / 4).quantize(colors=64) for k in range(4)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                   duration=150, loop=0)
    return buf.getvalue()


def _encode(img: Image.Image, fmt: str, mode: str) -> bytes:
    """Bytes for one image in the given container format and pixel mode."""
    if mode == "P":
        if fmt == "PNG":
            return _encode_palette(img)
        img = img.quantize(colors=64)
    elif mode in {"RGBA", "LA"}:
        img = img.convert(mode[:-1])
        img.putalpha(_alpha_ramp(img.size))
    elif mode == "I;16":
        wide = np.asarray(img.convert("L"), np.uint16) * 257
        img = Image.fromarray(wide)
    else:
        img = img.convert(mode)
    buf = io.BytesIO()
    options: dict[str, object] = {"JPEG": {"quality": 88}, "WEBP": {"quality": 85},
                                  "PNG": {"optimize": True}}.get(fmt, {})
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


@dataclass(slots=True)
class _Entry:
    """One file of the sample set and the metadata row describing it."""

    name: str
    data: bytes
    caption: str | None
    meta: dict[str, object]


def _unique_entries() -> list[_Entry]:
    """The 40 distinct images, in every format and mode the plan lists."""
    entries = []
    for i, (fmt, mode) in enumerate(_PLAN):
        scene = make_scene(i, sample_size(i), SHAPES[i % 4])
        if mode == "P-animated":
            data, mode = _encode_animated(scene), "P animated"
        else:
            data = _encode(render(scene), fmt, mode)
        grey = mode in {"L", "LA", "I;16"}
        caption = None if i in _UNCAPTIONED else describe(scene, greyscale=grey)
        meta = {"seed": i, "shape": scene.shape, "variant": "original",
                "stored_as": f"{fmt} {mode}"}
        entries.append(_Entry(f"sample_{i:03d}.{_EXT[fmt]}", data, caption, meta))
    return entries


def _exact_duplicates(uniques: list[_Entry]) -> list[_Entry]:
    """Byte-identical copies under new names: same caption, a different one, none."""
    out = []
    for index, kind in _EXACT_DUPS:
        orig = uniques[index]
        stem, ext = orig.name.rsplit(".", 1)
        caption = {"same caption": orig.caption,
                   "other caption": f"a copy of {orig.caption}" if orig.caption else None,
                   "no caption": None}[kind]
        meta = dict(orig.meta, variant="exact_duplicate", duplicate_of=orig.name)
        out.append(_Entry(f"{stem}_copy.{ext}", orig.data, caption, meta))
    return out


def _near_duplicates(uniques: list[_Entry]) -> list[_Entry]:
    """Slightly altered re-encodings of decoded originals, saved as JPEG."""
    out = []
    for index in _NEAR_DUPS:
        orig = uniques[index]
        data = near_duplicate_bytes(Image.open(io.BytesIO(orig.data)))
        meta = dict(orig.meta, variant="near_duplicate", duplicate_of=orig.name,
                    stored_as="JPEG RGB")
        out.append(_Entry(f"{orig.name.rsplit('.', 1)[0]}_near.jpg", data,
                          orig.caption, meta))
    return out


def _rejects() -> list[_Entry]:
    """A JPEG cut in half and a text file wearing a .jpg name."""
    scene = make_scene(_TRUNCATED_SEED, (192, 192), "circle")
    full = _encode(render(scene), "JPEG", "RGB")
    truncated = _Entry("broken_truncated.jpg", full[: len(full) // 2], describe(scene),
                       {"seed": _TRUNCATED_SEED, "shape": "circle", "variant": "truncated"})
    fake = _Entry("not_an_image.jpg", b"This is plain text, not a JPEG.\n", None,
                  {"seed": None, "shape": None, "variant": "not_an_image"})
    return [truncated, fake]


_TEXTS: tuple[tuple[str, str], ...] = (
    ("A circle is the set of points at equal distance from its centre.", "circle"),
    ("The red disc in the corner looked like a rising sun.", "circle"),
    ("Round shapes such as a circle have no corners at all.", "circle"),
    ("She drew a circle around the answer and a square around the question.", "circle"),
    ("A circle rolls; that is why wheels are round.", "circle"),
    ("A square has four equal sides and four right angles.", "square"),
    ("The tiles formed a grid, each one a small blue square.", "square"),
    ("Rotate a square by forty-five degrees and it looks like a diamond.", "square"),
    ("A square box sat beside a triangle of folded paper.", "square"),
    ("A triangle has three sides and its angles add up to 180 degrees.", "triangle"),
    ("Road signs often use a red triangle to warn drivers.", "triangle"),
    ("An equilateral triangle fits neatly inside a circle.", "triangle"),
    ("The roof made a sharp triangle against the evening sky.", "triangle"),
    ("Stripes of alternating colour make a flag easy to recognise.", "stripes"),
    ("The zebra's black and white stripes confuse biting flies.", "stripes"),
    ("A striped shirt with thin vertical bars looks taller.", "stripes"),
    ("Diagonal stripes painted on the kerb mark a no-parking zone.", "stripes"),
    ("Bars of green and yellow stripes ran across the square banner.", "stripes"),
    ("Candy canes have red and white stripes twisted around them.", "stripes"),
)
_DUPLICATE_TEXT = 5  # index into _TEXTS repeated at the end

_LICENSE_TEXT = """\
CC0 1.0 Universal (CC0 1.0) Public Domain Dedication
SPDX-License-Identifier: CC0-1.0

The files in this folder are synthetic: every image, caption and text was generated by
examples.sampledata (run `python -m examples.sampledata examples/sample` to regenerate them).
They depict no real person, place or work.

To the extent possible under law, the autods authors have waived all copyright and
related or neighboring rights to these files. This work is published from the place of
its authors' residence and may be copied, modified, distributed and used for any
purpose, including commercial, without asking permission.

Full legal code: https://creativecommons.org/publicdomain/zero/1.0/legalcode
"""


def _text_records() -> list[dict[str, str]]:
    """The text records, with one verbatim duplicate at the end."""
    rows = [{"text": text, "license": LICENSE_ID, "source": SOURCE_NAME, "shape": shape}
            for text, shape in _TEXTS]
    rows.append(dict(rows[_DUPLICATE_TEXT]))
    return rows


def _write_entries(folder: Path, entries: list[_Entry]) -> None:
    """Image files, their captions and one metadata.jsonl row per file."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for entry in entries:
        (folder / entry.name).write_bytes(entry.data)
        caption_path = folder / f"{entry.name.rsplit('.', 1)[0]}.txt"
        if entry.caption is not None:
            caption_path.write_text(entry.caption + "\n", encoding="utf-8")
        else:
            caption_path.unlink(missing_ok=True)
        row = {"file_name": entry.name, "license": LICENSE_ID, "source": SOURCE_NAME}
        row.update(entry.meta)
        lines.append(json.dumps(row, sort_keys=False))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _warn_strays(folder: Path, entries: list[_Entry]) -> None:
    """Point out files left from an older layout; they would change the expected counts."""
    expected = {"metadata.jsonl"}
    for entry in entries:
        expected.add(entry.name)
        if entry.caption is not None:
            expected.add(f"{entry.name.rsplit('.', 1)[0]}.txt")
    strays = sorted(p.name for p in folder.iterdir() if p.name not in expected)
    if strays:
        log.warning("files not part of the sample set in %s: %s", folder, ", ".join(strays))


def write_sample_folder(root: Path) -> dict[str, int]:
    """Write the sample set under ``root`` (``images/``, ``texts.jsonl``, ``LICENSE``) and
    return what a correct pipeline run should find in it."""
    root = Path(root)
    uniques = _unique_entries()
    exact = _exact_duplicates(uniques)
    near = _near_duplicates(uniques)
    rejects = _rejects()
    entries = uniques + exact + near + rejects
    _write_entries(root / "images", entries)
    _warn_strays(root / "images", entries)
    texts = _text_records()
    with (root / "texts.jsonl").open("w", encoding="utf-8") as f:
        for row in texts:
            f.write(json.dumps(row) + "\n")
    (root / "LICENSE").write_text(_LICENSE_TEXT, encoding="utf-8")
    counts = {
        "images": len(entries),
        "unique_images": len(uniques),
        "exact_duplicates": len(exact),
        "near_duplicates": len(near),
        "corrupt": len(rejects),
        "captions": sum(e.caption is not None for e in entries),
        "metadata_rows": len(entries),
        "texts": len(texts),
        "unique_texts": len({row["text"] for row in texts}),
    }
    log.info("wrote sample set to %s: %s", root, counts)
    return counts


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.sampledata",
        description="Regenerate the bundled synthetic sample folder.",
    )
    parser.add_argument("root", type=Path, help="target folder, e.g. examples/sample")
    parser.add_argument("--clean", action="store_true",
                        help="delete ROOT/images first so no stale files remain")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: regenerate the sample folder and log the expected counts."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = _parse_args(argv)
    if args.clean and (args.root / "images").is_dir():
        shutil.rmtree(args.root / "images")
    write_sample_folder(args.root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
