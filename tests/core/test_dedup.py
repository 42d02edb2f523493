import random

import pytest

from autods.core import dedup
from autods.core.dedup import (
    Candidate,
    ImageNearRule,
    NearIndex,
    SemanticRule,
    TextExactRule,
    TextNearRule,
    resolve,
)
from autods.core.hashing import hamming
from autods.core.records import ItemStatus


def test_earliest_input_survives_whatever_the_arrival_order():
    cands = [Candidate(item_id=30, ordinal=5, asset_id=1, phash=0),
             Candidate(item_id=10, ordinal=2, asset_id=1, phash=0)]
    verdicts = {v.item_id: v for v in resolve(cands, {}, [ImageNearRule(4)])}
    assert verdicts[10].status == ItemStatus.PUBLISHED
    assert verdicts[30].status == ItemStatus.EXACT_DUPLICATE
    assert verdicts[30].duplicate_of == 10 and verdicts[30].rule == "sha256"


def test_already_published_asset_wins_over_new_items():
    verdicts = resolve([Candidate(5, 0, asset_id=7, phash=123)], {7: 99},
                       [ImageNearRule(4)])
    assert verdicts[0].status == ItemStatus.EXACT_DUPLICATE and verdicts[0].duplicate_of == 99


def test_near_duplicate_recorded_with_original_id_and_distance():
    base = 0x0F0F_0F0F_0F0F_0F0F
    cands = [Candidate(1, 0, 1, base), Candidate(2, 1, 2, base ^ 0b111),
             Candidate(3, 2, 3, base ^ 0xFFFF_0000)]
    verdicts = {v.item_id: v for v in resolve(cands, {}, [ImageNearRule(4)])}
    assert verdicts[2].status == ItemStatus.NEAR_DUPLICATE
    # Without a check hash (items hashed before it existed) the pHash-only rule decides.
    assert verdicts[2].duplicate_of == 1 and verdicts[2].rule == "phash=3<=4"
    assert verdicts[2].score == 3
    assert verdicts[3].status == ItemStatus.PUBLISHED


def test_near_dedup_disabled_publishes_similar_images():
    cands = [Candidate(1, 0, 1, 0), Candidate(2, 1, 2, 1)]
    assert [v.status for v in resolve(cands, {}, [])] == [ItemStatus.PUBLISHED] * 2


def test_nearest_prefers_smaller_distance_then_lower_ref():
    index = NearIndex(4)
    index.add(9, 0b1111)
    index.add(4, 0b0111)
    index.add(2, 0b1110)
    assert index.nearest(0b0110) == (2, 1)
    assert index.nearest(0b0011) == (4, 1)
    assert index.nearest(~0) is None


def test_text_items_without_phash_use_exact_rule_only():
    cands = [Candidate(1, 0, 1, None), Candidate(2, 1, 1, None), Candidate(3, 2, 2, None)]
    statuses = [v.status for v in resolve(cands, {}, [ImageNearRule(4)])]
    assert statuses == [ItemStatus.PUBLISHED, ItemStatus.EXACT_DUPLICATE, ItemStatus.PUBLISHED]


# -- NearIndex against a brute-force scan --------------------------------------------------
# Seeded random cases rather than hypothesis (not a test dependency): the same cases every
# run, many of them pairs at exactly k or k+1 where a banding mistake would show.

MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    """A hash as the BIGINT column stores it."""
    value &= MASK64
    return value - (1 << 64) if value >= (1 << 63) else value


def _flip(rng: random.Random, value: int, bits: int) -> int:
    return _signed(value ^ sum(1 << b for b in rng.sample(range(64), bits)))


def _brute_nearest(stored: dict[int, int], phash: int, k: int) -> tuple[int, int] | None:
    hits = [(hamming(phash, h), ref) for ref, h in stored.items() if hamming(phash, h) <= k]
    return None if not hits else (min(hits)[1], min(hits)[0])


@pytest.mark.parametrize("k", range(17))
def test_nearest_matches_a_brute_force_scan_as_the_index_grows(monkeypatch, k):
    # Planning from 16 hashes re-plans the bands several times while the hashes go in.
    monkeypatch.setattr(dedup, "_MIN_PLAN_SIZE", 16)
    rng = random.Random(k)
    centres = [rng.getrandbits(64) for _ in range(30)]
    refs = rng.sample(range(5000), 1200)  # arbitrary order, so ties test the lowest ref
    index, stored = NearIndex(k), {}
    for count, ref in enumerate(refs, 1):
        phash = _flip(rng, rng.choice(centres), rng.randint(0, k + 2))
        if rng.random() < 0.05 and stored:  # the same hash under another ref
            phash = rng.choice(list(stored.values()))
        index.add(ref, phash)
        stored[ref] = phash
        if count in (40, 300, 1200):
            for _ in range(50):
                query = _flip(rng, rng.choice(centres), rng.randint(0, k + 3))
                assert index.nearest(query) == _brute_nearest(stored, query, k)


