"""Train / val / test splits that never move a sample.

A sample's split is decided once, when it is published, and stored with it; a dataset that
grows adds samples to the splits without moving any that are there. By default the split
is a function of the sample key alone (a hash, so it is independent of input order and of
which job brought the sample): the same content lands in the same split in every dataset
with the same fractions.

Stratified by label, the key hash would leave a rare class's handful of samples wherever
chance puts them (a class of 5 has a one-in-three chance of no validation sample at
0.8/0.1/0.1). Instead each label's samples are dealt in publish order to the split that is
furthest below its share of that label (largest remainder), so every label is split in
the given proportions as closely as whole samples allow, at every size of the dataset.
Publish order is deterministic (input order, batch after batch), so a re-run deals the
same way.
"""

from __future__ import annotations

import hashlib
from collections import Counter

NAMES = ("train", "val", "test")


def parse_fractions(spec: str) -> tuple[float, ...]:
    """``"0.8,0.1,0.1"`` (train, val, test) or ``"0.9,0.1"`` (train, val), as shares of
    one; weights that do not sum to one are scaled to (``"8,1,1"`` is 0.8, 0.1, 0.1)."""
    try:
        values = tuple(float(v) for v in spec.split(","))
    except ValueError:
        raise ValueError(f"split {spec!r}: expected fractions like 0.8,0.1,0.1") from None
    if not 2 <= len(values) <= len(NAMES):
        raise ValueError(f"split {spec!r}: two or three fractions (train,val[,test])")
    total = sum(values)
    if any(not 0 <= v < float("inf") for v in values) or not 0 < total < float("inf"):
        raise ValueError(f"split {spec!r}: fractions must be >= 0, and not all 0")
    return tuple(v / total for v in values)


def by_key(key: str, fractions: tuple[float, ...]) -> str:
    """The split of a sample key: where a uniform hash of it falls among the fractions."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"autods-split").digest()
    point = int.from_bytes(digest, "big") / 2**64
    edge = 0.0
    for name, share in zip(NAMES, fractions, strict=False):
        edge += share
        if point < edge:
            return name
    return NAMES[len(fractions) - 1]


class Stratified:
    """Deals samples of each label to splits by largest remainder.

    ``counts`` are the samples already published per (label, split), so a later job goes
    on where the dataset stands."""

    def __init__(self, fractions: tuple[float, ...],
                 counts: dict[tuple[str | None, str], int] | None = None) -> None:
        self.fractions = fractions
        self.counts: Counter[tuple[str | None, str]] = Counter(counts or {})

    def assign(self, label: str | None) -> str:
        names = NAMES[:len(self.fractions)]
        total = sum(self.counts[(label, n)] for n in names) + 1
        # The first of equal deficits wins: train before val before test.
        best = max(range(len(names)),
                   key=lambda i: (self.fractions[i] * total - self.counts[(label, names[i])],
                                  -i))
        self.counts[(label, names[best])] += 1
        return names[best]
