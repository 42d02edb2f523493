"""Snorkel labelling functions for the bundled sample set (``examples/sample``).

Each function sees one input ``x`` with ``caption``, ``text``, ``modality`` ("image" or
"text"), ``width``, ``height``, ``format``, ``mode`` and ``nbytes`` (the image fields are
None for texts) and votes an index into ``LABELS`` or abstains with -1.

The keyword rules read captions and texts; two rules read image properties only. They
disagree on purpose now and then: a caption may mention a small accent shape ("a red
square, with a small yellow circle nearby"), and a few non-stripes images are as wide as
the striped ones, so the label model has conflicts to weigh.
"""

from __future__ import annotations

import re

from snorkel.labeling import labeling_function

LABELS = ["circle", "square", "triangle", "stripes"]
ABSTAIN = -1
CIRCLE, SQUARE, TRIANGLE, STRIPES = range(len(LABELS))

_CIRCLE = re.compile(r"\b(circle|circles|disc|round)\b")
_SQUARE = re.compile(r"\b(square|squares|box)\b")
_TRIANGLE = re.compile(r"\b(triangle|triangles)\b")
_STRIPES = re.compile(r"\b(stripes|striped|stripe|bars)\b")

# The sample generator draws stripes at 1.45:1 or wider; other shapes are at most 1.45:1
# and mostly near square.
_WIDE_RATIO = 1.4


def _words(x) -> str:
    """Caption and text together, lower-cased: the keyword rules read both."""
    return " ".join(t for t in (x.caption, x.text) if t).lower()


def _keyword(x, pattern: re.Pattern[str], label: int) -> int:
    return label if pattern.search(_words(x)) else ABSTAIN


@labeling_function()
def lf_circle_words(x) -> int:
    """Captions and texts that name a circle, disc or something round."""
    return _keyword(x, _CIRCLE, CIRCLE)


@labeling_function()
def lf_square_words(x) -> int:
    """Captions and texts that name a square or a box."""
    return _keyword(x, _SQUARE, SQUARE)


@labeling_function()
def lf_triangle_words(x) -> int:
    """Captions and texts that name a triangle."""
    return _keyword(x, _TRIANGLE, TRIANGLE)


@labeling_function()
def lf_stripes_words(x) -> int:
    """Captions and texts that name stripes or bars."""
    return _keyword(x, _STRIPES, STRIPES)


@labeling_function()
def lf_gif_is_stripes(x) -> int:
    """The sample's GIFs (one of them animated) all show stripes."""
    if x.modality == "image" and (x.format or "").upper() == "GIF":
        return STRIPES
    return ABSTAIN


@labeling_function()
def lf_wide_is_stripes(x) -> int:
    """Stripes are drawn wide; usually right, but some wide images hold other shapes."""
    if x.modality != "image" or not x.width or not x.height:
        return ABSTAIN
    return STRIPES if x.width >= _WIDE_RATIO * x.height else ABSTAIN


LFS = [
    lf_circle_words,
    lf_square_words,
    lf_triangle_words,
    lf_stripes_words,
    lf_gif_is_stripes,
    lf_wide_is_stripes,
]
