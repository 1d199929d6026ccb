"""The damage a restoration model undoes (chapter 6.1): noise, missing regions, lost resolution, darkness.

Every function takes clean images ``N x C x H x W`` in :math:`[0, 1]` (gray ``C = 1`` or colour
``C = 3``), draws its randomness from a ``torch.Generator`` (so a seed fixes the damage), and
returns a tensor of the same kind. Noise levels are on the 0-255 scale, as in the denoising
literature (sigma 25 means a standard deviation of 25/255).

* :func:`gaussian_noise` and :func:`random_sigmas`: additive white Gaussian noise, one level per
  image for a *blind* denoiser trained on a range of levels (DnCNN's "blind" setting, sigma in
  [0, 55]; Zhang et al., 2017).
* :func:`random_masks` and :func:`apply_mask`: free-form strokes and boxes, white (1) = missing,
  the convention of inpainting mask files.
* :func:`bicubic_downsample`: the low-resolution input of single-image super-resolution
  (bicubic, with antialiasing, by a factor of 2, 3 or 4).
* :func:`low_light`: a dark, noisy exposure: the scene scaled by a gain and a gamma, then
  photon (Poisson) noise and read (Gaussian) noise, the Poisson-Gaussian model of camera noise
  (Foi et al., 2008, "Practical Poissonian-Gaussian noise modeling and fitting for single-image
  raw-data").

:func:`augment` is the other half of the training pipeline: clean patches are flipped and turned
at random before they are damaged, so a model sees eight orientations of every patch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from aigc_lab.images import check_images

#: the blind denoiser's range of noise levels (0-255 scale), DnCNN-B's
BLIND_SIGMA_RANGE = (0.0, 55.0)
#: the super-resolution factors the chapter trains
SR_SCALES = (2, 3, 4)


def _check(images: Tensor) -> Tensor:
    check_images(images, value_range=(0.0, 1.0), batched=True)
    return images


def augment(images: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Each image in one of the eight orientations of a square, drawn uniformly: a quarter turn 0-3 times, then a mirror or not.

    Photographs have no preferred orientation at the scale of a patch, so this multiplies the
    training data by eight for free (the augmentation of DnCNN and of most restoration papers).
    Non-square images only get the four orientations that keep their shape (mirrors and a half turn).
    """
    images = _check(images)
    square = images.shape[-1] == images.shape[-2]
    turns = torch.randint(4, (len(images),), generator=generator)
    if not square:
        turns = turns // 2 * 2  # 0 or 2 quarter turns keep an H x W image H x W
    mirror = torch.randint(2, (len(images),), generator=generator).bool()
    out = images.clone()
    for k in turns.unique().tolist():
        picked = turns == k
        out[picked] = torch.rot90(images[picked], k, dims=(-2, -1))
    out[mirror] = out[mirror].flip(-1)
    return out


def random_sigmas(n: int, low: float = BLIND_SIGMA_RANGE[0], high: float = BLIND_SIGMA_RANGE[1], *, generator: torch.Generator | None = None) -> Tensor:
    """``n`` noise levels drawn uniformly from ``[low, high]`` (0-255 scale), one per image."""
    if not 0 <= low <= high:
        raise ValueError(f"need 0 <= low <= high (noise levels on the 0-255 scale), got low={low}, high={high}")
    return low + (high - low) * torch.rand(n, generator=generator)


def gaussian_noise(images: Tensor, sigma: float | Tensor, *, generator: torch.Generator | None = None, clip: bool = False) -> Tensor:
    r"""``images`` plus white Gaussian noise :math:`x = y + \frac{\sigma}{255} n`, :math:`n \sim \mathcal{N}(0, I)`.

    ``sigma`` is one level for all images or one per image (a tensor of ``N`` levels, e.g. from
    :func:`random_sigmas`), on the 0-255 scale. The result is not clipped to :math:`[0, 1]` unless
    ``clip``: the papers' noise model, and what lets a denoiser's error be measured without the
    bias clipping adds; a saved image file is clipped.
    """
    images = _check(images)
    sigma = torch.as_tensor(sigma, dtype=images.dtype)
    if sigma.dim() == 0:
        sigma = sigma.expand(len(images))
    if sigma.shape != (len(images),):
        raise ValueError(f"sigma must be one number or one per image ({len(images)}), got shape {tuple(sigma.shape)}")
    if (sigma < 0).any() or not torch.isfinite(sigma).all():
        raise ValueError(f"sigma must be >= 0 on the 0-255 scale (e.g. 25), got {sigma.tolist()}")
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    noisy = images + noise * (sigma / 255).view(-1, 1, 1, 1)
    return noisy.clamp(0, 1) if clip else noisy


