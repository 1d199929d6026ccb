"""Zero-DCE (chapter 6.1): the curve, the four non-reference losses, and a model that learns to brighten."""

import pytest
import torch

from aigc_lab.contract import StepContext
from aigc_lab.data import load_dataset
from aigc_lab.models import low_light as zd

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_curve_is_identity_at_zero_and_keeps_the_unit_range():
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(zd.apply_curves(x, torch.zeros(2, 24, 8, 8)), x)
    brighter = zd.apply_curves(x, torch.ones(2, 24, 8, 8))
    assert (brighter >= x).all() and brighter.max() <= 1 and brighter.min() >= 0
    darker = zd.apply_curves(x, -torch.ones(2, 3, 8, 8))
    assert (darker <= x).all() and darker.min() >= 0
    with pytest.raises(ValueError, match=r"curves must be N x \(k \* 3\) x H x W"):
        zd.apply_curves(x, torch.zeros(2, 4, 8, 8))


def test_each_loss_is_zero_where_its_assumption_holds():
    assert zd.exposure_loss(torch.full((1, 3, 32, 32), 0.6)).item() == pytest.approx(0.0, abs=1e-6)
    assert zd.exposure_loss(torch.full((1, 3, 32, 32), 0.1)).item() == pytest.approx(0.5)
    x = torch.rand(2, 3, 16, 16)
    assert zd.spatial_consistency_loss(x, x).item() == pytest.approx(0.0, abs=1e-9)
    assert zd.spatial_consistency_loss(3 * x, x).item() > 0
    gray = torch.rand(2, 1, 16, 16).repeat(1, 3, 1, 1)
    assert zd.colour_constancy_loss(gray).item() == pytest.approx(0.0, abs=1e-9)
    reddish = gray.clone()
    reddish[:, 0] += 0.2
    assert zd.colour_constancy_loss(reddish).item() > 0.01
    assert zd.illumination_smoothness_loss(torch.full((1, 24, 8, 8), 0.3)).item() == 0.0


def test_bad_settings_are_explained():
    with pytest.raises(ValueError, match="1 or 3 channels"):
        zd.CurveEnhancer((2, 32, 32))
    with pytest.raises(ValueError, match="at least 16 x 16"):
        zd.CurveEnhancer((3, 8, 8))
    with pytest.raises(ValueError, match=r"images must be N x 3 x H x W"):
        zd.CurveEnhancer()(torch.rand(1, 1, 32, 32))


def test_training_on_dark_images_alone_brightens_them():
    torch.manual_seed(0)
    clean = load_dataset("photos", "train", patch_size=32, n_patches=64, seed=0).images
    clean = clean if clean.shape[1] == 3 else clean.repeat(1, 3, 1, 1)
    model = zd.CurveEnhancer((3, 32, 32), width=16, lr=1e-3)
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    test_dark = model.damage(clean[:16], torch.Generator().manual_seed(1))[0]
    before = zd.exposure_loss(model.restore(test_dark)).item()
    for step in range(60):
        ctx.step = step
        logs = model.training_step((clean[(step * 8) % 64 : (step * 8) % 64 + 8], None), ctx)
    assert set(logs) == {"loss/total", "loss/exposure", "loss/spatial", "loss/colour", "loss/smoothness"}
    enhanced = model.restore(test_dark)
    assert enhanced.mean() > 5 * test_dark.mean()
    assert zd.exposure_loss(enhanced).item() < 0.5 * before


def test_the_paired_enhancer_trains_every_parameter_and_learns_to_brighten():
    torch.manual_seed(0)
    clean = load_dataset("photos", "train", patch_size=32, n_patches=64, seed=0).images
    model = zd.PairedEnhancer((3, 32, 32), width=8, levels=2)
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    model.training_step((clean[:8], None), ctx)
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without a gradient: {missing}"
    test_dark = model.damage(clean[:16], torch.Generator().manual_seed(1))[0]
    before = (model.restore(test_dark) - clean[:16]).abs().mean().item()
    for step in range(60):
        ctx.step = step
        logs = model.training_step((clean[(step * 8) % 64 : (step * 8) % 64 + 8], None), ctx)
    assert set(logs) == {"loss/l1"}
    after = (model.restore(test_dark) - clean[:16]).abs().mean().item()
    assert after < 0.6 * before, f"mean error {before:.3f} untrained, {after:.3f} after 60 steps"
    with pytest.raises(ValueError, match="1 or 3 channels"):
        zd.PairedEnhancer((2, 32, 32))
