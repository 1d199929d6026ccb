"""RePaint with a DDPM and raster-order completion with a PixelCNN: known pixels kept, seeds, and the checks."""

import pytest
import torch

from aigc_lab.data import load_dataset
from aigc_lab.generative_inpainting import pixelcnn_complete, repaint
from aigc_lab.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "test").images[:6]


def _mask(n=1):
    mask = torch.zeros(n, 1, 8, 8)
    mask[..., 4:, :] = 1  # the bottom half missing
    return mask


def test_repaint_keeps_the_known_pixels_fills_the_rest_and_is_seeded(digits):
    torch.manual_seed(0)
    model = build_model("ddpm", base_channels=8, timesteps=50, sample_steps=10)
    a = repaint(model, digits, _mask(), resample=2, generator=torch.Generator().manual_seed(1))
    b = repaint(model, digits, _mask(), resample=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == digits.shape and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a[..., :4, :], digits[..., :4, :])
    assert not torch.equal(a[..., 4:, :], digits[..., 4:, :])
    assert torch.equal(repaint(model, digits, torch.zeros(1, 1, 8, 8), steps=3), digits)


def test_repaint_and_pixelcnn_explain_bad_input(digits):
    ddpm = build_model("ddpm", base_channels=8, timesteps=20, sample_steps=5)
    with pytest.raises(ValueError, match="resample must be a positive integer"):
        repaint(ddpm, digits, _mask(), resample=0)
    with pytest.raises(ValueError, match=r"images must be N x 1 x 8 x 8"):
        repaint(ddpm, torch.rand(2, 1, 16, 16), torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="unconditional DDPM"):
        repaint(build_model("ddpm", base_channels=8, timesteps=20, sample_steps=5, num_classes=10), digits, _mask())
    pixelcnn = build_model("pixelcnn", channels=8, n_layers=2)
    with pytest.raises(ValueError, match="gray levels|exactly"):
        pixelcnn_complete(pixelcnn, torch.full((1, 1, 8, 8), 0.123), _mask())
    with pytest.raises(ValueError, match="mask must be N x 1 x H x W"):
        pixelcnn_complete(pixelcnn, digits, torch.zeros(1, 1, 4, 4))


def test_pixelcnn_completion_keeps_the_known_pixels_and_draws_levels(digits):
    torch.manual_seed(0)
    model = build_model("pixelcnn", channels=8, n_layers=2)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :3, 2:6] = 1  # missing pixels above known ones
    out = pixelcnn_complete(model, digits, mask, generator=torch.Generator().manual_seed(0))
    again = pixelcnn_complete(model, digits, mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    keep = mask.expand_as(digits) == 0
    assert torch.equal(out[keep], digits[keep])
    levels = out * 16
    assert torch.allclose(levels, levels.round(), atol=1e-5)