def _stroke(mask: Tensor, generator: torch.Generator, size: int) -> None:
    """Draw one free-form stroke (a random walk of thick line segments) into ``mask`` (H x W), in place."""
    h, w = mask.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    y, x = (torch.rand(2, generator=generator) * torch.tensor([h, w])).tolist()
    angle = float(torch.rand(1, generator=generator)) * 2 * math.pi
    width = max(1.0, size * (0.03 + 0.05 * float(torch.rand(1, generator=generator))))
    for _ in range(int(torch.randint(2, 6, (1,), generator=generator))):
        angle += float(torch.randn(1, generator=generator)) * 0.8
        length = size * (0.15 + 0.25 * float(torch.rand(1, generator=generator)))
        y2 = min(max(y + length * math.sin(angle), 0.0), h - 1.0)
        x2 = min(max(x + length * math.cos(angle), 0.0), w - 1.0)
        # distance of every pixel to the segment (y, x)-(y2, x2)
        dy, dx = y2 - y, x2 - x
        t = (((ys - y) * dy + (xs - x) * dx) / max(dy * dy + dx * dx, 1e-9)).clamp(0, 1)
        distance = ((ys - (y + t * dy)) ** 2 + (xs - (x + t * dx)) ** 2).sqrt()
        mask[distance <= width / 2] = 1.0
        y, x = y2, x2


