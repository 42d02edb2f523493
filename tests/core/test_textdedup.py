import numpy as np
import pytest

from autods.core.textdedup import (
    TextMinHasher,
    TextNearIndex,
    from_bytes,
    normalize,
    normalized_sha256,
    to_bytes,
)
from bench import textdata


@pytest.fixture(scope="module")
def hasher() -> TextMinHasher:
    return TextMinHasher()


@pytest.fixture(scope="module")
def stream(hasher) -> list[textdata.Item]:
    """The first paragraphs of the Python documentation, made distinct, with near copies."""
    texts = textdata.distinct(textdata.paragraphs(400), hasher)
    return textdata.plant(texts, 60, seed=1)


def _resolve(items: list[str], hasher: TextMinHasher) -> list[tuple[int, float] | None]:
    index = TextNearIndex(hasher)
    verdicts = []
    for ref, text in enumerate(items):
        signature = hasher.signature(text)
        hit = index.nearest(signature)
        if hit is None:
            index.add(ref, signature)
        verdicts.append(hit)
    return verdicts


def test_planted_copies_are_found_and_distinct_paragraphs_kept(stream, hasher):
    verdicts = _resolve([item.text for item in stream], hasher)
    copies = [(item, hit) for item, hit in zip(stream, verdicts, strict=True)
              if item.origin is not None]
    assert {item.edit for item, _ in copies} == set(textdata.EDITS)
    found = sum(1 for item, hit in copies if hit and hit[0] == item.origin)
    assert found / len(copies) >= 0.95
    dropped = [item.text for item, hit in zip(stream, verdicts, strict=True)
               if item.origin is None and hit]
    assert dropped == []
    assert all(hit[1] >= hasher.threshold for _, hit in copies if hit)


def test_distinct_leaves_no_pair_at_the_threshold(stream, hasher):
    originals = [set(hasher.shingles(item.text)) for item in stream if item.origin is None]
    for i, a in enumerate(originals[:60]):
        assert all(textdata.jaccard(a, b) < hasher.threshold for b in originals[i + 1:])


@pytest.mark.parametrize(("text", "expected"), [
    ("ＡＢＣ　１２３", "ABC 123"),                      # full-width letters, digits, space
    ("non\u00a0breaking\u2009spaces", "non breaking spaces"),
    ("trailing newlines\n\n", "trailing newlines"),
    ("\t tabs  and\r\nCRLF \n", "tabs and CRLF"),
    ("ﬁne ligature", "fine ligature"),
    ("Case Is Kept", "Case Is Kept"),
])
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_normalized_sha256_ignores_representation_not_case():
    assert normalized_sha256("ＡＢＣ 　x\n") == normalized_sha256("ABC x")
    assert normalized_sha256("abc x") != normalized_sha256("ABC x")


def test_case_punctuation_and_spacing_leave_the_signature_unchanged(hasher):
    text = "Return the e-mail address of the user, or None if it isn't known."
    variant = "RETURN the email address of the user or none if it isnt known!\n"
    assert np.array_equal(hasher.signature(text), hasher.signature(variant))


def test_punctuation_is_deleted_but_combining_marks_stay_in_their_word():
    unigrams = TextMinHasher(shingle_words=1)
    assert unigrams.shingles("E-mail os.path, don't!") == [b"email", b"ospath", b"dont"]
    # Devanagari vowel signs are combining marks, which \w does not match.
    assert unigrams.shingles("नमस्ते दुनिया") == ["नमस्ते".encode(), "दुनिया".encode()]


def test_a_text_shorter_than_a_shingle_has_a_signature(hasher):
    short, other = hasher.signature("Hello"), hasher.signature("Goodbye")
    assert short.dtype == np.uint64 and len(short) == hasher.num_perm
    assert hasher.similarity(short, hasher.signature("hello!")) == 1.0
    assert hasher.similarity(short, other) < 0.1
    assert len(hasher.signature("")) == hasher.num_perm


def test_signature_round_trips_through_bytes(hasher, stream):
    signature = hasher.signature(stream[0].text)
    data = to_bytes(signature)
    assert len(data) == 8 * hasher.num_perm
    back = from_bytes(data)
    assert back.dtype == np.uint64 and np.array_equal(back, signature)
    assert hasher.band_values(back) == hasher.band_values(signature)
    with pytest.raises(ValueError):
        from_bytes(data[:-1])


def test_band_values_are_signed_64_bit_one_per_band(hasher, stream):
    values = [v for item in stream[:50] for v in hasher.band_values(hasher.signature(item.text))]
    assert len(values) == 50 * hasher.bands
    assert all(isinstance(v, int) and -(2**63) <= v < 2**63 for v in values)
    assert any(v < 0 for v in values) and any(v > 0 for v in values)
    assert hasher.bands * hasher.rows <= hasher.num_perm


def test_band_layout_comes_from_the_threshold(hasher):
    assert (hasher.bands, hasher.rows) == (14, 9)
    assert TextMinHasher(threshold=0.5).config_id != hasher.config_id


def test_signature_of_another_size_is_refused(hasher):
    with pytest.raises(ValueError):
        hasher.band_values(TextMinHasher(num_perm=64).signature("some words here"))


def test_rule_explains_the_drop(hasher):
    assert hasher.rule(0.859375) == "minhash_jaccard=0.86>=0.8"


def test_adding_in_two_passes_equals_one_pass(stream, hasher):
    signatures = [hasher.signature(item.text) for item in stream]
    whole = TextNearIndex(hasher)
    for ref, sig in enumerate(signatures):
        whole.add(ref, sig)
    halves = TextNearIndex(hasher)
    for ref, sig in enumerate(signatures[:100]):
        halves.add(ref, sig)
    restored = [from_bytes(to_bytes(sig)) for sig in signatures[100:]]  # as a database returns
    for ref, sig in enumerate(restored, start=100):
        halves.add(ref, sig)
    assert len(halves) == len(whole) == len(signatures)
    # Each paragraph less its first word: found in either half, never by identity.
    probes = [hasher.signature(item.text.split(None, 1)[1]) for item in stream[::5]]
    assert [halves.nearest(p) for p in probes] == [whole.nearest(p) for p in probes]


def test_lowest_ref_wins_ties_and_threshold_is_enforced(hasher):
    text = "the quick brown fox jumps over the lazy dog while the cat sleeps in the sun"
    signature = hasher.signature(text)
    index = TextNearIndex(hasher)
    index.add(7, signature)
    index.add(3, signature.copy())
    index.add(5, signature.copy())
    assert index.nearest(hasher.signature(text.upper())) == (3, 1.0)
    assert index.nearest(hasher.signature("an entirely different sentence about tax law")) is None


def test_the_most_similar_wins_over_a_lower_ref(hasher):
    words = [f"w{i}" for i in range(60)]
    near = " ".join(words[:57] + ["x1", "x2", "x3"])
    index = TextNearIndex(hasher)
    index.add(1, hasher.signature(near))
    index.add(2, hasher.signature(" ".join(words)))
    ref, sim = index.nearest(hasher.signature(" ".join(words)))
    assert (ref, sim) == (2, 1.0)


def test_readding_a_ref(hasher):
    index = TextNearIndex(hasher)
    signature = hasher.signature("one two three four")
    index.add(1, signature)
    index.add(1, signature.copy())
    assert len(index) == 1
    with pytest.raises(ValueError):
        index.add(1, hasher.signature("five six seven eight"))
