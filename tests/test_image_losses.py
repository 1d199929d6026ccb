"""The image-to-image losses: formulas on hand-computed cases, gradients, and clear errors."""

import pytest
import torch

from aigc_lab import image_losses, similarity


def _pair(size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(2, 1, size, size, generator=g)
    output = (target + 0.1 * torch.randn(target.shape, generator=g)).requires_grad_(True)
    return output, target


def test_mse_and_l1_on_a_hand_computed_case():
    target = torch.zeros(1, 1, 2, 2)
    output = torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]]])
    assert image_losses.mse_loss(output, target).item() == pytest.approx((1 + 1 + 0.25) / 4)
    assert image_losses.l1_loss(output, target).item() == pytest.approx((1 + 1 + 0.5) / 4)


def test_the_mse_minimiser_is_the_mean_and_the_l1_minimiser_the_median():
    # Three plausible targets for one pixel: 0, 0 and 1. Fit a constant to all three.
    targets = torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1, 1)
    grid = torch.linspace(0, 1, 101)
    mse = [image_losses.mse_loss(torch.full_like(targets, float(c)), targets).item() for c in grid]
    l1 = [image_losses.l1_loss(torch.full_like(targets, float(c)), targets).item() for c in grid]
    assert grid[int(torch.tensor(mse).argmin())].item() == pytest.approx(1 / 3, abs=0.01)
    assert grid[int(torch.tensor(l1).argmin())].item() == pytest.approx(0.0)


def test_structural_losses_are_one_minus_the_similarities():
    output, target = _pair(48)
    ssim = similarity.ssim(output.detach(), target).mean()
    assert image_losses.ssim_loss(output, target).item() == pytest.approx(1 - ssim.item(), abs=1e-6)
    w = image_losses.truncated_ms_ssim_weights(3)
    assert sum(w) == pytest.approx(1.0) and len(w) == 3
    ms = similarity.ms_ssim(output.detach(), target, weights=w).mean()
    assert image_losses.ms_ssim_loss(output, target, weights=w).item() == pytest.approx(1 - ms.item(), abs=1e-6)
    mixed = image_losses.mixed_loss(output, target, weights=w)
    expected = 0.84 * (1 - ms.item()) + 0.16 * image_losses.l1_loss(output, target).item()
    assert mixed.item() == pytest.approx(expected, abs=1e-6)
    assert image_losses.ssim_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", list(image_losses.PIXEL_LOSSES))
def test_every_pixel_loss_has_finite_nonzero_gradients(name):
    output, target = _pair(48)
    fn = image_losses.pixel_loss(name)
    loss = fn(output, target, weights=image_losses.truncated_ms_ssim_weights(3)) if name in ("ms-ssim", "mixed") else fn(output, target)
    loss.backward()
    assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0


def test_clear_errors():
    output, target = _pair(16)
    with pytest.raises(ValueError, match=r"target values must lie in \[0, 1\]"):
        image_losses.ssim_loss(output, target * 2 - 1)
    with pytest.raises(ValueError, match="same shape"):
        image_losses.l1_loss(output, target[..., :8])
    with pytest.raises(ValueError, match="unknown pixel loss 'l3'"):
        image_losses.pixel_loss("l3")
    with pytest.raises(ValueError, match="at least 161"):
        image_losses.ms_ssim_loss(output, target)
    with pytest.raises(ValueError, match="scales must be"):
        image_losses.truncated_ms_ssim_weights(6)


@pytest.mark.parametrize("objective", ["nonsaturating", "hinge"])
def test_patch_adversarial_losses(objective):
    real = torch.tensor([[[[2.0, 0.0]]]])
    fake = torch.tensor([[[[-2.0, 0.5]]]])
    real_term, fake_term = image_losses.patch_adversarial_losses(real, fake, objective=objective)
    if objective == "hinge":
        assert real_term.item() == pytest.approx((0 + 1) / 2)
        assert fake_term.item() == pytest.approx((0 + 1.5) / 2)
        assert image_losses.patch_generator_loss(fake, objective=objective).item() == pytest.approx(0.75)
    else:
        sp = torch.nn.functional.softplus
        assert real_term.item() == pytest.approx(float((sp(torch.tensor(-2.0)) + sp(torch.tensor(0.0))) / 2))
        assert fake_term.item() == pytest.approx(float((sp(torch.tensor(-2.0)) + sp(torch.tensor(0.5))) / 2))
    with pytest.raises(ValueError, match="objective must be"):
        image_losses.patch_generator_loss(fake, objective="wasserstein")
