r"""How alike two images are: PSNR, SSIM and MS-SSIM, batched and differentiable.

Each function takes two batches ``N x C x H x W`` with values in ``[0, data_range]`` and
returns one number per image (a tensor of shape ``(N,)``), so it serves as a metric (report the
mean, or compare two methods image by image) and, through :mod:`aigc_lab.image_losses`, as a
loss (``1 - ssim``).

PSNR, the peak signal-to-noise ratio, is the mean squared error on a log scale:

.. math::

    \mathrm{PSNR}(x, y) = 10 \log_{10} \frac{L^2}{\frac{1}{CHW}\sum (x - y)^2} \ \text{dB},

with :math:`L` the data range (1 for images in ``[0, 1]``).

SSIM, the structural similarity index (Wang, Bovik, Sheikh & Simoncelli, 2004, "Image Quality
Assessment: From Error Visibility to Structural Similarity", IEEE TIP 13(4)), compares local
means, variances and the covariance in a Gaussian window (11 x 11, :math:`\sigma = 1.5`):

.. math::

    \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
                               {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},
    \quad C_1 = (K_1 L)^2,\ C_2 = (K_2 L)^2,\ K_1 = 0.01,\ K_2 = 0.03,

averaged over every position where the window fits inside the image, then over channels. It is
1 for identical images and negative when one image is the other's negative: a *similarity*,
which becomes a loss as :math:`1 - \mathrm{SSIM}`.

MS-SSIM (Wang, Simoncelli & Bovik, 2003, "Multiscale Structural Similarity for Image Quality
Assessment", Asilomar) measures the contrast-structure term :math:`cs` at five scales, halving
the image between them, and the full SSIM at the coarsest:

.. math::

    \mathrm{MS\text{-}SSIM} = \mathrm{SSIM}_M^{\,w_M} \prod_{j=1}^{M-1} cs_j^{\,w_j},
    \quad w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333).

Published SSIM numbers disagree between implementations unless they are configured alike: the
window (Gaussian 11 x 11 with sigma 1.5 here and in Wang et al.; scikit-image's default is a
7 x 7 uniform window), the sample-covariance correction (none here; scikit-image's default
divides by :math:`n - 1`), the data range (the *range of the values*, 1 for ``[0, 1]``; a wrong
range changes :math:`C_1, C_2`), whether the borders are included (here only positions where the
window fits), the colour handling (mean over RGB channels here; many papers use luminance only)
and whether the image is first downsampled (Wang et al.'s MATLAB code shrinks large images).
:func:`ssim` equals ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1)``, and :func:`ms_ssim` equals the
``pytorch_msssim`` package's ``ms_ssim`` (which pads odd sizes before halving them);
``tests/test_similarity.py`` checks both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: the weights of the five scales of MS-SSIM, finest first (Wang et al., 2003); they sum to 1 up to
#: the rounding of the published four decimals (1.0001), and are used as published, as everyone does.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check_pair(x: Tensor, y: Tensor, data_range: float) -> None:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor of images N x C x H x W, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape N x C x H x W, got {tuple(t.shape)}")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if not (isinstance(data_range, (int, float)) and data_range > 0):
        raise ValueError(f"data_range must be a positive number (1 for images in [0, 1]), got {data_range!r}")


def psnr(x: Tensor, y: Tensor, *, data_range: float = 1.0) -> Tensor:
    r"""Peak signal-to-noise ratio in dB per image, :math:`10 \log_{10}(L^2 / \mathrm{MSE})`.

    Identical images give ``inf``. Equals ``skimage.metrics.peak_signal_noise_ratio`` with the
    same ``data_range``.
    """
    _check_pair(x, y, data_range)
    mse = (x - y).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """The normalised 1-D Gaussian of ``size`` taps (odd) and standard deviation ``sigma``; SSIM filters with its outer product."""
    if not (isinstance(size, int) and size >= 1 and size % 2 == 1):
        raise ValueError(f"window size must be an odd positive integer, got {size!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    window = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (window / window.sum()).to(dtype=dtype, device=device)


def _filter(images: Tensor, window: Tensor) -> Tensor:
    """Separable Gaussian filtering of every channel, keeping only positions where the window fits ("valid")."""
    channels = images.shape[1]
    k = window.numel()
    rows = window.view(1, 1, 1, k).expand(channels, 1, 1, k)
    cols = window.view(1, 1, k, 1).expand(channels, 1, k, 1)
    return F.conv2d(F.conv2d(images, rows, groups=channels), cols, groups=channels)


def _ssim_and_cs(x: Tensor, y: Tensor, window: Tensor, data_range: float, k1: float, k2: float) -> tuple[Tensor, Tensor]:
    """Per image and channel (``N x C``): the mean SSIM and the mean contrast-structure term."""
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu_x = _filter(x, window)
    mu_y = _filter(y, window)
    # Population (biased) variances, as Wang et al. and use_sample_covariance=False.
    var_x = _filter(x * x, window) - mu_x**2
    var_y = _filter(y * y, window) - mu_y**2
    cov = _filter(x * y, window) - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * cs_map).flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def _check_size(x: Tensor, minimum: int, what: str) -> None:
    h, w = x.shape[-2:]
    if min(h, w) < minimum:
        raise ValueError(f"{what} needs images of at least {minimum} x {minimum} pixels, got {h} x {w}")


def ssim(
    x: Tensor,
    y: Tensor,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """SSIM per image (Wang et al., 2004; formula in the module docstring), shape ``(N,)``.

    ``x`` and ``y`` are ``N x C x H x W`` in ``[0, data_range]``, at least ``window_size`` pixels
    on each side; colour images give the mean over channels. Differentiable in both arguments.
    """
    _check_pair(x, y, data_range)
    _check_size(x, window_size, f"SSIM with a {window_size} x {window_size} window")
    window = gaussian_window(window_size, sigma, dtype=x.dtype, device=x.device)
    value, _ = _ssim_and_cs(x, y, window, data_range, k1, k2)
    return value.mean(1)


def ms_ssim_min_size(scales: int = len(MS_SSIM_WEIGHTS), window_size: int = 11) -> int:
    """The smallest image side MS-SSIM accepts: the window must still fit after ``scales - 1`` halvings (161 for 5 scales)."""
    return (window_size - 1) * 2 ** (scales - 1) + 1


def _safe_power(base: Tensor, exponent: float) -> Tensor:
    """``relu(base) ** exponent`` whose gradient is 0, not NaN, where ``base <= 0``."""
    positive = base > 0
    return torch.where(positive, base.clamp_min(torch.finfo(base.dtype).tiny) ** exponent, torch.zeros_like(base))


def ms_ssim(
    x: Tensor,
    y: Tensor,
    *,
    data_range: float = 1.0,
    weights: tuple[float, ...] | list[float] = MS_SSIM_WEIGHTS,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    r"""MS-SSIM per image (Wang et al., 2003; formula in the module docstring), shape ``(N,)``.

    Between scales the images are halved by 2 x 2 averaging (an odd side is first padded with a
    zero row or column, as in ``pytorch_msssim``). Negative terms are set to 0 before the
    fractional powers (also as ``pytorch_msssim``), with a gradient of 0 there. ``weights`` sets
    the number of scales; images need at least :func:`ms_ssim_min_size` pixels per side (161 for
    the five published scales), and smaller ones raise a ``ValueError`` that says so.
    """
    _check_pair(x, y, data_range)
    weights = [float(w) for w in weights]
    if not weights or any(w < 0 for w in weights):
        raise ValueError(f"weights must be a non-empty list of non-negative numbers, got {weights!r}")
    scales = len(weights)
    _check_size(x, ms_ssim_min_size(scales, window_size), f"MS-SSIM with {scales} scales and a {window_size}-pixel window")
    window = gaussian_window(window_size, sigma, dtype=x.dtype, device=x.device)
    result = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    for scale, weight in enumerate(weights):
        value, cs = _ssim_and_cs(x, y, window, data_range, k1, k2)
        if scale == scales - 1:
            result = result * _safe_power(value, weight)
        else:
            result = result * _safe_power(cs, weight)
            padding = [s % 2 for s in x.shape[-2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    return result.mean(1)


def paired_wins(scores_a: Tensor, scores_b: Tensor, *, higher_is_better: bool = True) -> dict[str, int]:
    """On how many images method A beats method B, loses, or ties, given per-image scores of both.

    Comparing image by image says more than two means: a method can win on the mean through
    a few images and lose on most.
    """
    a = torch.as_tensor(scores_a, dtype=torch.float64).flatten()
    b = torch.as_tensor(scores_b, dtype=torch.float64).flatten()
    if a.shape != b.shape:
        raise ValueError(f"scores_a and scores_b must score the same images, got {a.numel()} and {b.numel()} scores")
    diff = a - b if higher_is_better else b - a
    return {"wins": int((diff > 0).sum()), "losses": int((diff < 0).sum()), "ties": int((diff == 0).sum())}

