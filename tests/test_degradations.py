"""Chapter 6.1's degradations and classical restorers: seeded damage, checked inputs, baselines that help."""

import numpy as np
import pytest
import torch

from aigc_lab import classical, degradations
from aigc_lab.data import load_dataset
from aigc_lab.similarity import psnr

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def patches():
    """Real photo patches, gray and colour (scikit-image's photographs, as chapter 6.1 trains on)."""
    colour = load_dataset("photos", "test", patch_size=48, n_patches=6, seed=0).images
    gray = colour.mean(1, keepdim=True) if colour.shape[1] == 3 else colour
    return gray, colour if colour.shape[1] == 3 else colour.repeat(1, 3, 1, 1)


def test_gaussian_noise_has_the_asked_level_and_a_seed_fixes_it(patches):
    gray, _ = patches
    clean = gray.repeat(20, 1, 1, 1)
    noisy = degradations.gaussian_noise(clean, 25, generator=torch.Generator().manual_seed(0))
    assert (noisy - clean).std().item() == pytest.approx(25 / 255, rel=0.02)
    again = degradations.gaussian_noise(clean, 25, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)
    assert noisy.min() < 0 or noisy.max() > 1, "unclipped by default, like the papers' noise model"
    clipped = degradations.gaussian_noise(clean, 25, generator=torch.Generator().manual_seed(0), clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 1


def test_blind_noise_levels_are_per_image(patches):
    gray, _ = patches
    sigmas = degradations.random_sigmas(len(gray), generator=torch.Generator().manual_seed(1))
    assert sigmas.shape == (len(gray),) and (sigmas >= 0).all() and (sigmas <= 55).all()
    noisy = degradations.gaussian_noise(gray, torch.tensor([0.0, 0, 0, 50, 50, 50]), generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy[:3], gray[:3]), "sigma 0 leaves an image untouched"
    assert not torch.equal(noisy[3:], gray[3:])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: degradations.gaussian_noise(x, -5), "sigma must be >= 0 on the 0-255 scale"),
        (lambda x: degradations.gaussian_noise(x, torch.ones(2)), r"sigma must be one number or one per image \(6\)"),
        (lambda x: degradations.gaussian_noise(x * 255, 25), r"images must lie in \[0, 1\]"),
        (lambda x: degradations.bicubic_downsample(x[..., :47, :], 2), "not a multiple of the scale 2; crop it to 46 x 48"),
        (lambda x: degradations.bicubic_downsample(x, 1), "scale must be an integer >= 2"),
        (lambda x: degradations.low_light(x, gain=(0.3, 0.1)), "gain must be positive"),
        (lambda x: degradations.apply_mask(x, torch.ones(6, 1, 8, 8)), "mask must be N x 1 x H x W"),
    ],
)
def test_bad_input_is_explained(patches, call, message):
    with pytest.raises(ValueError, match=message):
        call(patches[0])


