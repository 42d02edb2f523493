"""A real text corpus that ships with Python, and near copies planted in it.

Paragraphs come from the standard library's docstrings (read with ``ast``, so no module is
imported and none runs) and from the language reference that ``pydoc`` carries
(``pydoc_data.topics``). Both are prose written by people, with the repetition real
documentation has: boilerplate, shared phrasings, paragraphs copied between modules.

``distinct`` removes that repetition first, so that a paragraph flagged later as a near
duplicate of another in the "distinct" set is a false drop by construction, and ``plant``
adds copies with the edits people make when they copy text.
"""

from __future__ import annotations

import ast
import random
import re
import sysconfig
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from autods.core.textdedup import TextMinHasher, normalize

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages"}
EDITS = ("case", "punctuation", "word added", "word dropped", "whitespace", "all at once")


def _stdlib_files() -> Iterator[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if not _SKIP_DIRS.intersection(path.relative_to(root).parts):
            yield path


def _docstrings(path: Path) -> Iterator[str]:
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError):  # a few files are templates or other encodings
        return
    for node in ast.walk(tree):
        if isinstance(node, _DOC_NODES) and (doc := ast.get_docstring(node)):
            yield doc


def _documents() -> Iterator[str]:
    """The language reference's topics first (longer prose), then stdlib docstrings."""
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield topics[key]
    for path in _stdlib_files():
        yield from _docstrings(path)


def _word_count(text: str) -> int:
    """Whitespace-separated tokens with a letter in them: table rules and operators in code
    samples are not words."""
    return sum(any(c.isalpha() for c in token) for token in text.split())


def paragraphs(limit: int, min_words: int = 20) -> list[str]:
    """Up to ``limit`` paragraphs of at least ``min_words`` words, distinct once normalised,
    in a fixed order (so a small ``limit`` reads only the first few sources)."""
    seen: set[str] = set()
    out: list[str] = []
    for doc in _documents():
        for para in _PARAGRAPH_BREAK.split(doc):
            key = normalize(para)
            if _word_count(key) < min_words or key in seen:
                continue
            seen.add(key)
            out.append(para.strip("\n"))
            if len(out) == limit:
                return out
    return out


def jaccard(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / len(a | b)


def distinct(texts: list[str], hasher: TextMinHasher) -> list[str]:
    """``texts`` less each one whose exact shingle Jaccard with an earlier kept one reaches
    the hasher's threshold: a set with no true near duplicates in it.

    Exact, not estimated: an inverted index from shingle to kept texts counts the shared
    shingles of every pair that shares any.
    """
    postings: dict[bytes, list[int]] = {}
    sizes: list[int] = []
    kept: list[str] = []
    for text in texts:
        shingles = set(hasher.shingles(text))
        shared = Counter(j for s in shingles for j in postings.get(s, ()))
        if any(n / (len(shingles) + sizes[j] - n) >= hasher.threshold
               for j, n in shared.items()):
            continue
        for s in shingles:
            postings.setdefault(s, []).append(len(kept))
        sizes.append(len(shingles))
        kept.append(text)
    return kept


@dataclass(frozen=True, slots=True)
class Item:
    """One text of the stream; ``origin`` is the stream position of the paragraph it copies
    (None for a distinct paragraph), ``edit`` what was done to it."""

    text: str
    origin: int | None = None
    edit: str = ""


def _edit(text: str, kind: str, rng: random.Random, vocabulary: list[str]) -> str:
    words = text.split()
    if kind == "case":
        return rng.choice((str.upper, str.lower, str.title, str.swapcase))(text)
    if kind == "punctuation":
        stripped = re.sub(r"[.,;:!?()'\"`-]", "", text)
        return stripped if stripped != text else text + "!"
    if kind == "word added":
        words.insert(rng.randrange(len(words) + 1), rng.choice(vocabulary))
        return " ".join(words)
    if kind == "word dropped":
        del words[rng.randrange(len(words))]
        return " ".join(words)
    if kind == "whitespace":
        joiners = ("  ", "\n", "\t", " \u00a0")
        return "\n" + "".join(w + rng.choice(joiners) for w in words) + "\n\n"
    # all at once: a copy reformatted, recased and lightly reworded
    for edit in ("word added" if rng.random() < 0.5 else "word dropped", "punctuation",
                 "case", "whitespace"):
        text = _edit(text, edit, rng, vocabulary)
    return text


def plant(texts: list[str], copies: int, seed: int = 0) -> list[Item]:
    """``texts`` in order with ``copies`` near copies of randomly chosen ones, each placed
    at a random point after its original; edits cycle through ``EDITS``."""
    rng = random.Random(seed)
    vocabulary = sorted({w for t in texts for w in re.findall(r"[A-Za-z]{3,}", t)})
    sources = sorted(rng.sample(range(len(texts)), copies))
    # Each copy goes in after a random original at or after its source.
    after: dict[int, list[tuple[int, str]]] = {}
    for n, src in enumerate(sources):
        kind = EDITS[n % len(EDITS)]
        after.setdefault(rng.randrange(src, len(texts)), []).append((src, kind))
    stream: list[Item] = []
    position: dict[int, int] = {}
    for i, text in enumerate(texts):
        position[i] = len(stream)
        stream.append(Item(text))
        for src, kind in after.get(i, ()):
            stream.append(Item(_edit(texts[src], kind, rng, vocabulary), position[src], kind))
    return stream
