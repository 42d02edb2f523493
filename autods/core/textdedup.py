"""Text duplicates: sha256 of normalised text (exact) and MinHash + LSH (near).

Exact: two texts are the same when they differ only in how Unicode spells a character or in
whitespace (``normalize``). Near: the Jaccard similarity of their sets of word shingles,
estimated by MinHash, reaches a threshold; LSH bands find the candidates, and a candidate is
kept as the verdict only if the estimate itself reaches the threshold, so every drop comes
with a number that explains it (``TextMinHasher.rule``).

Signatures and band values are persisted and compared across jobs, so everything that shapes
them is pinned here rather than left to library defaults: datasketch's ``affine64`` scheme,
its ``sha1_hash64`` hash, the seed, the tokenisation. ``TextMinHasher.config_id`` names the
combination; a stored index is only comparable with a hasher of the same id.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import cache

import numpy as np

# Runs of what is neither a word character nor whitespace: punctuation, symbols, invisible
# format characters, and combining marks (which ``\w`` does not match).
_NON_WORD = re.compile(r"[^\w\s]+")
_SCHEME = "affine64"
_DTYPE = np.dtype("<u8")
# LSH misses cannot be recovered later, while a false candidate costs one comparison of
# signatures (the estimate decides), so the band layout weighs misses most.
_LSH_WEIGHTS = (0.1, 0.9)


def normalize(text: str) -> str:
    """NFKC, every whitespace run as one space, no leading or trailing space.

    Case is kept: exact duplicates must read the same, and case carries meaning ("US" and
    "us", identifiers in code). Texts that differ only in case are near duplicates, which
    the MinHash stage (on case-folded words) finds with a rule that says so.
    """
    return " ".join(unicodedata.normalize("NFKC", text).split())


def normalized_sha256(text: str) -> str:
    """Hex sha256 of the UTF-8 of ``normalize(text)``: the key for exact text dedup."""
    return hashlib.sha256(normalize(text).encode()).hexdigest()


def _drop_punctuation(match: re.Match[str]) -> str:
    """Punctuation is deleted, not split on: "e-mail", "os.path" and "don't" stay one word
    each, so a copy that drops or adds such marks keeps its words. Combining marks (the
    vowel signs of Devanagari, say) are kept: they are part of their word."""
    return "".join(c for c in match[0] if unicodedata.category(c)[0] == "M")


def to_bytes(signature: np.ndarray) -> bytes:
    """The signature as little-endian uint64s: 8 bytes per permutation."""
    return signature.astype(_DTYPE, copy=False).tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    if len(data) % _DTYPE.itemsize:
        raise ValueError(f"a signature is a whole number of uint64s, got {len(data)} bytes")
    return np.frombuffer(data, dtype=_DTYPE).astype(np.uint64)


@cache
def _bands_rows(threshold: float, num_perm: int) -> tuple[int, int]:
    # datasketch's own search over (b, r); it integrates numerically, so compute it once.
    # datasketch (with scipy) is imported here, not with the module: planning a job imports
    # this module and has no text to hash.
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, *_LSH_WEIGHTS)


class TextMinHasher:
    """MinHash signatures of word shingles, and the LSH band values to look them up by.

    Words are the whitespace-separated tokens of the normalised, case-folded text with
    punctuation deleted, so case, punctuation and spacing changes leave a signature
    unchanged. A shingle is ``shingle_words`` consecutive words; a text with fewer words is
    one shingle of all of them (an empty one for a text without words), so every text has a
    signature. Scripts written without spaces form one word per run and are in effect
    compared whole.

    Two-word shingles keep local word order in the comparison without making short texts
    fragile: one word added to or dropped from a 20-word paragraph leaves a Jaccard of about
    0.85, above the default threshold of 0.8 by more than the estimate's spread at 128
    permutations (about 0.03); with three-word shingles it is 0.75 and such copies are lost.
    """

    def __init__(self, num_perm: int = 128, shingle_words: int = 2, threshold: float = 0.8,
                 seed: int = 1) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if shingle_words < 1:
            raise ValueError(f"shingle_words must be >= 1, got {shingle_words}")
        self.num_perm = num_perm
        self.shingle_words = shingle_words
        self.threshold = threshold
        self.seed = seed
        self.bands, self.rows = _bands_rows(threshold, num_perm)
        from datasketch import MinHash
        from datasketch.hashfunc import sha1_hash64

        # Permutations are drawn once; each signature starts from a copy of this empty one.
        self._empty = MinHash(num_perm, seed=seed, hashfunc=sha1_hash64, scheme=_SCHEME)

    @property
    def config_id(self) -> str:
        """Everything that makes two signatures or band values comparable, as one string."""
        return (f"minhash-{_SCHEME}-sha1_64:perm={self.num_perm}:seed={self.seed}"
                f":words={self.shingle_words}:bands={self.bands}x{self.rows}")

    def shingles(self, text: str) -> list[bytes]:
        # normalize leaves single ASCII spaces, so splitting the UTF-8 bytes splits words.
        words = _NON_WORD.sub(_drop_punctuation, normalize(text).casefold()).encode().split()
        k = self.shingle_words
        if len(words) <= k:
            return [b" ".join(words)]
        n = len(words) - k + 1
        return [b" ".join(s) for s in zip(*(words[i:i + n] for i in range(k)), strict=True)]

    def signature(self, text: str) -> np.ndarray:
        """The MinHash of the text's shingles: ``num_perm`` uint64 values."""
        minhash = self._empty.copy()
        minhash.update_batch(self.shingles(text))
        return minhash.hashvalues

    def band_values(self, signature: np.ndarray) -> list[int]:
        """One signed 64-bit value per band (list index = band number), for a BIGINT column.

        Two signatures share a band value when all ``rows`` values of that band agree (up to
        a 2**-64 chance of a blake2b collision). The band number is not part of the value.
        """
        data = to_bytes(self._checked(signature))
        step = self.rows * _DTYPE.itemsize
        return [int.from_bytes(hashlib.blake2b(data[i * step:(i + 1) * step],
                                               digest_size=8).digest(), "little", signed=True)
                for i in range(self.bands)]

    @staticmethod
    def similarity(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
        """The estimated Jaccard: the share of permutations whose minima agree (as
        ``MinHash.jaccard``)."""
        if len(sig_a) != len(sig_b):
            raise ValueError(f"signatures of {len(sig_a)} and {len(sig_b)} permutations")
        return float(np.count_nonzero(sig_a == sig_b)) / len(sig_a)

    def rule(self, similarity: float) -> str:
        """Why an item was dropped, for its verdict."""
        return f"minhash_jaccard={similarity:.2f}>={self.threshold:g}"

    def _checked(self, signature: np.ndarray) -> np.ndarray:
        if len(signature) != self.num_perm:
            raise ValueError(f"signature of {len(signature)} permutations, expected "
                             f"{self.num_perm}")
        return signature


class TextNearIndex:
    """Signatures added so far, looked up by shared LSH bands, for one resolve pass.

    Buckets are keyed by ``band_values``, the same values the database stores, so loading
    published neighbours and resolving a batch agree on what is a candidate.
    """

    def __init__(self, hasher: TextMinHasher) -> None:
        self.hasher = hasher
        self._signatures: dict[int, np.ndarray] = {}
        self._buckets: list[dict[int, list[int]]] = [{} for _ in range(hasher.bands)]
        # A text that ``nearest`` finds no match for is ``add``ed next: its band values are
        # kept for that call rather than hashed twice.
        self._last: tuple[bytes, list[int]] = (b"", [])

    def __len__(self) -> int:
        return len(self._signatures)

    def add(self, ref: int, signature: np.ndarray) -> None:
        """Index ``signature`` under ``ref``; adding the same pair again changes nothing."""
        known = self._signatures.get(ref)
        if known is not None:
            if not np.array_equal(known, signature):
                raise ValueError(f"ref {ref} is already indexed with another signature")
            return
        values = self._band_values(signature)
        self._signatures[ref] = signature
        for bucket, value in zip(self._buckets, values, strict=True):
            bucket.setdefault(value, []).append(ref)

    def nearest(self, signature: np.ndarray) -> tuple[int, float] | None:
        """The indexed ref most similar to ``signature`` if its estimated Jaccard reaches the
        threshold, else None. Of equally similar refs, the lowest wins."""
        candidates: set[int] = set()
        for bucket, value in zip(self._buckets, self._band_values(signature), strict=True):
            candidates.update(bucket.get(value, ()))
        best: tuple[int, float] | None = None
        for ref in sorted(candidates):
            sim = self.hasher.similarity(signature, self._signatures[ref])
            if sim >= self.hasher.threshold and (best is None or sim > best[1]):
                best = (ref, sim)
        return best

    def _band_values(self, signature: np.ndarray) -> list[int]:
        key = to_bytes(signature)
        if key != self._last[0]:
            self._last = (key, self.hasher.band_values(signature))
        return self._last[1]
