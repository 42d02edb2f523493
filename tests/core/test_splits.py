from collections import Counter

import pytest

from autods.core.splits import Stratified, by_key, parse_fractions


def test_parse_fractions():
    assert parse_fractions("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert parse_fractions("0.9,0.1") == (0.9, 0.1)
    assert parse_fractions("8,1,1") == pytest.approx((0.8, 0.1, 0.1))
    for bad in ("0,0", "1", "a,b", "0.5,0.5,0,0", "-0.1,1.1", "inf,1", "1e308,1e308"):
        with pytest.raises(ValueError):
            parse_fractions(bad)


def test_by_key_is_a_function_of_the_key_in_the_given_proportions():
    keys = [f"{i * 7919:024x}" for i in range(20_000)]
    first = [by_key(k, (0.8, 0.1, 0.1)) for k in keys]
    assert first == [by_key(k, (0.8, 0.1, 0.1)) for k in keys]
    counts = Counter(first)
    assert abs(counts["train"] / 20_000 - 0.8) < 0.015
    assert abs(counts["val"] / 20_000 - 0.1) < 0.01
    assert set(Counter(by_key(k, (0.5, 0.5)) for k in keys)) == {"train", "val"}


def test_stratified_splits_every_label_in_proportion_and_continues_from_counts():
    dealer = Stratified((0.8, 0.1, 0.1))
    dealt = [(label, dealer.assign(label)) for label in ["cat"] * 50 + ["rare"] * 10]
    cats = Counter(s for label, s in dealt if label == "cat")
    rare = Counter(s for label, s in dealt if label == "rare")
    assert cats == {"train": 40, "val": 5, "test": 5}
    assert rare == {"train": 8, "val": 1, "test": 1}
    # A later job goes on from the dataset's counts: the next ten cats are dealt as the
    # sixth ten of one long run would be.
    resumed = Stratified((0.8, 0.1, 0.1), {("cat", k): v for k, v in cats.items()})
    more = [resumed.assign("cat") for _ in range(10)]
    continued = Stratified((0.8, 0.1, 0.1))
    whole = [continued.assign("cat") for _ in range(60)]
    assert more == whole[50:]
