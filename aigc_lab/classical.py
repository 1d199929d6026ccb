"""The classical restoration methods a practitioner would use instead of a network (chapter 6.1).

Each wraps a well-kept library, with the settings its authors or its documentation recommend,
and takes and returns the book's tensors (``N x C x H x W`` in :math:`[0, 1]`, gray or colour):

* :func:`denoise`: BM3D (Dabov et al., 2007; the ``bm3d`` package of Makinen, Azzari & Foi),
  total variation (Chambolle, 2004), non-local means (Buades, Coll & Morel, 2005) and wavelet
  shrinkage (BayesShrink, Chang, Yu & Vetterli, 2000), the last three from scikit-image.
* :func:`inpaint`: biharmonic inpainting (scikit-image, after Damelin & Hoang, 2018) and the
  fast marching method of Telea (2004) from OpenCV.
* :func:`upsample`: bicubic interpolation, the baseline of every super-resolution paper.
* :func:`enhance`: gamma correction, histogram equalisation and CLAHE (Zuiderveld, 1994), from
  ``skimage.exposure``.

The methods run per image on the CPU with NumPy, so they report their own time
(:func:`timed`), which chapter 6.1 puts next to the networks'.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from aigc_lab.degradations import bicubic_upsample, check_mask
from aigc_lab.images import check_images

DENOISERS = ("bm3d", "tv", "nl-means", "wavelet")
INPAINTERS = ("biharmonic", "telea")
ENHANCERS = ("gamma", "auto-gamma", "histeq", "clahe")


def _per_image(images: Tensor, fn: Callable[[np.ndarray], np.ndarray]) -> Tensor:
    """Apply ``fn`` to each image as an H x W (gray) or H x W x 3 (colour) float64 array in [0, 1]."""
    out = []
    for image in images.detach().cpu().double().numpy():
        array = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        result = np.asarray(fn(array), dtype=np.float64)
        out.append(result[None] if result.ndim == 2 else result.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out)).float().clamp(0, 1)


def _check(images: Tensor, name: str = "images", value_range: tuple[float, float] | None = (0.0, 1.0)) -> Tensor:
    check_images(images, name=name, value_range=value_range, channels=(1, 3), batched=True)
    return images


def denoise(noisy: Tensor, sigma: float, method: str = "bm3d") -> Tensor:
    """Remove white Gaussian noise of level ``sigma`` (0-255 scale) from ``noisy`` with a classical method.

    ``noisy`` may lie outside :math:`[0, 1]` (unclipped noise, as :func:`aigc_lab.degradations.gaussian_noise`
    makes it). Each method is told the noise level, as a non-blind denoiser is:

    * ``"bm3d"``: ``bm3d.bm3d(image, sigma_psd=sigma/255)`` (``bm3d_rgb`` for colour), the
      package's defaults;
    * ``"tv"``: ``denoise_tv_chambolle`` with ``weight = 2 sigma / 255``, which grows with the
      noise (scikit-image's example uses 0.1 at sigma of about 25);
    * ``"nl-means"``: ``denoise_nl_means`` with ``h = 0.8 sigma``, ``patch_size=5``,
      ``patch_distance=6``, ``fast_mode=True``, scikit-image's documented setting;
    * ``"wavelet"``: ``denoise_wavelet`` with BayesShrink, soft thresholding and
      ``rescale_sigma=True``, given ``sigma``.
    """
    _check(noisy, "noisy", value_range=None)
    if method not in DENOISERS:
        raise ValueError(f"unknown denoiser {method!r}; choose one of: {', '.join(DENOISERS)}")
    if not 0 < sigma < 255:
        raise ValueError(f"sigma must lie in (0, 255) (the noise level on the 0-255 scale, e.g. 25), got {sigma!r}")
    s = sigma / 255
    colour = noisy.shape[1] == 3
    axis = -1 if colour else None
    if method == "bm3d":
        import bm3d

        fn = (lambda a: bm3d.bm3d_rgb(a, sigma_psd=s)) if colour else (lambda a: bm3d.bm3d(a, sigma_psd=s))
    elif method == "tv":
        from skimage.restoration import denoise_tv_chambolle

        fn = lambda a: denoise_tv_chambolle(a, weight=2 * s, channel_axis=axis)  # noqa: E731
    elif method == "nl-means":
        from skimage.restoration import denoise_nl_means

        fn = lambda a: denoise_nl_means(a, h=0.8 * s, sigma=s, patch_size=5, patch_distance=6, fast_mode=True, channel_axis=axis)  # noqa: E731
    else:
        from skimage.restoration import denoise_wavelet

        fn = lambda a: denoise_wavelet(a, sigma=s, method="BayesShrink", mode="soft", rescale_sigma=True, channel_axis=axis)  # noqa: E731
    return _per_image(noisy, fn)


def inpaint(images: Tensor, mask: Tensor, method: str = "biharmonic") -> Tensor:
    """Fill the pixels where ``mask`` is 1 (``N x 1 x H x W``) from the rest of each image.

    ``"biharmonic"``: ``skimage.restoration.inpaint_biharmonic``; ``"telea"``: OpenCV's
    ``cv2.inpaint`` with ``INPAINT_TELEA`` and a radius of 3 pixels (OpenCV's example), on 8-bit
    images, as OpenCV requires. The kept pixels are returned unchanged.
    """
    _check(images)
    if method not in INPAINTERS:
        raise ValueError(f"unknown inpainting method {method!r}; choose one of: {', '.join(INPAINTERS)}")
    mask = check_mask(mask, images).expand(len(images), -1, -1, -1)
    colour = images.shape[1] == 3
    out = []
    for image, m in zip(images, mask[:, 0].bool().numpy()):
        if method == "biharmonic":
            from skimage.restoration import inpaint_biharmonic

            fn = lambda a, m=m: inpaint_biharmonic(a, m, channel_axis=-1 if colour else None)  # noqa: E731
        else:
            import cv2

            def fn(a: np.ndarray, m: np.ndarray = m) -> np.ndarray:
                filled = cv2.inpaint(np.round(a * 255).astype(np.uint8), m.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
                return filled.astype(np.float64) / 255

        out.append(_per_image(image[None], fn))
    filled = torch.cat(out)
    return torch.where(mask.bool(), filled, images.float())


def upsample(images: Tensor, scale: int) -> Tensor:
    """Bicubic interpolation by ``scale``: :func:`aigc_lab.degradations.bicubic_upsample`, the classical super-resolution."""
    return bicubic_upsample(_check(images), scale)


def enhance(images: Tensor, method: str = "clahe", *, gamma: float = 0.5) -> Tensor:
    """Brighten a dark image without a network.

    ``"gamma"``: ``skimage.exposure.adjust_gamma(image, gamma)`` (``gamma < 1`` brightens);
    ``"auto-gamma"``: the same with ``gamma`` chosen per image so that its mean brightness becomes
    0.5, :math:`\\gamma = \\log 0.5 / \\log \\bar x` (a darker image gets a stronger curve);
    ``"histeq"``: ``equalize_hist`` (per channel for colour would shift hues, so colour images are
    equalised on their brightness: each pixel's RGB is scaled by the ratio of the equalised to the
    original brightness); ``"clahe"``: ``equalize_adapthist`` with its default ``clip_limit=0.01``,
    on the brightness in the same way.
    """
    _check(images)
    if method not in ENHANCERS:
        raise ValueError(f"unknown enhancement {method!r}; choose one of: {', '.join(ENHANCERS)}")
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    from skimage import exposure

    if method == "gamma":
        return _per_image(images, lambda a: exposure.adjust_gamma(a, gamma))
    if method == "auto-gamma":
        return _per_image(images, lambda a: exposure.adjust_gamma(a, auto_gamma(a)))
    equalise = exposure.equalize_hist if method == "histeq" else exposure.equalize_adapthist

    def fn(a: np.ndarray) -> np.ndarray:
        if a.ndim == 2:
            return equalise(a)
        brightness = a.max(axis=-1)  # HSV's value: scaling RGB by one factor keeps the hue
        ratio = equalise(brightness) / np.maximum(brightness, 1e-6)
        return np.clip(a * ratio[..., None], 0, 1)

    return _per_image(images, fn)


def auto_gamma(image: np.ndarray, target: float = 0.5) -> float:
    """The gamma that maps the mean brightness of ``image`` (in ``(0, 1)``) to ``target``: ``log(target) / log(mean)``."""
    mean = float(np.clip(np.mean(image), 1e-3, 1 - 1e-3))
    return float(np.log(target) / np.log(mean))


def timed(fn: Callable[..., Tensor], *args: object, **kwargs: object) -> tuple[Tensor, float]:
    """``fn(*args, **kwargs)`` and the seconds it took."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
