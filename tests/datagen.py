"""Generated inputs with a known answer: which files survive, which are duplicates."""

from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from examples.sampledata import near_duplicate_bytes, structured_image


@dataclass
class Expected:
    unique: dict[str, str] = field(default_factory=dict)      # sha256 -> caption
    files: dict[str, str] = field(default_factory=dict)       # file name -> sha256
    exact: list[str] = field(default_factory=list)            # file names
    near: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)         # file name -> reason
    texts: dict[str, str] = field(default_factory=dict)       # sha256 -> text


def _jpeg(seed: int, size: int) -> bytes:
    buf = io.BytesIO()
    structured_image(seed, (size, size)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def image_folder(root: Path, n_unique: int, n_exact: int = 0, n_near: int = 0,
                 bad: bool = False, size: int = 96, seed0: int = 1000) -> Expected:
    """JPEGs with captions; copies and near copies placed after their originals."""
    root.mkdir(parents=True, exist_ok=True)
    exp = Expected()
    for i in range(n_unique):
        data = _jpeg(seed0 + i, size)
        name = f"img_{i:05d}"
        (root / f"{name}.jpg").write_bytes(data)
        caption = f"picture number {i}"
        (root / f"{name}.txt").write_text(caption)
        sha = hashlib.sha256(data).hexdigest()
        exp.unique[sha] = caption
        exp.files[f"{name}.jpg"] = sha
    for i in range(n_exact):
        name = f"img_{i:05d}_zcopy.jpg"
        (root / name).write_bytes((root / f"img_{i:05d}.jpg").read_bytes())
        exp.exact.append(name)
    for i in range(n_near):
        from PIL import Image

        src = Image.open(root / f"img_{n_unique - 1 - i:05d}.jpg")
        name = f"img_{n_unique - 1 - i:05d}_znear.jpg"
        (root / name).write_bytes(near_duplicate_bytes(src))
        exp.near.append(name)
    if bad:
        (root / "zz_truncated.jpg").write_bytes(_jpeg(7, 256)[:900])
        (root / "zz_html.jpg").write_bytes(b"<html><body>not an image</body></html>")
        (root / "zz_empty.png").write_bytes(b"")
        exp.bad = {"zz_truncated.jpg": "corrupt_image", "zz_html.jpg": "not_an_image",
                   "zz_empty.png": "empty"}
    return exp


def texts_file(path: Path, n: int, duplicate: bool = True) -> dict[str, str]:
    """A JSONL of real texts (paragraphs of Python's documentation, distinct by every text
    rule: no two are near or semantic duplicates), the first repeated at the end; returns
    sha256 -> text of the distinct ones."""
    rows = [{"text": text, "license": "CC0-1.0"} for text in _paragraphs(n)]
    if duplicate and rows:
        rows.append(dict(rows[0]))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {hashlib.sha256(r["text"].encode()).hexdigest(): r["text"] for r in rows}


@functools.cache
def _all_paragraphs(n: int) -> tuple[str, ...]:
    from autods.core.textdedup import TextMinHasher
    from bench.textdata import distinct, paragraphs

    # Consecutive docstrings of one module can say nearly the same thing in other words:
    # every other distinct paragraph keeps them apart for the sentence model too.
    return tuple(distinct(paragraphs(n * 6), TextMinHasher())[::2][:n])


def _paragraphs(n: int) -> list[str]:
    found = _all_paragraphs(max(n, 32))
    assert len(found) >= n, f"only {len(found)} distinct paragraphs"
    return list(found[:n])
