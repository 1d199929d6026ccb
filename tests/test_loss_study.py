"""Chapter 5's experiment helpers: data, recipes, measurements and the classical baselines."""

import pytest
import torch

from aigc_lab import loss_study


def test_sharpness_ratio_is_one_for_the_clean_image_and_below_one_for_a_blur():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 1, 32, 32, generator=g)
    assert torch.allclose(loss_study.sharpness_ratio(clean, clean), torch.ones(2))
    blurred = torch.nn.functional.avg_pool2d(clean, 3, stride=1, padding=1, count_include_pad=False)
    assert (loss_study.sharpness_ratio(blurred, clean) < 1).all()
    noisy = clean + 0.2 * torch.randn(clean.shape, generator=g)
    assert (loss_study.sharpness_ratio(noisy, clean) > 1).all()
    with pytest.raises(ValueError, match="one shape"):
        loss_study.sharpness_ratio(clean, clean[..., :16])


def test_every_recipe_builds_and_the_sweeps_start_from_mse(monkeypatch):
    from aigc_lab.models.restoration import Restorer

    for recipe in loss_study.LOSS_RECIPES.values():
        Restorer((1, 48, 48), **recipe.settings)
    for quick in ("0", "1"):
        monkeypatch.setenv("AIGC_LAB_QUICK", quick)
        for names in loss_study.sweeps().values():
            assert names[0] == "mse" and all(n in loss_study.LOSS_RECIPES for n in names)
    with pytest.raises(ValueError, match="unknown loss recipe"):
        loss_study.train_loss_recipe("l3", "/nonexistent")


def test_test_data_is_fixed_and_classical_baselines_denoise(monkeypatch):
    monkeypatch.setenv("AIGC_LAB_QUICK", "1")
    clean, noisy = loss_study.test_data()
    clean2, noisy2 = loss_study.test_data()
    assert torch.equal(noisy, noisy2) and clean.shape[-1] == 192
    noise_std = float((noisy - clean).std())
    assert noise_std == pytest.approx(loss_study.NOISE_SIGMA / 255, rel=0.05)
    for method in ("tv", "nl-means"):
        restored, seconds = loss_study.classical_denoise(noisy[:2], method)
        assert restored.shape == clean[:2].shape and seconds >= 0
        scores = loss_study.measure(restored, clean[:2])
        noisy_scores = loss_study.measure(noisy[:2].clamp(0, 1), clean[:2])
        assert (scores["psnr"] > noisy_scores["psnr"]).all()
    with pytest.raises(ValueError, match="'tv' or 'nl-means'"):
        loss_study.classical_denoise(noisy, "bm3d")


def test_measure_matches_the_perceptual_distances():
    from aigc_lab import perceptual

    g = torch.Generator().manual_seed(3)
    clean = torch.rand(2, 1, 176, 176, generator=g)
    restored = (clean + 0.05 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    net = loss_study.evaluation_features()
    scores = loss_study.measure(restored, clean, features=net)
    assert torch.allclose(scores["feature_distance"], perceptual.feature_distance(net, restored, clean))
    assert torch.allclose(scores["texture_distance"], perceptual.gram_distance(net, restored, clean))
