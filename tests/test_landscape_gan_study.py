"""Chapter 6.3's unconditional landscapes: the time-of-day shares and the page's measurements."""

import pytest
import torch

from aigc_lab import landscape_gan_study as study
from aigc_lab.stats import wilson_interval


class ColourJudge:
    """A stand-in judge: reads the time of day from the mean of the blue channel, features are channel means."""

    def predict(self, images):
        blue = images[:, 2].mean(dim=(1, 2))
        return (blue < 0.45).long() + (blue < 0.25).long()

    def features(self, images):
        return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], 1)


def test_shares_count_each_time_with_its_wilson_interval():
    rows = study.time_of_day_shares(torch.tensor([0, 0, 1, 2, 2, 2]))
    assert [r["time of day"] for r in rows] == ["day", "dusk", "night"]
    assert [r["share"] for r in rows] == pytest.approx([2 / 6, 1 / 6, 3 / 6])
    assert (rows[2]["95% low"], rows[2]["95% high"]) == pytest.approx(wilson_interval(3, 6))
    with pytest.raises(ValueError, match=r"times must lie in \[0, 2\] \(day, dusk, night\)"):
        study.time_of_day_shares(torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        study.time_of_day_shares(torch.tensor([], dtype=torch.long))


def test_scenes_are_32_pixels_labelled_by_time_of_day():
    data = study.scenes("val")
    assert data.images.shape == (500, 3, study.SIZE, study.SIZE) and data.classes == ["day", "dusk", "night"]
    assert 0 <= float(data.images.min()) and float(data.images.max()) <= 1


def test_measure_puts_real_scenes_near_the_floor_and_copies_at_zero_distance(monkeypatch):
    # frechet_distance calls judge.features; a real FeatureClassifier is not needed to check the bookkeeping.
    monkeypatch.setattr(study.metrics, "frechet_distance", lambda a, b, classifier: float((classifier.features(a).mean(0) - classifier.features(b).mean(0)).pow(2).sum()))
    train, test = study.scenes("val"), study.scenes("test")
    judge = ColourJudge()
    copies = study.measure(train.images[:60], judge, train=train, test=test)
    assert copies["nearest train"] == 0
    assert copies["day"] + copies["dusk"] + copies["night"] == pytest.approx(1)
    grey = study.measure(torch.full((60, 3, 32, 32), 0.5), judge, train=train, test=test)
    assert grey["nearest train"] > 0.05
    assert sorted(grey[t] for t in ("day", "dusk", "night")) == [0, 0, 1]  # identical images, one reading
    assert grey["FD"] > copies["FD"]
