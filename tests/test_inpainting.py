"""The U-Net inpainter (chapter 6.1) and its shared image U-Net: shapes, kept pixels, and learning to fill holes."""

import pytest
import torch

from aigc_lab.contract import StepContext
from aigc_lab.data import load_dataset
from aigc_lab.degradations import random_masks
from aigc_lab.models.image_unet import ImageUNet
from aigc_lab.models.inpainting import Inpainter

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_unet_keeps_any_size():
    net = ImageUNet(2, 3, width=8, levels=3)
    for h, w in [(32, 32), (50, 37), (9, 13)]:
        assert net(torch.rand(1, 2, h, w)).shape == (1, 3, h, w)
    with pytest.raises(ValueError, match="levels must be >= 1"):
        ImageUNet(1, 1, levels=0)


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


def test_a_short_training_learns_to_fill_held_out_holes():
    torch.manual_seed(0)
    train = load_dataset("photos", "train", patch_size=32, n_patches=256, seed=0).images.mean(1, keepdim=True)
    test = load_dataset("photos", "test", patch_size=32, n_patches=32, seed=0).images.mean(1, keepdim=True)
    masks = random_masks(32, 32, generator=torch.Generator().manual_seed(5))

    def hole_error(model):
        return (((model.restore(test, masks) - test).abs() * masks).sum() / masks.sum()).item()

    model = Inpainter((1, 32, 32), width=16)
    before = hole_error(model)
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    for step in range(40):
        ctx.step = step
        logs = model.training_step((train[torch.randint(256, (16,))], None), ctx)
    assert set(logs) == {"loss/total", "loss/hole", "loss/valid"}
    after = hole_error(model)
    assert after < 0.6 * before, f"mean error in the holes: {before:.3f} untrained, {after:.3f} after 40 steps"
