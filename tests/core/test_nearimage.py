"""The near-image rule, and the check hash it confirms pHash candidates with, on real images.

The real-image set is ``bench.neardata``: pictures installed on this machine (icons,
documentation figures) with resized, re-encoded and re-saved copies planted after them.
"""

from __future__ import annotations

import io
import statistics

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from autods.core.dedup import Candidate, ImageNearRule, resolve
from autods.core.hashing import hamming, image_features, phash_to_int, to_grayscale
from autods.core.nearimage import (
    CHECK_BAND_BASE,
    CHECK_RADIUS,
    MAX_RADIUS,
    MAX_REGION_DIFF,
    SURE_CHECK,
    SURE_PHASH,
    THUMB_SIDE,
    band_layouts,
    band_probes,
    band_radius,
    band_rows,
    budget,
    candidate_radius,
    confirm,
    is_candidate,
    region_distance,
    thumbnail,
)
from autods.core.records import ImageFeatures, ItemStatus
from bench import neardata

N_ORIGINALS = 30


@pytest.fixture(scope="module")
def nearset() -> neardata.NearSet:
    built = neardata.build(N_ORIGINALS)
    if len(built.originals) < N_ORIGINALS:
        pytest.skip(f"only {len(built.originals)} distinct images installed on this machine "
                    f"(icon themes, /usr/share, site-packages); the set needs {N_ORIGINALS}")
    return built


@pytest.fixture(scope="module")
def features(nearset: neardata.NearSet) -> dict[str, ImageFeatures]:
    return ({o.key: image_features(o.data) for o in nearset.originals}
            | {c.key: image_features(c.data) for c in nearset.copies})


def _thumbnail_source(blob: bytes) -> Image.Image:
    """The grayscale image pHash has always been computed from (JPEGs drafted to 64 px)."""
    img = Image.open(io.BytesIO(blob))
    if img.format == "JPEG":
        img.draft("L", (64, 64))
    img.load()
    return to_grayscale(img)


def _on_white(copy: neardata.Copy) -> bool:
    """Copies flattened on black lose their picture's background: no pHash rule finds them."""
    return "black" not in copy.transform


# The rule


def test_radius_is_the_budget_capped_at_ten_unless_k_is_wider():
    assert [candidate_radius(k) for k in (0, 1, 4, 5, 12, 15)] == [2, 4, 10, 10, 12, 15]
    assert all(candidate_radius(k) >= k for k in range(16))
    assert all(candidate_radius(k) <= max(k, MAX_RADIUS) for k in range(16))


def test_check_allowance_shrinks_as_phash_distance_grows():
    check = 0
    accepted = {}
    for phash_distance in range(0, 12, 2):
        accepted[phash_distance] = max(
            (c for c in range(17)
             if confirm(phash_distance, check, check ^ ((1 << c) - 1), 4) is not None),
            default=None)
    assert accepted == {0: 5, 2: 4, 4: 3, 6: 2, 8: 1, 10: 0}


def test_confirm_scores_and_explains():
    assert confirm(6, 0, 0b11, 4) == (10.0, "phash=6,dhash_v=2,phash+2*dhash_v=10<=10")
    assert confirm(0, -1, -1, 4) == (0.0, "phash=0,dhash_v=0,phash+2*dhash_v=0<=10")
    assert confirm(12, 0, 0, 4) is None  # beyond the candidate radius
    assert confirm(4, 0, 0b1111, 4) is None  # 4 + 2 * 4 > 10


def test_check_distance_uses_all_64_bits_of_signed_values():
    low = 0x7FFFFFFFFFFFFFFF  # only the sign bit differs from -1
    assert confirm(0, low, -1, 4) == (2.0, "phash=0,dhash_v=1,phash+2*dhash_v=2<=10")


@pytest.mark.parametrize(("a", "b"), [(None, 5), (5, None), (None, None)])
def test_missing_check_falls_back_to_phash_within_k(a, b):
    assert confirm(4, a, b, 4) == (4.0, "phash=4<=4")
    assert confirm(6, a, b, 4) is None


def test_budget_grows_with_k():
    assert [budget(k) for k in (0, 4, 8)] == [2, 10, 18]


# The check hash


def test_phash_is_computed_as_before(nearset):
    """The check comes from the thumbnail pHash reads; pHash itself is unchanged, so hashes
    stored by earlier versions still compare."""
    for blob in [o.data for o in nearset.originals] + [c.data for c in nearset.copies]:
        expected = phash_to_int(imagehash.phash(_thumbnail_source(blob)))
        assert image_features(blob).phash == expected


def test_check_is_a_signed_64_bit_dhash_vertical(nearset, features):
    for o in nearset.originals:
        check = features[o.key].check
        assert -(1 << 63) <= check < (1 << 63)
        thumb = _thumbnail_source(o.data).resize((32, 32), imagehash.ANTIALIAS)
        assert check == phash_to_int(imagehash.dhash_vertical(thumb))


