"""A small Bloom filter over strings, for manifests that cannot list every value.

A shard manifest lists a column's distinct values only while they are few; past that it
stores this filter, so a query planner can still prove that a shard lacks a value
(``label = 'x'``) and skip it. A filter never says a present value is absent; it says an
absent value is present with probability about ``fp_rate``.

JSON format, stable so that readers in other languages can check membership::

    {"bits": m, "hashes": k, "base64": "<standard base64, with padding, of ceil(m / 8) bytes>"}

* Bit ``i`` (``0 <= i < m``) is bit ``i % 8`` (least significant first) of byte ``i // 8``.
  Unused high bits of the last byte are zero.
* To hash a value, take ``d = blake2b(utf8(value), digest_size=16)`` (BLAKE2b, no key, no
  salt, no personalization), and read ``h1 = d[0:8]`` and ``h2 = d[8:16]`` as unsigned
  little-endian 64-bit integers.
* The value's ``k`` bit indices are ``(h1 + i * h2) mod m`` for ``i = 0 .. k-1``, computed
  exactly (no 64-bit wraparound; ``((h1 mod m) + i * (h2 mod m)) mod m`` is equivalent).
* A value is possibly present iff all ``k`` bits are set; it is absent otherwise.

Sizing follows the standard formulas for ``n`` distinct values and false-positive rate
``p``: ``m = ceil(-n ln p / (ln 2)^2)`` and ``k = max(1, round(m / n * ln 2))``.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable, Iterator


class BloomFilter:
    """A fixed-size set of strings with false positives and no false negatives."""

    __slots__ = ("_bits", "_hashes", "_array")

    def __init__(self, bits: int, hashes: int, array: bytearray | None = None) -> None:
        if bits < 1 or hashes < 1:
            raise ValueError(f"a Bloom filter needs bits, hashes >= 1, got {bits}, {hashes}")
        size = (bits + 7) // 8
        if array is not None and len(array) != size:
            raise ValueError(f"{bits} bits need {size} bytes, got {len(array)}")
        self._bits = bits
        self._hashes = hashes
        self._array = bytearray(size) if array is None else array

    @classmethod
    def of(cls, values: Iterable[str], fp_rate: float = 0.01) -> BloomFilter:
        """A filter holding ``values``, sized for their distinct count and ``fp_rate``."""
        if not 0.0 < fp_rate < 1.0:
            raise ValueError(f"fp_rate must be in (0, 1), got {fp_rate}")
        distinct = set(values)
        n = max(1, len(distinct))
        bits = max(1, math.ceil(-n * math.log(fp_rate) / math.log(2) ** 2))
        hashes = max(1, round(bits / n * math.log(2)))
        bloom = cls(bits, hashes)
        for value in distinct:
            for index in bloom._indices(value):
                bloom._array[index >> 3] |= 1 << (index & 7)
        return bloom

    def _indices(self, value: str) -> Iterator[int]:
        digest = hashlib.blake2b(value.encode("utf-8"), digest_size=16).digest()
        h1 = int.from_bytes(digest[:8], "little")
        h2 = int.from_bytes(digest[8:], "little")
        return ((h1 + i * h2) % self._bits for i in range(self._hashes))

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        return all(self._array[i >> 3] >> (i & 7) & 1 for i in self._indices(value))

    def to_json(self) -> dict:
        """The documented JSON form (see the module docstring)."""
        return {
            "bits": self._bits,
            "hashes": self._hashes,
            "base64": base64.b64encode(bytes(self._array)).decode("ascii"),
        }

    @classmethod
    def from_json(cls, doc: dict) -> BloomFilter:
        """Read :meth:`to_json`'s form; raise ``ValueError`` when it is malformed."""
        try:
            bits, hashes, encoded = doc["bits"], doc["hashes"], doc["base64"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a Bloom filter document: {exc!r}") from exc
        if not (type(bits) is int and type(hashes) is int and isinstance(encoded, str)):
            raise ValueError("a Bloom filter needs integer bits and hashes and a base64 string")
        try:
            array = bytearray(base64.b64decode(encoded, validate=True))
        except ValueError as exc:
            raise ValueError(f"bad base64 in Bloom filter: {exc}") from exc
        return cls(bits, hashes, array)
