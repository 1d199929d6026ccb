"""Gatys et al.'s optimisation transfer: the Gram objective against hand computation, and a short run moves toward the style."""

from __future__ import annotations

import pytest
import torch

from aigc_lab import perceptual
from aigc_lab.style_transfer import StyleObjective, gatys_transfer, judge_features, style_scores, total_variation, transfer_features


def _stripes(size: int = 32, period: int = 4) -> torch.Tensor:
    x = torch.arange(size).float()
    stripes = ((x // (period // 2)) % 2).view(1, 1, 1, size).expand(1, 3, size, size)
    return stripes.clone()


def _smooth(size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def test_gram_matrix_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2).repeat(1, 2, 1, 1)
    f[0, 1] *= -1
    # G_cc' = sum_hw f_c f_c' / (C H W) with sum f^2 = 30, C H W = 8
    assert torch.allclose(perceptual.gram_matrix(f)[0], torch.tensor([[30.0, -30.0], [-30.0, 30.0]]) / 8)


def test_the_objective_is_zero_at_its_targets_and_relative():
    content, style = _smooth(), _stripes()
    objective = StyleObjective(transfer_features(), content, style, style_weight=1.0)
    assert float(objective.terms(content)["content"]) == pytest.approx(0.0, abs=1e-6)
    assert float(objective.terms(style)["style"]) == pytest.approx(0.0, abs=1e-6)
    other = _smooth(seed=2)
    j = objective.content_layers[0]
    f, t = transfer_features()(other)[j], transfer_features()(content)[j]
    assert float(objective.terms(other)["content"]) == pytest.approx(float((f - t).pow(2).sum() / t.pow(2).sum()), rel=1e-4)


def test_style_loss_term_by_hand_on_one_layer():
    features = transfer_features()
    content, style, image = _smooth(seed=0), _stripes(), _smooth(seed=1)
    objective = StyleObjective(features, content, style, style_layers=[1], content_layers=[0])
    g_image = perceptual.gram_matrix(features(image)[1])
    g_style = perceptual.gram_matrix(features(style)[1])
    expected = (g_image - g_style).pow(2).sum() / g_style.pow(2).sum()
    assert float(objective.terms(image)["style"]) == pytest.approx(float(expected), rel=1e-4)


def test_total_variation_by_hand():
    image = torch.tensor([[0.0, 1.0], [1.0, 1.0]]).view(1, 1, 2, 2)
    # vertical differences |1-0|, |1-1| -> mean 0.5; horizontal |1-0|, |1-1| -> mean 0.5
    assert float(total_variation(image)) == pytest.approx(1.0)


def test_a_short_transfer_moves_toward_the_style_in_another_network():
    content, style = _smooth(), _stripes()
    result = gatys_transfer(content, style, steps=60, lr=0.05, style_weight=10.0)
    assert result.image.shape == content.shape and 0 <= float(result.image.min()) and float(result.image.max()) <= 1
    assert result.losses[-1] < 0.5 * result.losses[0]
    scores = style_scores(result.image, content, style)
    assert float(scores["style_reduction"][0]) > 0.3  # judged in judge_features, not the network it was optimised in
    assert 0 < float(scores["content_ssim"][0]) <= 1


def test_the_judge_is_another_network():
    a, b = transfer_features(), judge_features()
    assert [c.out_channels for c in a.convs] != [c.out_channels for c in b.convs]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "steps must be >= 1"),
        ({"init": "random"}, "init must be 'content' or 'noise'"),
        ({"style_weight": -1.0}, "style_weight and tv_weight must be >= 0"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gatys_transfer(_smooth(), _stripes(), **kwargs)


def test_bad_images_are_named():
    with pytest.raises(ValueError, match="style"):
        gatys_transfer(_smooth(), _stripes()[:, :1], steps=1)  # 1 channel against 3
    with pytest.raises(ValueError, match="one image"):
        gatys_transfer(_smooth().repeat(2, 1, 1, 1), _stripes(), steps=1)
    with pytest.raises(ValueError, match="content"):
        gatys_transfer(_smooth() * 3, _stripes(), steps=1)  # outside [0, 1]
