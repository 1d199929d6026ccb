"""PSNR, SSIM and MS-SSIM: hand-computed cases, gradients, and agreement with scikit-image and pytorch-msssim."""

import math

import numpy as np
import pytest
import torch

from aigc_lab import similarity
from aigc_lab.data import load_dataset


def _noisy_pair(shape, seed=0, noise=0.15):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = (x + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def _real_pair(channels, size=176):
    photos = load_dataset("photos", "test", patch_size=size, n_patches=2, seed=3, channels=channels).images.double()
    g = torch.Generator().manual_seed(1)
    noisy = (photos + 0.1 * torch.randn(photos.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return photos, noisy


def test_psnr_matches_formula_and_skimage():
    from skimage.metrics import peak_signal_noise_ratio

    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    y = torch.full_like(x, 0.1)
    assert similarity.psnr(x, y).item() == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    a, b = _noisy_pair((3, 3, 20, 24))
    for i in range(3):
        expected = peak_signal_noise_ratio(a[i].numpy(), b[i].numpy(), data_range=1)
        assert similarity.psnr(a, b)[i].item() == pytest.approx(expected, abs=1e-4)
    assert math.isinf(similarity.psnr(a, a)[0].item())


def test_ssim_of_an_image_with_itself_is_one_and_with_its_negative_is_negative():
    x, _ = _noisy_pair((2, 1, 32, 32))
    assert torch.allclose(similarity.ssim(x, x), torch.ones(2, dtype=torch.float64))
    assert (similarity.ssim(x, 1 - x) < 0).all()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", ["random", "real"])
def test_ssim_matches_skimage_with_the_papers_settings(channels, kind):
    from skimage.metrics import structural_similarity

    x, y = _noisy_pair((2, channels, 40, 52)) if kind == "random" else _real_pair(channels)
    ours = similarity.ssim(x, y)
    for i in range(x.shape[0]):
        ref = structural_similarity(
            x[i].numpy(), y[i].numpy(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=0
        )
        assert ours[i].item() == pytest.approx(ref, abs=1e-4)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", ["random", "real"])
def test_ms_ssim_matches_pytorch_msssim(channels, kind):
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    x, y = _noisy_pair((2, channels, 165, 171)) if kind == "random" else _real_pair(channels)
    ref = pytorch_msssim.ms_ssim(x, y, data_range=1, size_average=False)
    assert torch.allclose(similarity.ms_ssim(x, y), ref, atol=1e-4)
    ref_ssim = pytorch_msssim.ssim(x, y, data_range=1, size_average=False)
    assert torch.allclose(similarity.ssim(x, y), ref_ssim, atol=1e-4)


def test_ms_ssim_weights_sum_to_one_and_identical_images_score_one():
    assert sum(similarity.MS_SSIM_WEIGHTS) == pytest.approx(1.0, abs=2e-4)  # published to four decimals: 1.0001
    assert similarity.ms_ssim_min_size() == 161
    x, _ = _noisy_pair((1, 1, 161, 161))
    assert similarity.ms_ssim(x, x).item() == pytest.approx(1.0)


def test_images_too_small_for_five_scales_get_a_clear_error():
    x, y = _noisy_pair((1, 1, 160, 200))
    with pytest.raises(ValueError, match="at least 161 x 161"):
        similarity.ms_ssim(x, y)
    # fewer scales fit: three need 41 pixels
    assert similarity.ms_ssim(x[..., :41, :41], y[..., :41, :41], weights=(0.2, 0.3, 0.5)).shape == (1,)
    with pytest.raises(ValueError, match="at least 11 x 11"):
        similarity.ssim(x[..., :10, :10], y[..., :10, :10])


def test_bad_inputs_name_what_was_expected():
    x, y = _noisy_pair((1, 1, 16, 16))
    with pytest.raises(ValueError, match="same shape"):
        similarity.ssim(x, y[..., :15])
    with pytest.raises(ValueError, match="N x C x H x W"):
        similarity.psnr(x[0], y[0])
    with pytest.raises(ValueError, match="data_range"):
        similarity.ssim(x, y, data_range=0)
    with pytest.raises(ValueError, match="float tensor"):
        similarity.ssim(np.zeros((1, 1, 16, 16)), y)


@pytest.mark.parametrize("fn", [similarity.ssim, similarity.ms_ssim])
def test_gradients_are_finite_and_nonzero(fn):
    size = 161 if fn is similarity.ms_ssim else 24
    x, y = _noisy_pair((2, 1, size, size), noise=0.3)
    x.requires_grad_(True)
    (1 - fn(x, y).mean()).backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_ms_ssim_gradient_is_zero_not_nan_where_a_negative_term_is_clipped():
    x, y = _noisy_pair((1, 1, 161, 161), noise=0.5)
    y = 1 - y  # anticorrelated: the contrast-structure terms are negative, clipped to 0
    x.requires_grad_(True)
    value = similarity.ms_ssim(x, y)
    value.sum().backward()
    assert value.item() == 0
    assert torch.isfinite(x.grad).all()


def test_paired_wins_counts_images():
    assert similarity.paired_wins(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 2.0, 4.0])) == {"wins": 1, "losses": 1, "ties": 1}
    assert similarity.paired_wins([1.0], [2.0], higher_is_better=False)["wins"] == 1
    with pytest.raises(ValueError, match="same images"):
        similarity.paired_wins([1.0], [1.0, 2.0])
