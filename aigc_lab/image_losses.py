r"""The losses that compare a network's output image with a target image (chapter 5).

:mod:`aigc_lab.losses` holds the losses of generative training (the critic's and generator's
objectives, the gradient penalty); this module holds those of image-to-image training, where
each output has a target: restoration, translation, style. Every function returns a scalar to
*minimise*; the images are ``N x C x H x W`` with the target in ``[0, data_range]``.

**MSE and L1 as likelihoods.** Minimising the mean squared error is maximum likelihood under
Gaussian noise, :math:`-\log \mathcal{N}(y; f(x), \sigma^2) = \frac{(y - f(x))^2}{2\sigma^2} + c`,
and its minimiser over a set of plausible targets is their *mean*. Minimising the mean absolute
error is maximum likelihood under Laplace noise, :math:`-\log p = \frac{|y - f(x)|}{b} + c`, and
its minimiser is their *median*. When many sharp targets are plausible (chapter 1's generator,
an ambiguous restoration) the mean is a blur; the median of a pixel is one of the plausible
values, so L1 blurs less.

**Structural losses.** SSIM and MS-SSIM (:mod:`aigc_lab.similarity`) are similarities, 1 for a
perfect output, so the losses are :math:`1 - \mathrm{SSIM}` and :math:`1 - \mathrm{MS\text{-}SSIM}`.
Zhao, Gallo, Frosio & Kautz (2017, "Loss Functions for Image Restoration with Neural Networks",
IEEE TCI 3(1)) found the mix :math:`\alpha (1 - \mathrm{MS\text{-}SSIM}) + (1 - \alpha) \ell_1`,
:math:`\alpha = 0.84`, best: MS-SSIM keeps structure and contrast, L1 keeps colours and
brightness, which MS-SSIM barely constrains. (Zhao et al. also weight their L1 term with the
Gaussian of the coarsest scale; :func:`mixed_loss` uses the plain L1, as most reimplementations.)

**Adversarial loss for image-to-image networks.** A PatchGAN discriminator
(:class:`aigc_lab.models.patchgan.PatchDiscriminator`; Isola, Zhu, Zhou & Efros, 2017,
"Image-to-Image Translation with Conditional Adversarial Networks", CVPR) returns one logit per
patch; :func:`patch_adversarial_losses` averages the non-saturating (Goodfellow et al., 2014) or
hinge (Lim & Ye, 2017; Miyato et al., 2018) objective over them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from aigc_lab import similarity

#: Zhao et al.'s weight of the MS-SSIM term in the mixed loss.
ZHAO_ALPHA = 0.84


def _check_output_and_target(output: Tensor, target: Tensor, data_range: float = 1.0) -> None:
    for name, t in (("output", output), ("target", target)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor of images N x C x H x W, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape N x C x H x W, got {tuple(t.shape)}")
    if output.shape != target.shape:
        raise ValueError(f"output and target must have the same shape, got {tuple(output.shape)} and {tuple(target.shape)}")
    # The structural losses are not shift-invariant: a target in [-1, 1] silently changes them.
    low, high = float(target.detach().min()), float(target.detach().max())
    if low < -1e-3 or high > data_range + 1e-3:
        raise ValueError(f"target values must lie in [0, {data_range:g}] (data_range), got [{low:.3g}, {high:.3g}]")


def mse_loss(output: Tensor, target: Tensor) -> Tensor:
    r"""Mean squared error :math:`\frac{1}{n}\sum (f(x) - y)^2`: Gaussian likelihood, its minimiser the mean."""
    _check_output_and_target(output, target)
    return F.mse_loss(output, target)


def l1_loss(output: Tensor, target: Tensor) -> Tensor:
    r"""Mean absolute error :math:`\frac{1}{n}\sum |f(x) - y|`: Laplace likelihood, its minimiser the median."""
    _check_output_and_target(output, target)
    return F.l1_loss(output, target)


def ssim_loss(output: Tensor, target: Tensor, *, data_range: float = 1.0) -> Tensor:
    r""":math:`1 - \mathrm{SSIM}(f(x), y)`, averaged over the batch (11 x 11 Gaussian window, :math:`\sigma = 1.5`)."""
    _check_output_and_target(output, target, data_range)
    return 1 - similarity.ssim(output, target, data_range=data_range).mean()


def ms_ssim_loss(
    output: Tensor, target: Tensor, *, data_range: float = 1.0, weights: tuple[float, ...] | list[float] = similarity.MS_SSIM_WEIGHTS
) -> Tensor:
    r""":math:`1 - \mathrm{MS\text{-}SSIM}(f(x), y)`, averaged over the batch.

    Five scales need patches of at least 161 pixels; for smaller training patches pass fewer
    ``weights`` (e.g. :func:`truncated_ms_ssim_weights` ``(3)``), and say so where the result is reported.
    """
    _check_output_and_target(output, target, data_range)
    return 1 - similarity.ms_ssim(output, target, data_range=data_range, weights=weights).mean()


def truncated_ms_ssim_weights(scales: int) -> tuple[float, ...]:
    """The first ``scales`` published MS-SSIM weights, rescaled to sum to 1 (for patches too small for five scales)."""
    if not (isinstance(scales, int) and 1 <= scales <= len(similarity.MS_SSIM_WEIGHTS)):
        raise ValueError(f"scales must be an integer from 1 to {len(similarity.MS_SSIM_WEIGHTS)}, got {scales!r}")
    kept = similarity.MS_SSIM_WEIGHTS[:scales]
    return tuple(w / sum(kept) for w in kept)


def mixed_loss(
    output: Tensor,
    target: Tensor,
    *,
    alpha: float = ZHAO_ALPHA,
    data_range: float = 1.0,
    weights: tuple[float, ...] | list[float] = similarity.MS_SSIM_WEIGHTS,
) -> Tensor:
    r"""Zhao et al.'s mix, :math:`\alpha (1 - \mathrm{MS\text{-}SSIM}) + (1 - \alpha)\, \ell_1`, :math:`\alpha = 0.84`."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    return alpha * ms_ssim_loss(output, target, data_range=data_range, weights=weights) + (1 - alpha) * l1_loss(output, target)