def random_masks(
    n: int,
    size: int | tuple[int, int],
    *,
    kind: str = "mixed",
    max_fraction: float = 0.4,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``n`` inpainting masks ``N x 1 x H x W`` of 0 (kept) and 1 (missing).

    ``kind``: ``"strokes"`` (free-form brush strokes, in the spirit of the masks of Yu et al.,
    2019, "Free-Form Image Inpainting with Gated Convolution"), ``"boxes"`` (one to three
    rectangles) or ``"mixed"`` (each mask one or the other, at random). Strokes and boxes are added
    until about a tenth of the image is missing, and never more than ``max_fraction`` of it (the
    last shape that would pass it is left out), so that every mask leaves most of the image to
    condition on.
    """
    if kind not in ("strokes", "boxes", "mixed"):
        raise ValueError(f"kind must be 'strokes', 'boxes' or 'mixed', got {kind!r}")
    if not 0 < max_fraction <= 1:
        raise ValueError(f"max_fraction must lie in (0, 1], got {max_fraction}")
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 4 or w < 4:
        raise ValueError(f"masks need at least 4 x 4 pixels, got {h} x {w}")
    generator = generator if generator is not None else torch.Generator().manual_seed(int(torch.randint(2**31, (1,))))
    masks = torch.zeros(n, 1, h, w)
    for mask in masks[:, 0]:
        this_kind = kind if kind != "mixed" else ("strokes", "boxes")[int(torch.randint(2, (1,), generator=generator))]
        for _ in range(8):  # enough shapes for about a tenth of the image, never more than max_fraction
            trial = mask.clone()
            if this_kind == "strokes":
                _stroke(trial, generator, min(h, w))
            else:
                bh = int(torch.randint(max(1, h // 8), max(2, h // 3), (1,), generator=generator))
                bw = int(torch.randint(max(1, w // 8), max(2, w // 3), (1,), generator=generator))
                top = int(torch.randint(0, h - bh + 1, (1,), generator=generator))
                left = int(torch.randint(0, w - bw + 1, (1,), generator=generator))
                trial[top : top + bh, left : left + bw] = 1.0
            if trial.mean() > max_fraction:
                break
            mask.copy_(trial)
            if mask.mean() >= 0.1:
                break
        if mask.sum() == 0:  # the first shape alone was too large: keep one small box
            mask[h // 2 - h // 8 : h // 2 + h // 8, w // 2 - w // 8 : w // 2 + w // 8] = 1.0
    return masks


def check_mask(mask: Tensor, images: Tensor) -> Tensor:
    """Check that ``mask`` is ``N x 1 x H x W`` (or ``1 x 1 x H x W``) of 0 and 1 matching ``images``; return it."""
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, len(images)) or mask.shape[2:] != images.shape[2:]:
        raise ValueError(
            f"mask must be N x 1 x H x W (or 1 x 1 x H x W) matching images of shape {tuple(images.shape)}, got {tuple(mask.shape)}"
        )
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask must hold only 0 (kept) and 1 (missing)")
    return mask


def apply_mask(images: Tensor, mask: Tensor, fill: float = 0.0) -> Tensor:
    """``images`` with the missing pixels (``mask == 1``) set to ``fill``."""
    images = _check(images)
    check_mask(mask, images)
    return torch.where(mask.bool(), torch.full_like(images, fill), images)


def bicubic_downsample(images: Tensor, scale: int) -> Tensor:
    """``images`` shrunk by ``scale`` with bicubic interpolation and antialiasing (the usual SR input).

    The height and width must be multiples of ``scale``, so that upsampling the result by
    ``scale`` gives back the original size exactly. The result is clipped to :math:`[0, 1]`
    (bicubic weights are negative at their tails, so interpolation can overshoot).
    """
    images = _check(images)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
        raise ValueError(f"scale must be an integer >= 2, got {scale!r}")
    h, w = images.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"image size {h} x {w} is not a multiple of the scale {scale}; crop it to {h - h % scale} x {w - w % scale}")
    small = F.interpolate(images, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)
    return small.clamp(0, 1)


def bicubic_upsample(images: Tensor, scale: int) -> Tensor:
    """``images`` enlarged ``scale`` times with bicubic interpolation, clipped to :math:`[0, 1]`: the classical SR baseline."""
    images = _check(images)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
        raise ValueError(f"scale must be an integer >= 2, got {scale!r}")
    return F.interpolate(images, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


def low_light(
    images: Tensor,
    *,
    gain: float | tuple[float, float] = (0.1, 0.3),
    gamma: float | tuple[float, float] = (1.5, 2.5),
    photons: float = 300.0,
    read_sigma: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""A synthetic low-light exposure of ``images``: :math:`x = \mathrm{clip}\big(P(\lambda\, g\, y^{\gamma}) / \lambda + \frac{\sigma_r}{255} n\big)`.

    The scene is darkened by a gain :math:`g` and a gamma :math:`\gamma > 1` (which darkens the
    shadows more than the highlights, as an underexposed photograph looks), then recorded with
    photon noise (:math:`P`, Poisson, with :math:`\lambda` = ``photons`` at full brightness, so the
    darker a pixel, the noisier relative to its value) and read noise of ``read_sigma`` on the
    0-255 scale. ``gain`` and ``gamma`` are numbers, or ``(low, high)`` ranges drawn uniformly per
    image.
    """
    images = _check(images)
    n = len(images)

    def draw(value: float | tuple[float, float], name: str) -> Tensor:
        low, high = (value, value) if isinstance(value, (int, float)) else value
        if not 0 < low <= high:
            raise ValueError(f"{name} must be positive (a number or a (low, high) range), got {value!r}")
        return (low + (high - low) * torch.rand(n, generator=generator)).view(-1, 1, 1, 1)

    g, gam = draw(gain, "gain"), draw(gamma, "gamma")
    if not photons > 0 or not read_sigma >= 0:
        raise ValueError(f"photons must be > 0 and read_sigma >= 0, got {photons} and {read_sigma}")
    dark = g * images.pow(gam)
    shot = torch.poisson(dark * photons, generator=generator) / photons
    read = torch.randn(images.shape, generator=generator) * (read_sigma / 255)
    return (shot + read).clamp(0, 1)
