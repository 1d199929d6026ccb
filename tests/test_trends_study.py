"""Chapter 8.2's data: nested digit subsets, the imbalanced shapes, the colour rule, the oversampling fix, the copying check."""

from __future__ import annotations

import pytest
import torch

from aigc_lab import trends_study as study
from aigc_lab.data import load_dataset


def test_digit_subsets_are_nested_and_sized() -> None:
    small, large = study.digits_subset(100), study.digits_subset(300)
    assert len(small) == 100 and len(large) == 300
    assert torch.equal(large.images[:100], small.images)
    assert len(study.digits_subset(1000)) == len(load_dataset("digits", "train"))
    with pytest.raises(ValueError, match="between 2 and"):
        study.digits_subset(5000)


def test_the_colour_rule_reads_every_real_shape_right() -> None:
    data = load_dataset("shapes", "val", n=400, size=study.BIAS_SIZE, colours="red,blue")
    blue = data.attributes["colour"] == 2  # COLOUR_NAMES: red 0, green 1, blue 2
    assert torch.equal(study.is_minority(data.images), blue)
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        study.is_minority(data.images[:, :1])


@pytest.mark.parametrize("share", [0.1, 0.25])
def test_imbalanced_shapes_hold_the_asked_share_and_oversampling_balances_them(share: float) -> None:
    data = study.imbalanced_shapes(share, n=1000)
    measured = study.minority_share(data.images)
    assert measured["share"] == pytest.approx(share, abs=0.01)
    assert measured["low"] < measured["share"] < measured["high"]
    fixed = study.oversampled(data)
    assert study.minority_share(fixed.images)["share"] == pytest.approx(0.5, abs=0.05)
    # the fix adds no new minority image: only repeats
    assert len(torch.unique(fixed.images.flatten(1), dim=0)) == len(torch.unique(data.images.flatten(1), dim=0))
    with pytest.raises(ValueError, match="minority_share"):
        study.imbalanced_shapes(0.7)


def test_memorisation_calls_copies_copies_and_new_images_new() -> None:
    train, test = study.digits_subset(300).images, load_dataset("digits", "test").images
    copies = study.memorisation(train[:50], train, test)
    assert copies["samples_median"] == 0 and copies["ratio"] == 0 and copies["nearer_than_any_held_out"] == 1
    new = study.memorisation(test[:200], train, test[200:])
    assert 0.7 < new["ratio"] < 1.3 and new["nearer_than_any_held_out"] < 0.05


def test_the_kept_minority_is_spread_through_the_set() -> None:
    data = study.imbalanced_shapes(0.1, n=2000)
    blue = study.is_minority(data.images)
    first, second = blue[: len(blue) // 2].double().mean(), blue[len(blue) // 2 :].double().mean()
    assert abs(float(first - second)) < 0.05