def patch_adversarial_losses(real_logits: Tensor, fake_logits: Tensor, *, objective: str = "nonsaturating") -> tuple[Tensor, Tensor]:
    r"""The discriminator's loss on one patch-logit map of real and one of restored images.

    ``"nonsaturating"``: :math:`-\log \sigma(D(y)) - \log(1 - \sigma(D(f(x))))`, the logistic
    loss of Goodfellow et al. (2014) that pix2pix uses. ``"hinge"``:
    :math:`\max(0, 1 - D(y)) + \max(0, 1 + D(f(x)))`. Both are averaged over the patches.
    Returns ``(real_term, fake_term)``; the discriminator minimises their sum.
    """
    _check_objective(objective)
    if real_logits.shape[0] == 0 or fake_logits.shape[0] == 0:
        raise ValueError("patch_adversarial_losses needs at least one image of each kind")
    if objective == "hinge":
        return F.relu(1 - real_logits).mean(), F.relu(1 + fake_logits).mean()
    return F.softplus(-real_logits).mean(), F.softplus(fake_logits).mean()


def patch_generator_loss(fake_logits: Tensor, *, objective: str = "nonsaturating") -> Tensor:
    r"""The restoring network's adversarial term: :math:`-\log \sigma(D(f(x)))` (non-saturating) or :math:`-D(f(x))` (hinge), averaged over patches."""
    _check_objective(objective)
    if objective == "hinge":
        return -fake_logits.mean()
    return F.softplus(-fake_logits).mean()


def _check_objective(objective: str) -> None:
    if objective not in ("nonsaturating", "hinge"):
        raise ValueError(f"objective must be 'nonsaturating' or 'hinge', got {objective!r}")


#: the pixel and structural losses by name, as tables and the restoration model call them.
PIXEL_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": mse_loss,
    "l1": l1_loss,
    "ssim": ssim_loss,
    "ms-ssim": ms_ssim_loss,
    "mixed": mixed_loss,
}


def pixel_loss(name: str) -> Callable[..., Tensor]:
    """The loss function called ``name`` in :data:`PIXEL_LOSSES`, with a clear error for an unknown name."""
    if name not in PIXEL_LOSSES:
        raise ValueError(f"unknown pixel loss {name!r}; choose one of {', '.join(PIXEL_LOSSES)}")
    return PIXEL_LOSSES[name]

