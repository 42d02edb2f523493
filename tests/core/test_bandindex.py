"""Band layouts of the database's near-duplicate index: every hash within k is found, at
every size a dataset's layout is planned for, and band values fit a signed 64-bit column."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autods.core import bandindex
from autods.core.hashing import hamming


@settings(max_examples=300, deadline=None)
@given(k=st.integers(0, 12), doublings=st.integers(0, 14), stored=st.integers(0, 2**64 - 1),
       bits=st.sets(st.integers(0, 63), max_size=12), data=st.data())
def test_a_hash_within_k_shares_a_probed_value_in_some_band(k, doublings, stored, bits, data):
    bits = sorted(bits)[:k]
    query = stored
    for bit in bits:
        query ^= 1 << bit
    layout = bandindex.strided(
        bandindex.plan(k, bandindex.MIN_PLAN_SIZE << doublings, bandindex.DB_COMPARE_COST))
    if data.draw(st.booleans()):
        layout = bandindex.contiguous(bandindex.exact(k))
    rows = bandindex.rows(stored, layout)
    probes = bandindex.probes(query, layout)
    assert any(row in values for row, values in zip(rows, probes, strict=True))
    # Probes are what ``flips`` says: the band's own value and each within its radius.
    assert [len(v) for v in probes] == [bandindex.ball(len(bits), r) for bits, r in layout]
    # Every bit in exactly one band.
    assert sorted(b for bits, _ in layout for b in bits) == list(range(64))


def test_a_hash_beyond_every_radius_is_not_probed():
    layout = bandindex.contiguous(bandindex.split(4, 3))  # radii 1, 1, 0
    stored = 0
    query = 0b11 | 0b11 << 21 | 1 << 43  # two bits in each probed band, one in the exact
    assert not any(row in values for row, values in
                   zip(bandindex.rows(stored, layout), bandindex.probes(query, layout),
                       strict=True))


def test_values_fit_a_signed_bigint_even_for_a_whole_hash_band():
    for value in (0, 1, 2**63 - 1, 2**63, 2**64 - 1, -1):
        layout = bandindex.contiguous(bandindex.exact(0))
        (row,) = bandindex.rows(value, layout)
        assert -2**63 <= row < 2**63 and row & (2**64 - 1) == value & (2**64 - 1)
        assert row in bandindex.probes(value, layout)[0]


def test_plans_widen_as_the_index_grows_and_sizes_double():
    assert [bandindex.plan_size(n) for n in (0, 1024, 1025, 5000)] == [1024, 1024, 2048, 8192]
    widths = {size: len(bandindex.plan(4, size, bandindex.DB_COMPARE_COST))
              for size in (1024, 8192, 32768, 1 << 20)}
    assert widths == {1024: 5, 8192: 4, 32768: 3, 1 << 20: 3}
    assert bandindex.plan(4, 1024, bandindex.DB_COMPARE_COST) == bandindex.exact(4)


def test_strided_bands_gather_every_mth_bit_and_keep_the_radii():
    layout = bandindex.strided(bandindex.split(4, 3))
    assert [bits[:3] for bits, _ in layout] == [(0, 3, 6), (1, 4, 7), (2, 5, 8)]
    assert [(len(bits), r) for bits, r in layout] == [(22, 1), (21, 1), (21, 0)]
    # Bit 3 is the second bit of band 0; bits 1 and 63 the first and last of bands 1, 0.
    assert bandindex.rows(1 << 3 | 1 << 1 | 1 << 63, layout) == [0b10 | 1 << 21, 1, 0]


@pytest.mark.parametrize("k", [0, 1, 4, 7, 15])
def test_bands_cover_64_bits_and_near_pairs_share_one(k):
    slices = bandindex.exact(k)
    assert slices[0][0] == 0 and slices[-1][1] == 64 and len(slices) == k + 1
    layout = bandindex.contiguous(slices)
    rng = np.random.default_rng(k)
    for _ in range(200):
        a = int(rng.integers(-(2**63), 2**63 - 1))
        flips = rng.choice(64, size=k, replace=False) if k else []
        b = a
        for bit in flips:
            b ^= 1 << int(bit)
        b = b - (1 << 64) if b >= (1 << 63) else b
        assert hamming(a, b) == k
        assert any(x == y for x, y in zip(bandindex.rows(a, layout),
                                          bandindex.rows(b, layout), strict=True))


@settings(max_examples=60, deadline=None)
@given(k=st.integers(0, 8), doublings=st.integers(0, 10), seed=st.integers(0, 2**32 - 1),
       flips_per_copy=st.lists(st.integers(0, 10), min_size=1, max_size=30))
def test_matching_in_arrays_finds_exactly_the_stored_hashes_within_k(
        k, doublings, seed, flips_per_copy):
    rng = np.random.default_rng(seed)
    stored = rng.integers(0, 2**64 - 1, 300, dtype=np.uint64, endpoint=True)
    # Queries: copies of stored hashes with 0..10 bits flipped, and unrelated hashes.
    queries = []
    for i, n in enumerate(flips_per_copy):
        value = int(stored[i * 7 % len(stored)])
        for bit in rng.choice(64, size=n, replace=False):
            value ^= 1 << int(bit)
        queries.append(value)
    queries += rng.integers(0, 2**64 - 1, 20, dtype=np.uint64).tolist()
    layout = bandindex.strided(
        bandindex.plan(k, bandindex.MIN_PLAN_SIZE << doublings, bandindex.DB_COMPARE_COST))
    found = bandindex.within_any(np.array(queries, dtype=np.uint64), stored, layout, k)
    brute = [i for i, s in enumerate(stored.tolist())
             if any(hamming(s, q) <= k for q in queries)]
    assert found.tolist() == brute
    # Copies within k of their source find it.
    assert {i * 7 % len(stored) for i, n in enumerate(flips_per_copy) if n <= k} <= set(brute)


def test_bands_gathered_in_arrays_are_the_bands_gathered_one_by_one():
    values = np.random.default_rng(3).integers(0, 2**64 - 1, 500, dtype=np.uint64)
    for k, size in ((4, 1 << 16), (2, 1 << 10), (0, 1024)):
        for bits, _ in bandindex.strided(bandindex.plan(k, size, bandindex.DB_COMPARE_COST)):
            assert bandindex.gather_many(values, bits).tolist() == [
                bandindex.gather(int(v), bits) for v in values]


def test_probes_in_arrays_are_the_probes_of_each_hash_as_stored():
    values = np.random.default_rng(4).integers(0, 2**64 - 1, 200, dtype=np.uint64)
    layouts = (bandindex.strided(bandindex.plan(4, 1 << 16, bandindex.DB_COMPARE_COST)),
               bandindex.contiguous(bandindex.exact(0)))  # a whole-hash band: signed values
    for layout in layouts:
        for n, (bits, radius) in enumerate(layout):
            assert bandindex.probes_many(values, bits, radius).tolist() == [
                bandindex.probes(int(v), layout)[n] for v in values]