def test_check_survives_copies_and_tells_distinct_pictures_apart(nearset, features):
    copy_distances = [hamming(features[c.key].check, features[c.original].check)
                      for c in nearset.copies if _on_white(c)]
    checks = [features[o.key].check for o in nearset.originals]
    distinct = [hamming(a, b) for i, a in enumerate(checks) for b in checks[i + 1:]]
    assert statistics.median(copy_distances) == 0
    assert sum(d <= 3 for d in copy_distances) >= 0.9 * len(copy_distances)
    assert len(set(checks)) == len(checks)
    assert max(copy_distances) < statistics.median(distinct)


# On real images, as resolve decides


@pytest.mark.parametrize("prints", [False, True], ids=["hashes", "region-prints"])
def test_real_copies_found_and_no_distinct_picture_dropped(nearset, features, prints):
    keys = [o.key for o in nearset.originals] + [c.key for c in nearset.copies]
    original_of = {o.key: o.key for o in nearset.originals}
    original_of |= {c.key: c.original for c in nearset.copies}
    candidates = [Candidate(i, i, i, features[key].phash, features[key].check,
                            features[key].thumb if prints else None)
                  for i, key in enumerate(keys)]
    verdicts = {v.item_id: v for v in resolve(candidates, {}, [ImageNearRule(4)])}

    originals_dropped = [keys[i] for i in range(len(nearset.originals))
                         if verdicts[i].status is not ItemStatus.PUBLISHED]
    found, wrong, planted = 0, [], 0
    for i, copy in enumerate(nearset.copies, start=len(nearset.originals)):
        v = verdicts[i]
        if v.status is ItemStatus.NEAR_DUPLICATE:
            if original_of[keys[v.duplicate_of]] != copy.original:
                wrong.append((copy.key, keys[v.duplicate_of]))
            elif _on_white(copy):
                found += 1
        planted += _on_white(copy)
    assert originals_dropped == []
    assert wrong == []
    assert found / planted >= 0.95, f"found {found} of {planted} copies"


# Region prints


def _print(img: Image.Image) -> bytes:
    return thumbnail(to_grayscale(img).resize((32, 32), imagehash.ANTIALIAS))


def _line_art() -> Image.Image:
    from PIL import ImageDraw

    img = Image.new("L", (128, 128), 255)
    draw = ImageDraw.Draw(img)
    draw.ellipse((20, 20, 108, 108), outline=0, width=6)
    draw.line((20, 64, 108, 64), fill=0, width=6)
    return img


def test_a_print_is_a_small_grey_image_and_a_copy_is_close_everywhere():
    art = _line_art()
    print_ = _print(art)
    assert len(print_) == THUMB_SIDE * THUMB_SIDE
    buf = io.BytesIO()
    art.resize((77, 77), Image.BICUBIC).save(buf, "JPEG", quality=70)
    copy = _print(Image.open(buf))
    assert region_distance(print_, print_) == 0.0
    assert region_distance(print_, copy) <= MAX_REGION_DIFF


def test_a_sibling_differing_in_one_corner_is_vetoed_though_its_hashes_agree():
    from PIL import ImageDraw

    art = _line_art()
    sibling = art.copy()
    ImageDraw.Draw(sibling).rectangle((100, 0, 127, 27), fill=0)  # an emblem in a corner
    a, b = image_features(_png(art)), image_features(_png(sibling))
    phash_d, check_d = hamming(a.phash, b.phash), hamming(a.check, b.check)
    assert is_candidate(phash_d, check_d, 4)  # the hashes alone would drop it
    assert region_distance(a.thumb, b.thumb) > MAX_REGION_DIFF
    assert confirm(phash_d, a.check, b.check, 4, a.thumb, b.thumb) is None


def test_close_check_hashes_bring_a_drifted_pair_to_the_region_check():
    same = bytes(THUMB_SIDE * THUMB_SIDE)
    # pHash 20 bits apart: beyond any pHash radius, but the check hashes are 2 apart.
    score, text = confirm(20, 0, 0b11, 4, same, same)
    assert score == pytest.approx((20 + 2 * 2) / 10) and "region=0.0" in text
    assert confirm(20, 0, 0b11, 4) is None  # without prints, the hash rule alone
    assert confirm(20, 0, 0b11111, 4, same, same) is None  # check beyond its radius


def test_band_rows_index_the_check_hash_after_the_phash():
    rows = band_rows(-1, 5, band_layouts(10, None))  # exact bands: k + 1 of each hash
    assert [n for n, _ in rows] == [*range(11), *range(CHECK_BAND_BASE,
                                                      CHECK_BAND_BASE + CHECK_RADIUS + 1)]
    assert [n for n, _ in band_rows(-1, None, band_layouts(4, None))] == list(range(5))
    assert rows[11] == (CHECK_BAND_BASE, 5)  # the check hash's lowest band