@pytest.mark.parametrize("kind", ["strokes", "boxes", "mixed"])
def test_masks_are_binary_seeded_and_leave_most_of_the_image(kind):
    masks = degradations.random_masks(50, 48, kind=kind, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (50, 1, 48, 48)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    fractions = masks.mean((1, 2, 3))
    assert (fractions > 0).all() and (fractions <= 0.4).all()
    assert fractions.mean() > 0.05
    again = degradations.random_masks(50, 48, kind=kind, generator=torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)


def test_apply_mask_sets_only_the_missing_pixels(patches):
    gray, colour = patches
    masks = degradations.random_masks(len(gray), 48, generator=torch.Generator().manual_seed(2))
    for images in (gray, colour):
        damaged = degradations.apply_mask(images, masks, fill=0.5)
        assert torch.equal(damaged[:, :1][masks == 0], images[:, :1][masks == 0])
        assert (damaged[:, :1][masks == 1] == 0.5).all()


def test_bicubic_down_and_up_keep_sizes_and_constants(patches):
    gray, colour = patches
    for scale in degradations.SR_SCALES:
        small = degradations.bicubic_downsample(colour, scale)
        assert small.shape == (6, 3, 48 // scale, 48 // scale)
        assert degradations.bicubic_upsample(small, scale).shape == colour.shape
    flat = torch.full((1, 1, 12, 12), 0.3)
    assert torch.allclose(degradations.bicubic_downsample(flat, 3), torch.full((1, 1, 4, 4), 0.3), atol=1e-6)
    assert torch.allclose(degradations.bicubic_upsample(flat, 2), torch.full((1, 1, 24, 24), 0.3), atol=1e-6)
    # bicubic upsampling of a downsampled photo is close to the original, not equal
    assert 20 < psnr(degradations.bicubic_upsample(degradations.bicubic_downsample(gray, 2), 2), gray).mean() < 60


def test_low_light_darkens_and_adds_noise_that_grows_with_brightness(patches):
    _, colour = patches
    dark = degradations.low_light(colour, generator=torch.Generator().manual_seed(0))
    assert dark.shape == colour.shape and dark.min() >= 0 and dark.max() <= 1
    assert dark.mean() < 0.5 * colour.mean()
    again = degradations.low_light(colour, generator=torch.Generator().manual_seed(0))
    assert torch.equal(dark, again)
    # Poisson noise: a brighter flat patch is noisier in absolute terms
    flats = torch.cat([torch.full((1, 1, 64, 64), 0.2), torch.full((1, 1, 64, 64), 1.0)])
    out = degradations.low_light(flats, gain=1.0, gamma=1.0, photons=100, read_sigma=0, generator=torch.Generator().manual_seed(0))
    assert out[0].std() < out[1].std()
    assert out[0].mean().item() == pytest.approx(0.2, abs=0.01), "photon noise is unbiased below the clipping"


@pytest.mark.parametrize("method", classical.DENOISERS)
def test_every_classical_denoiser_improves_psnr_gray_and_colour(patches, method):
    for clean in patches:
        noisy = degradations.gaussian_noise(clean, 25, generator=torch.Generator().manual_seed(0))
        restored = classical.denoise(noisy, 25, method)
        assert restored.shape == clean.shape and restored.min() >= 0 and restored.max() <= 1
        gain = (psnr(restored, clean) - psnr(noisy.clamp(0, 1), clean)).mean()
        assert gain > 2.0, f"{method} gained only {gain:.2f} dB"


def test_bm3d_is_the_best_classical_denoiser_here(patches):
    gray, _ = patches
    noisy = degradations.gaussian_noise(gray, 25, generator=torch.Generator().manual_seed(0))
    scores = {m: psnr(classical.denoise(noisy, 25, m), gray).mean().item() for m in classical.DENOISERS}
    assert max(scores, key=scores.get) == "bm3d", scores


@pytest.mark.parametrize("method", classical.INPAINTERS)
def test_inpainting_fills_the_hole_and_keeps_the_rest(patches, method):
    gray, colour = patches
    masks = degradations.random_masks(len(gray), 48, kind="boxes", generator=torch.Generator().manual_seed(3))
    for clean in (gray, colour):
        damaged = degradations.apply_mask(clean, masks)
        filled = classical.inpaint(damaged, masks, method)
        assert filled.shape == clean.shape
        keep = masks.expand_as(clean) == 0
        assert torch.equal(filled[keep], damaged[keep])
        # the hole is filled with something far closer to the truth than the black it was
        hole = ~keep
        assert (filled[hole] - clean[hole]).abs().mean() < 0.5 * (damaged[hole] - clean[hole]).abs().mean()


def test_inpainting_errors():
    images = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match="unknown inpainting method 'magic'"):
        classical.inpaint(images, torch.zeros(2, 1, 16, 16), "magic")
    with pytest.raises(ValueError, match="mask must hold only 0"):
        classical.inpaint(images, torch.full((2, 1, 16, 16), 0.5))


@pytest.mark.parametrize("method", classical.ENHANCERS)
def test_enhancement_brightens_a_dark_image(patches, method):
    gray, colour = patches
    for clean in (gray, colour):
        dark = degradations.low_light(clean, read_sigma=0, photons=1e6, generator=torch.Generator().manual_seed(0))
        bright = classical.enhance(dark, method)
        assert bright.shape == dark.shape and bright.min() >= 0 and bright.max() <= 1
        assert bright.mean() > dark.mean() + 0.05, method


def test_colour_equalisation_keeps_the_hue():
    pixel = torch.tensor([0.2, 0.1, 0.05]).view(1, 3, 1, 1).expand(1, 3, 8, 8).clone()
    pixel[..., :4, :] *= 0.5  # two brightness levels, one hue
    out = classical.enhance(pixel, "histeq")
    ratios = out[0].reshape(3, -1) / out[0].reshape(3, -1)[0:1]
    assert np.allclose(ratios.numpy(), np.array([[1.0], [0.5], [0.25]]), atol=1e-4)


def test_timed_returns_the_result_and_seconds():
    result, seconds = classical.timed(classical.upsample, torch.full((1, 1, 4, 4), 0.5), 2)
    assert result.shape == (1, 1, 8, 8) and seconds >= 0


def test_auto_gamma_brings_the_mean_brightness_to_one_half():
    flat = np.full((8, 8), 0.1)
    assert classical.auto_gamma(flat) == pytest.approx(np.log(0.5) / np.log(0.1))
    out = classical.enhance(torch.full((2, 1, 8, 8), 0.1), "auto-gamma")
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=1e-6)
