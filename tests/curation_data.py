"""Real inputs for the curation tests: icons that ship with Debian's Adwaita theme and their
planted near copies, paragraphs of Python's documentation and their planted copies, a
reworded paragraph (a semantic duplicate), a text in another language and an image too
small for the filters. Returns the inputs and what should become of each."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from autods.core.textdedup import TextMinHasher
from bench import neardata, textdata

#: The bounds the tests build with: the small image and the French text are filtered.
MIN_SIDE = 14
LANGUAGES = "en"

FRENCH = ("Le comité se réunira de nouveau la semaine prochaine pour discuter du budget de "
          "la ville, des travaux de la bibliothèque et de l'entretien des écoles primaires.")


@dataclass
class Expected:
    """Source file name -> its fate: ``published``, or (status, rule prefix, the file
    name of the kept input), or ("filtered", reason)."""

    fates: dict[str, tuple] = field(default_factory=dict)

    def published(self) -> list[str]:
        return [n for n, f in self.fates.items() if f[0] == "published"]


def reworded(text: str) -> str:
    """A light rewording: the meaning stays (cosine of sentence embeddings ~0.98), the word
    shingles do not (estimated Jaccard well under 0.8)."""
    text = re.sub(r"\bthe\b", "this", text, count=3)
    text = re.sub(r"\bis\b", "gets", text, count=2)
    return re.sub(r"\ba\b", "one", text, count=2)


def rewordable(texts: list[str]) -> str:
    """The first text long enough that ``reworded`` keeps its meaning while MinHash no
    longer finds it (estimated Jaccard under 0.7): only the semantic rule can."""
    hasher = TextMinHasher()
    return next(t for t in texts if len(t.split()) >= 30 and hasher.similarity(
        hasher.signature(t), hasher.signature(reworded(t))) < 0.7)


def write_inputs(base: Path, n_images: int = 5, n_texts: int = 24) -> Expected:
    """``base/images`` (originals, then ``base/copies``, listed after them) and
    ``base/texts.jsonl``; the expected fate of every input, by file name or text line."""
    near = neardata.build(n_images + 1)
    if len(near.originals) < n_images + 1:
        pytest.skip("this machine lacks the Adwaita icons the near-duplicate set is made of")
    expected = Expected()
    images, copies = base / "images", base / "copies"
    images.mkdir(parents=True)
    copies.mkdir()
    names: dict[str, str] = {}
    for n, original in enumerate(near.originals[:n_images]):
        name = f"img{n:02d}.png" if original.data[:4] == b"\x89PNG" else f"img{n:02d}.jpg"
        (images / name).write_bytes(original.data)
        names[original.key] = name
        expected.fates[name] = ("published",)
    # A distinct picture smaller than the filter's minimum side.
    small = Image.open(io.BytesIO(near.originals[n_images].data))
    small.thumbnail((MIN_SIDE - 4, MIN_SIDE - 4))
    buf = io.BytesIO()
    small.save(buf, format="PNG")
    (images / "small.png").write_bytes(buf.getvalue())
    expected.fates["small.png"] = ("filtered", "filter:min_side")
    for m, copy in enumerate(c for c in near.copies if c.original in names):
        ext = "jpg" if copy.data[:3] == b"\xff\xd8\xff" else (
            "webp" if copy.data[8:12] == b"WEBP" else "png")
        name = f"copy{m:03d}.{ext}"
        (copies / name).write_bytes(copy.data)
        expected.fates[name] = ("near_duplicate", "phash", names[copy.original])

    paragraphs = textdata.distinct(textdata.paragraphs(n_texts * 3), TextMinHasher())[:n_texts]
    stream = textdata.plant(paragraphs, copies=6, seed=3)
    rows = []
    for item in stream:
        line = f"text{len(rows):03d}"
        rows.append({"text": item.text, "source": line})
        if item.origin is None:
            expected.fates[line] = ("published",)
        elif item.edit == "whitespace":
            expected.fates[line] = ("exact_duplicate", "text_normalized",
                                    f"text{item.origin:03d}")
        else:
            expected.fates[line] = ("near_duplicate", "minhash", f"text{item.origin:03d}")
    chosen = rewordable(paragraphs)
    origin = next(i for i, item in enumerate(stream) if item.text == chosen)
    rows.append({"text": reworded(chosen), "source": f"text{len(rows):03d}"})
    expected.fates[rows[-1]["source"]] = ("semantic_duplicate", "semantic",
                                          f"text{origin:03d}")
    rows.append({"text": FRENCH, "source": f"text{len(rows):03d}"})
    expected.fates[rows[-1]["source"]] = ("filtered", "filter:language")
    (base / "texts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return expected
