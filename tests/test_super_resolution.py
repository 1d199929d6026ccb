"""ESPCN (chapter 6.1): starts as bicubic, upscales any size, and beats bicubic after a short training."""

import pytest
import torch

from aigc_lab.contract import StepContext
from aigc_lab.data import load_dataset
from aigc_lab.degradations import bicubic_upsample
from aigc_lab.models.super_resolution import SuperResolver
from aigc_lab.similarity import psnr

pytestmark = pytest.mark.usefixtures("one_thread")


def test_an_untrained_model_is_bicubic_and_any_size_is_upscaled():
    for scale in (2, 3, 4):
        model = SuperResolver((3, 48, 48), scale=scale)
        low = torch.rand(2, 3, 10, 14)
        out = model.restore(low)
        assert out.shape == (2, 3, 10 * scale, 14 * scale)
        assert torch.equal(out, bicubic_upsample(low, scale))


def test_bad_settings_and_inputs_are_explained():
    with pytest.raises(ValueError, match=r"scale must be one of \(2, 3, 4\)"):
        SuperResolver(scale=5)
    with pytest.raises(ValueError, match="not a multiple of the scale 3"):
        SuperResolver((1, 48, 50), scale=3)
    with pytest.raises(ValueError, match=r"images must be N x 1 x H x W"):
        SuperResolver()(torch.rand(1, 3, 8, 8))


def test_a_short_training_beats_bicubic_on_held_out_photos():
    torch.manual_seed(0)
    train = load_dataset("photos", "train", patch_size=48, n_patches=512, seed=0).images.mean(1, keepdim=True)
    test = load_dataset("photos", "test", patch_size=48, n_patches=64, seed=0).images.mean(1, keepdim=True)
    model = SuperResolver((1, 48, 48), scale=2)
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    low, _ = model.damage(test)
    bicubic = psnr(bicubic_upsample(low, 2), test).mean().item()
    for step in range(150):
        ctx.step = step
        logs = model.training_step((train[torch.randint(512, (16,))], None), ctx)
    assert set(logs) == {"loss/mse"}
    gain = psnr(model.restore(low), test).mean().item() - bicubic
    assert gain > 0.05, f"ESPCN after 150 steps: {gain:+.3f} dB over bicubic"
