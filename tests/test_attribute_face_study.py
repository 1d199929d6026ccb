"""Chapter 6.3's attribute-conditional faces: labels split into attributes, intervals, the measurement's shape."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import binomtest

from aigc_lab import attribute_face_study as study
from aigc_lab.stats import wilson_interval
from aigc_lab.data.faces import face_class, face_class_attributes, face_classes


def test_attribute_values_read_back_the_data_modules_labels() -> None:
    labels = torch.arange(len(face_classes()))
    values = study.attribute_values(labels)
    for k in labels.tolist():
        named = face_class_attributes(k)
        from aigc_lab.data.faces import FACTORS

        assert {a: FACTORS[a][int(values[a][k])] for a in study.ATTRIBUTES} == named
    assert face_class(hair="blond", mouth="smile", glasses="glasses") == 9
    assert {a: int(v[9]) for a, v in values.items()} == {"hair": 2, "mouth": 0, "glasses": 1}


@pytest.mark.parametrize("k, n", [(0, 10), (10, 10), (7, 20), (313, 320), (160, 320)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(expected.low, abs=1e-4) and high == pytest.approx(expected.high, abs=1e-4)


def test_wilson_interval_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError, match="n >= 1"):
        wilson_interval(0, 0)


def test_attribute_accuracy_counts_each_attribute_and_the_whole_label() -> None:
    asked = torch.tensor([9, 9, 9, 9])
    # right; wrong glasses (8); wrong mouth (11); wrong hair (1): each attribute wrong once, the label three times
    predicted = torch.tensor([9, 8, 11, 1])
    rows = {r["attribute"]: r for r in study.attribute_accuracy(predicted, asked)}
    assert rows["hair"]["right"] == 0.75 and rows["mouth"]["right"] == 0.75 and rows["glasses"]["right"] == 0.75
    assert rows["all three"]["right"] == 0.25
    assert all(r["95% low"] <= r["right"] <= r["95% high"] for r in rows.values())
    with pytest.raises(ValueError, match="same length"):
        study.attribute_accuracy(predicted[:3], asked)
