"""The U-Net inpainter (chapter 6.1) and its shared image U-Net: shapes, kept pixels, and learning to fill holes."""

import pytest
import torch

from aigc_lab.contract import StepContext
from aigc_lab.data import load_dataset
from aigc_lab.degradations import random_masks
from aigc_lab.models.image_unet import ImageUNet
from aigc_lab.models.inpainting import Inpainter, harmonic_fill, push_pull_fill

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_unet_keeps_any_size():
    net = ImageUNet(2, 3, width=8, levels=3)
    for h, w in [(32, 32), (50, 37), (9, 13)]:
        assert net(torch.rand(1, 2, h, w)).shape == (1, 3, h, w)
    with pytest.raises(ValueError, match="levels must be >= 1"):
        ImageUNet(1, 1, levels=0)
    plain = ImageUNet(1, 1, width=8, levels=2, norm=False)
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in plain.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in ImageUNet(1, 1, width=8, levels=2).modules())
    assert plain(torch.rand(1, 1, 13, 21)).shape == (1, 1, 13, 21)


def test_inpainting_keeps_the_known_pixels_exactly_and_checks_its_inputs():
    model = Inpainter((3, 32, 32), width=8)
    images = torch.rand(2, 3, 40, 24)
    mask = random_masks(2, (40, 24), generator=torch.Generator().manual_seed(0))
    out = model.restore(images, mask)
    keep = mask.expand_as(images) == 0
    assert out.shape == images.shape and torch.equal(out[keep], images[keep])
    with pytest.raises(ValueError, match="mask must be N x 1 x H x W"):
        model.restore(images, mask[..., :20, :])
    with pytest.raises(ValueError, match=r"restores N x 3 x H x W images"):
        model.restore(images[:, :1], mask)
    with pytest.raises(ValueError, match="kind must be 'strokes', 'boxes' or 'mixed'"):
        Inpainter(mask_kind="circles")
    with pytest.raises(ValueError, match="prefill must be one of"):
        Inpainter(prefill="telea")


def test_a_short_training_learns_to_fill_held_out_holes():
    torch.manual_seed(0)
    train = load_dataset("photos", "train", patch_size=32, n_patches=256, seed=0).images.mean(1, keepdim=True)
    test = load_dataset("photos", "test", patch_size=32, n_patches=32, seed=0).images.mean(1, keepdim=True)
    masks = random_masks(32, 32, generator=torch.Generator().manual_seed(5))

    def hole_error(model):
        return (((model.restore(test, masks) - test).abs() * masks).sum() / masks.sum()).item()

    model = Inpainter((1, 32, 32), width=16, prefill="none")  # from black holes, so that 40 steps show
    before = hole_error(model)
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    for step in range(40):
        ctx.step = step
        logs = model.training_step((train[torch.randint(256, (16,))], None), ctx)
    assert set(logs) == {"loss/total", "loss/hole", "loss/valid"}
    after = hole_error(model)
    assert after < 0.6 * before, f"mean error in the holes: {before:.3f} untrained, {after:.3f} after 40 steps"


def _ramp_and_hole(h: int = 24, w: int = 31) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.linspace(0.1, 0.6, h), torch.linspace(0.0, 0.3, w), indexing="ij")
    ramp = torch.stack([ys + xs, 0.9 - ys, 0.5 + 0 * xs])[None]  # three linear colour channels
    mask = torch.zeros(1, 1, h, w)
    mask[..., 6:17, 9:25] = 1
    return ramp, mask


def test_the_fills_keep_the_known_pixels_and_the_harmonic_fill_reproduces_a_linear_ramp():
    ramp, mask = _ramp_and_hole()
    known = mask.expand_as(ramp) == 0
    hole = ~known
    pushed = push_pull_fill(ramp, mask)
    smooth = harmonic_fill(ramp, mask, iterations=400)
    for filled in (pushed, smooth):
        assert torch.equal(filled[known], ramp[known])
        assert filled[hole].min() >= ramp.min() and filled[hole].max() <= ramp.max()  # averages never overshoot
    # a linear function is harmonic: Laplace's equation with the ramp's border has the ramp as its solution
    assert (smooth - ramp).abs()[hole].max() < 0.01
    assert (smooth - ramp).abs()[hole].mean() < (pushed - ramp).abs()[hole].mean()
    flat = torch.full((2, 1, 9, 9), 0.3)
    assert torch.allclose(push_pull_fill(flat, torch.ones(1, 1, 9, 9)), torch.full_like(flat, 0.5))  # nothing known: mid-grey
    with pytest.raises(ValueError, match="iterations must be a non-negative integer"):
        harmonic_fill(ramp, mask, iterations=-1)


def test_the_untrained_inpainter_is_the_harmonic_fill_and_training_reaches_every_parameter():
    torch.manual_seed(0)
    ramp, mask = _ramp_and_hole()
    model = Inpainter((3, 32, 32), width=8, levels=2)
    assert torch.allclose(model.restore(ramp, mask), harmonic_fill(ramp, mask).clamp(0, 1))
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    batch = torch.rand(4, 3, 32, 32)
    for step in range(2):  # the correction's last layer starts at zero: the layers below get gradients from the second step on
        ctx.step = step
        model.training_step((batch, None), ctx)
    loss = model.training_step((batch, None), ctx)["loss/total"]
    assert loss > 0
    model.zero_grad()
    _, masks = model.damage(batch)
    (model(batch, masks) - batch).abs().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
