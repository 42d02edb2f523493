"""Labelling functions for images made by ``tests.datagen`` ("picture number N" captions):
the parity of N, and a second rule that disagrees with it on multiples of three, so that
every captioned image gets a label and the label model has conflicts to weigh."""

from __future__ import annotations

from snorkel.labeling import labeling_function

LABELS = ["even", "odd"]
ABSTAIN = -1


def _number(x) -> int | None:
    words = (x.caption or "").split()
    return int(words[-1]) if words and words[-1].isdigit() else None


@labeling_function()
def lf_parity(x) -> int:
    n = _number(x)
    return ABSTAIN if n is None else n % 2


@labeling_function()
def lf_threes_are_odd(x) -> int:
    n = _number(x)
    return 1 if n is not None and n % 3 == 0 else ABSTAIN
