from __future__ import annotations

import base64
import hashlib
import json
import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autods.core.bloom import BloomFilter


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=200), st.sampled_from([0.5, 0.1, 0.01, 0.001]))
def test_no_false_negatives(values: list[str], fp_rate: float) -> None:
    bloom = BloomFilter.from_json(json.loads(json.dumps(BloomFilter.of(values, fp_rate).to_json())))
    assert all(v in bloom for v in values)


@pytest.mark.parametrize("fp_rate", [0.1, 0.01])
def test_false_positive_rate_near_target(fp_rate: float) -> None:
    rng = random.Random(1234)

    def word() -> str:
        return "".join(rng.choices(string.ascii_letters, k=12))

    members = {word() for _ in range(3000)}
    bloom = BloomFilter.of(members, fp_rate)
    probes = [w for w in (word() for _ in range(20000)) if w not in members]
    rate = sum(p in bloom for p in probes) / len(probes)
    assert rate < 2 * fp_rate


def test_sizing_follows_standard_formulas() -> None:
    doc = BloomFilter.of([f"v{i}" for i in range(1000)] * 2, 0.01).to_json()
    assert doc["bits"] == 9586  # ceil(-1000 ln 0.01 / ln(2)^2)
    assert doc["hashes"] == 7  # round(9586 / 1000 * ln 2)
    assert len(base64.b64decode(doc["base64"])) == (9586 + 7) // 8


def test_documented_format_can_be_checked_independently() -> None:
    """A reader following only the module docstring gets the same answers."""
    doc = BloomFilter.of(["cat", "dog", "é"], 0.01).to_json()
    m, k, array = doc["bits"], doc["hashes"], base64.b64decode(doc["base64"])

    def member(value: str) -> bool:
        d = hashlib.blake2b(value.encode("utf-8"), digest_size=16).digest()
        h1, h2 = int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little")
        return all(array[(h1 + i * h2) % m // 8] >> ((h1 + i * h2) % m % 8) & 1 for i in range(k))

    bloom = BloomFilter.from_json(doc)
    for value in ["cat", "dog", "é", "cow", "", "Cat"]:
        assert member(value) == (value in bloom)
    assert member("cat") and member("é")


def test_empty_filter_holds_nothing() -> None:
    bloom = BloomFilter.of([])
    assert "x" not in bloom and "" not in bloom


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"bits": 0, "hashes": 1, "base64": ""},
        {"bits": 8, "hashes": 0, "base64": "AA=="},
        {"bits": 16, "hashes": 1, "base64": "AA=="},
        {"bits": 8, "hashes": 1, "base64": "not base64!"},
        {"bits": "8", "hashes": 1, "base64": "AA=="},
    ],
)
def test_malformed_documents_are_rejected(doc: dict) -> None:
    with pytest.raises(ValueError):
        BloomFilter.from_json(doc)
