import numpy as np
import pytest

from autods.core.semantic import SemanticIndex, duplicate_of, semantic_rule

DIM = 64


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float16)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return _unit(np.random.default_rng(0).standard_normal((500, DIM)))


def _near(vector: np.ndarray, cosine: float, seed: int = 1) -> np.ndarray:
    """A unit vector at the given cosine from ``vector``."""
    v = vector.astype(np.float64)
    other = np.random.default_rng(seed).standard_normal(v.shape)
    other -= (other @ v) * v / (v @ v)
    other /= np.linalg.norm(other)
    return _unit(cosine * v / np.linalg.norm(v) + np.sqrt(1 - cosine**2) * other)


def _filled(vectors: np.ndarray) -> SemanticIndex:
    index = SemanticIndex(DIM)
    for ref, vector in enumerate(vectors):
        index.add(ref * 10, vector)
    return index


def test_empty_index_has_no_match(vectors):
    index = SemanticIndex(DIM)
    assert len(index) == 0 and index.nearest(vectors[0]) is None
    assert duplicate_of(index, vectors[0], 0.5) is None
    assert SemanticIndex.from_bytes(index.to_bytes()).nearest(vectors[0]) is None


def test_finds_a_planted_near_vector_and_reports_its_cosine(vectors):
    index = _filled(vectors)
    query = _near(vectors[123], 0.96)
    q, v = query.astype(np.float64), vectors[123].astype(np.float64)
    exact = q @ v / np.linalg.norm(q) / np.linalg.norm(v)
    ref, similarity = index.nearest(query)
    assert ref == 1230 and similarity == pytest.approx(exact, abs=1e-4)
    assert duplicate_of(index, query, 0.95) == (ref, similarity)
    assert duplicate_of(index, query, 0.97) is None


def test_a_distant_vector_is_no_duplicate(vectors):
    index = _filled(vectors[:100])
    ref, similarity = index.nearest(vectors[400])
    assert similarity < 0.7
    assert duplicate_of(index, vectors[400], 0.9) is None


def test_allowed_filter_skips_disallowed_refs(vectors):
    index = _filled(vectors[:50])
    planted = _near(vectors[7], 0.99)
    index.add(9999, planted)  # say, left by a crashed batch
    query = _near(planted, 0.999, seed=2)
    assert index.nearest(query)[0] == 9999
    assert index.nearest(query, allowed=lambda ref: ref != 9999)[0] == 70
    assert index.nearest(query, allowed=lambda ref: False) is None
    assert duplicate_of(index, query, 0.9, allowed=lambda ref: ref < 9999)[0] == 70


def test_refs_contains_and_adding_a_ref_twice(vectors):
    index = _filled(vectors[:20])
    assert sorted(index.refs().tolist()) == list(range(0, 200, 10))
    assert 30 in index and 31 not in index
    assert index.add(30, vectors[40]) is False
    assert len(index) == 20 and index.nearest(vectors[3]) == (30, pytest.approx(1.0, abs=1e-3))
    added = index.add_many([30, 500, 501, 500], vectors[[41, 42, 43, 44]])
    assert added == 2 and len(index) == 22
    assert index.nearest(vectors[42])[0] == 500 and index.nearest(vectors[43])[0] == 501
    assert index.nearest(vectors[44])[1] < 0.9  # the second 500 was not added


def test_round_trip_to_bytes_keeps_answers(vectors):
    index = _filled(vectors[:300])
    queries = [_near(v, 0.9, seed=i) for i, v in enumerate(vectors[::7])]
    restored = SemanticIndex.from_bytes(index.to_bytes())
    assert restored.dim == DIM and len(restored) == 300
    assert set(restored.refs().tolist()) == set(index.refs().tolist())
    assert [restored.nearest(q) for q in queries] == [index.nearest(q) for q in queries]
    restored.add(7777, vectors[400])
    assert restored.nearest(vectors[400]) == (7777, pytest.approx(1.0, abs=1e-3))


def test_same_inputs_in_same_order_give_the_same_index(vectors):
    a, b = _filled(vectors), _filled(vectors)
    assert a.to_bytes() == b.to_bytes()
    queries = [_near(v, 0.8, seed=i) for i, v in enumerate(vectors[::11])]
    assert [a.nearest(q, count=5, allowed=lambda r: r % 20 == 0) for q in queries] == [
        b.nearest(q, count=5, allowed=lambda r: r % 20 == 0) for q in queries]


def test_dimension_mismatch_is_a_value_error(vectors):
    index = SemanticIndex(DIM)
    with pytest.raises(ValueError, match=r"\(64,\)"):
        index.add(1, np.zeros(DIM + 1, np.float16))
    with pytest.raises(ValueError, match=r"\(n, 64\)"):
        index.add_many([1, 2], np.zeros((2, 32), np.float16))
    with pytest.raises(ValueError, match="2 refs for 3 vectors"):
        index.add_many([1, 2], vectors[:3])
    with pytest.raises(ValueError, match="non-negative"):
        index.add_many([-1], vectors[:1])
    index.add(1, vectors[0])
    with pytest.raises(ValueError):
        index.nearest(vectors[0][:10])
    with pytest.raises(ValueError):
        SemanticIndex.from_bytes(b"not an index")


def test_rule_text():
    assert semantic_rule(0.98765, 0.95) == "semantic_cosine=0.988>=0.95"