def test_a_large_index_probes_fewer_wider_bands_and_finds_every_hash_within_k():
    """At 1M images, k=4: three bands of 21-22 bits, two probed within one bit."""
    layouts = band_layouts(4, 1 << 20)
    assert [(len(bits), r) for bits, r in layouts[0]] == [(22, 1), (21, 1), (21, 0)]
    assert layouts[1] == layouts[0]
    # Bits 0, 22 and 50 fall in strided bands 0, 1 and 2 (bit b in band b mod 3).
    stored, query = 0x0123_4567_89AB_CDEF, 0x0123_4567_89AB_CDEF ^ (1 | 1 << 22 | 1 << 50)
    check = 0x00FF_00FF_00FF_00FF
    rows = set(band_rows(stored, check, layouts))
    # Two check bits, both in band 0.
    probes = [(n, values.tolist()) for n, values, _ in band_probes(
        np.array([query], dtype=np.uint64), np.array([check ^ 0b1001], dtype=np.uint64),
        layouts)]
    assert [n for n, _ in probes] == [0, 1, 2, CHECK_BAND_BASE, CHECK_BAND_BASE + 1,
                                      CHECK_BAND_BASE + 2]
    assert [len(values) for _, values in probes] == [23, 22, 1, 23, 22, 1]
    # Three bits apart, one in each pHash band: the two probed within a bit find it.
    hits = {(n, v) for n, values in probes for v in values} & rows
    assert {n for n, _ in hits} == {0, 1, CHECK_BAND_BASE + 1, CHECK_BAND_BASE + 2}


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("k", range(13))
def test_the_band_index_finds_every_candidate_the_rule_admits(k):
    """Every (pHash, check) distance pair ``is_candidate`` admits is within the pHash bands'
    radius or the check bands'."""
    for phash_d in range(65):
        for check_d in range(65):
            if is_candidate(phash_d, check_d, k):
                assert phash_d <= band_radius(k) or check_d <= CHECK_RADIUS, (phash_d, check_d)
    assert band_radius(4) == 4 and band_radius(12) == candidate_radius(12)


def test_a_copy_trimmed_by_a_pixel_is_confirmed_by_its_close_hashes():
    """A 1 px trim shifts the sharp edges of a 96 px picture enough to exceed the region
    limit in one cell; both hashes stay within 2 bits, which confirms the pair."""
    from examples.sampledata import near_duplicate_bytes, structured_image

    buf = io.BytesIO()
    structured_image(1091, (96, 96)).save(buf, "JPEG", quality=90)
    a = image_features(buf.getvalue())
    b = image_features(near_duplicate_bytes(Image.open(io.BytesIO(buf.getvalue()))))
    phash_d, check_d = hamming(a.phash, b.phash), hamming(a.check, b.check)
    assert region_distance(a.thumb, b.thumb) > MAX_REGION_DIFF
    assert phash_d <= SURE_PHASH and check_d <= SURE_CHECK
    score, text = confirm(phash_d, a.check, b.check, 4, a.thumb, b.thumb)
    assert text.startswith(f"phash={phash_d},dhash_v={check_d}<=") and "region=11.6" in text
    # Two more bits of either hash and the region prints decide alone.
    assert confirm(phash_d + SURE_PHASH + 1, a.check, b.check, 4, a.thumb, b.thumb) is None


@settings(max_examples=400, deadline=None)
@given(k=st.integers(0, 10), phash=st.integers(0, 2**64 - 1), check=st.integers(0, 2**64 - 1),
       phash_bits=st.sets(st.integers(0, 63), max_size=12),
       check_bits=st.sets(st.integers(0, 63), max_size=7),
       thumbs=st.sampled_from(["both", "one", "none"]), with_checks=st.booleans())
def test_the_rule_finds_every_pair_it_would_confirm(k, phash, check, phash_bits, check_bits,
                                                    thumbs, with_checks):
    """The pHash index searches only the band radius; the check index covers the rest."""
    other_phash = phash ^ sum(1 << b for b in phash_bits)
    other_check = check ^ sum(1 << b for b in check_bits)
    thumb = bytes(THUMB_SIDE * THUMB_SIDE)
    thumb_a = thumb if thumbs != "none" else None
    thumb_b = thumb if thumbs == "both" else None
    checks = (check, other_check) if with_checks else (None, None)
    rule = ImageNearRule(k)
    rule.add_published(1, phash, checks[0], thumb_a)
    found = rule.match(Candidate(2, 2, 2, other_phash, checks[1], thumb_b))
    expected = confirm(len(phash_bits), checks[0], checks[1], k, thumb_a, thumb_b)
    assert (found is not None) == (expected is not None)