@pytest.mark.parametrize("planned", [1024, 1 << 14, 1 << 16, 1 << 20])
@pytest.mark.parametrize("k", [0, 1, 2, 3, 4, 5, 7, 8, 11, 16])
def test_pairs_at_exactly_k_are_found_wherever_the_bits_fall(monkeypatch, k, planned):
    # Runs of k differing bits at every offset sit inside one band or straddle band edges,
    # whichever bands the index picked for this many hashes; one more bit is out of reach.
    monkeypatch.setattr(dedup, "_MIN_PLAN_SIZE", planned)
    rng = random.Random(planned + k)
    for base in (0, MASK64, rng.getrandbits(64)):
        index = NearIndex(k)
        index.add(7, _signed(base))
        for start in range(64 - k + 1):
            run = ((1 << k) - 1) << start
            assert index.nearest(_signed(base ^ run)) == (7, k)
            if start + k < 64:
                assert index.nearest(_signed(base ^ run ^ (1 << (start + k)))) is None
        for _ in range(20):
            assert index.nearest(_flip(rng, base, k)) == (7, k)
            if k < 64:
                assert index.nearest(_flip(rng, base, k + 1)) is None


@pytest.mark.parametrize("k", range(33))
def test_multi_index_bands_cover_the_hash_and_satisfy_the_pigeonhole_bound(k):
    for size in (1, 1024, 1 << 14, 1 << 20, 1 << 30):
        plan = dedup._multi_index_bands(k, size)
        assert [lo for lo, _, _ in plan] == [0] + [hi for _, hi, _ in plan[:-1]]
        assert plan[-1][1] == 64 and all(lo < hi and r >= 0 for lo, hi, r in plan)
        # Differing by more than r in every band would take sum(r + 1) > k bits.
        assert sum(r + 1 for _, _, r in plan) > k


def test_zero_and_ref_zero_are_indexed_like_any_other():
    index = NearIndex(0)
    index.add(0, 0)
    index.add(1, 0)
    assert index.nearest(0) == (0, 0)
    assert index.nearest(1) is None


def test_wide_radius_candidates_need_the_check_to_agree():
    base = 0x0123_4567_89AB_CDEF
    far = base ^ 0b1111111  # 7 bits: beyond k=4, within the candidate radius
    cands = [Candidate(1, 0, 1, base, check=0), Candidate(2, 1, 2, far, check=0b1),
             Candidate(3, 2, 3, far ^ (1 << 40), check=0xFF00)]
    verdicts = {v.item_id: v for v in resolve(cands, {}, [ImageNearRule(4)])}
    assert verdicts[2].status == ItemStatus.NEAR_DUPLICATE and verdicts[2].duplicate_of == 1
    assert verdicts[2].rule.startswith("phash=7,") and verdicts[2].score == 9
    # Its check disagrees by 8 bits: a distinct picture with a close pHash is kept.
    assert verdicts[3].status == ItemStatus.PUBLISHED


def test_rules_apply_in_order_and_each_kept_candidate_joins_every_index():
    import numpy as np

    from autods.core.semantic import SemanticIndex
    from autods.core.textdedup import TextMinHasher, TextNearIndex

    hasher = TextMinHasher()
    text = "the quick brown fox jumps over the lazy dog near the river bank today"
    unit = np.eye(4, dtype=np.float32)
    cands = [
        Candidate(1, 0, 1, None, text_sha256="a", minhash=hasher.signature(text),
                  vector=unit[0]),
        Candidate(2, 1, 2, None, text_sha256="a", minhash=hasher.signature(text + " "),
                  vector=unit[1]),
        Candidate(3, 2, 3, None, text_sha256="b", minhash=hasher.signature(text + " again"),
                  vector=unit[2]),
        Candidate(4, 3, 4, None, text_sha256="c", minhash=hasher.signature("other words"),
                  vector=unit[0] * 0.999 + unit[3] * 0.04),
        Candidate(5, 4, 5, None, text_sha256="d", minhash=hasher.signature("more words"),
                  vector=unit[3]),
    ]
    published: set[int] = set()
    rules = [TextExactRule(), TextNearRule(TextNearIndex(hasher)),
             SemanticRule(SemanticIndex(4), 0.95, published)]
    verdicts = {v.item_id: v for v in resolve(cands, {}, rules)}
    assert (verdicts[2].status, verdicts[2].rule, verdicts[2].duplicate_of) == (
        ItemStatus.EXACT_DUPLICATE, "text_normalized", 1)
    assert verdicts[3].status == ItemStatus.NEAR_DUPLICATE
    assert verdicts[3].rule.startswith("minhash_jaccard=") and verdicts[3].score >= 0.8
    assert verdicts[4].status == ItemStatus.SEMANTIC_DUPLICATE
    assert verdicts[4].duplicate_of == 1 and verdicts[4].score >= 0.95
    assert verdicts[5].status == ItemStatus.PUBLISHED
    assert published == {1, 5}
