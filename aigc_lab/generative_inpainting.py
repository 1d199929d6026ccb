r"""Inpainting with chapter 3's generative models, which were never trained to inpaint (chapter 6.1.3).

A generative model knows :math:`p(x)`; inpainting asks for :math:`p(x_{\text{missing}} \mid x_{\text{known}})`.
Two of chapter 3's families can be steered towards it without any new training:

* :func:`repaint`, for a DDPM: RePaint (Lugmayr, Danelljan, Romero, Yu, Timofte & Van Gool, 2022,
  "RePaint: Inpainting using Denoising Diffusion Probabilistic Models", CVPR). At every reverse
  step the known pixels are replaced by the clean image noised to that step,
  :math:`x_{t-1} = m \odot x^{\text{known}}_{t-1} + (1 - m) \odot x^{\text{unknown}}_{t-1}` with
  :math:`m` = 1 where known, :math:`x^{\text{known}}_{t-1} \sim q(x_{t-1} \mid x_0)` and
  :math:`x^{\text{unknown}}_{t-1} \sim p_\theta(x_{t-1} \mid x_t)`. Because the model's step only sees
  the pasted-in known pixels afterwards, the two halves can disagree at the hole's edge; RePaint
  *resamples*: it noises :math:`x_{t-1}` back to :math:`x_t` and repeats the step ``resample`` times, so
  the generated part has time to fit the known part.
* :func:`pixelcnn_complete`, for a PixelCNN: draw the missing pixels one at a time in raster order
  from :math:`p(x_i \mid x_{<i})`, keeping the known ones. The model sees the known pixels above
  and to the left of a missing pixel, never those below or to the right, which is the limit of
  an autoregressive order for this task.

Both take and return images in ``[0, 1]`` and a mask with 1 = missing, as everything in 6.1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from aigc_lab.degradations import check_mask
from aigc_lab.images import check_images, to_model_range, to_unit_range
from aigc_lab.models.diffusion import _noise as _diffusion_noise


def _noise(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise like ``like``: the DDPM sampler's own draw (on the CPU when seeded, so a seed gives the same numbers on any device)."""
    return _diffusion_noise(tuple(like.shape), like, generator)


@torch.no_grad()
def repaint(
    model,
    images: Tensor,
    mask: Tensor,
    *,
    steps: int | None = None,
    resample: int = 5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill ``mask == 1`` in ``images`` with a trained unconditional :class:`~aigc_lab.models.diffusion.DDPM` by RePaint.

    Args:
        model: the DDPM (its EMA weights are used when it keeps them).
        images: ``N x C x H x W`` in ``[0, 1]``, of the model's image shape.
        mask: ``N or 1 x 1 x H x W``, 1 = missing.
        steps: reverse steps (default the model's ``sample_steps``), evenly spaced as its sampler's.
        resample: how many times each step is taken (``U`` in the paper; 1 is plain pasting).
        generator: seeds every draw.

    Returns:
        ``N x C x H x W`` in ``[0, 1]`` with the known pixels exactly as given. Costs
        ``steps x resample`` network calls.
    """
    check_images(images)
    if tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"images must be N x {' x '.join(map(str, model.image_shape))} for this model, got {tuple(images.shape)}")
    if getattr(model, "num_classes", 0):
        raise ValueError("repaint needs an unconditional DDPM (this one was trained with labels)")
    if isinstance(resample, bool) or not isinstance(resample, int) or resample < 1:
        raise ValueError(f"resample must be a positive integer, got {resample!r}")
    mask = check_mask(mask, images)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x0 = to_model_range(images).to(device)
        known = (1 - mask).to(device)
        ts = model.timestep_sequence(model.hparams["sample_steps"] if steps is None else steps)
        abar = model.alphas_cumprod.tolist()
        x = _noise(x0, generator)
        for i in reversed(range(len(ts))):
            t, a_t = ts[i], abar[ts[i]]
            a_prev = abar[ts[i - 1]] if i > 0 else 1.0
            t_batch = torch.full((len(x),), t, device=device, dtype=torch.long)
            for u in range(resample):
                # the unknown part: one ancestral step of the model, as DDPM.sample takes it
                eps = model.guided_eps(x, t_batch, None, None)
                x0_hat = ((x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)).clamp(-1, 1)
                beta = 1 - a_t / a_prev
                mean = math.sqrt(a_prev) * beta / (1 - a_t) * x0_hat + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t) * x
                sigma = math.sqrt((1 - a_prev) / (1 - a_t) * beta)
                unknown = mean + sigma * _noise(x, generator) if sigma > 0 else mean
                # the known part: the clean image noised to the same step, q(x_{t-1} | x_0)
                known_part = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * _noise(x, generator) if i > 0 else x0
                x_prev = known * known_part + (1 - known) * unknown
                if u < resample - 1 and i > 0:  # back to step t: x_t ~ q(x_t | x_{t-1}), then the step again
                    x = math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * _noise(x, generator)
                else:
                    x = x_prev
        out = to_unit_range(x).cpu()
    finally:
        model.train(was_training)
    return torch.where(mask.bool().expand_as(images), out, images)


@torch.no_grad()
def pixelcnn_complete(model, images: Tensor, mask: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    r"""Fill ``mask == 1`` with a trained unconditional :class:`~aigc_lab.models.autoregressive.PixelCNN`, pixel by pixel in raster order.

    Each missing pixel is drawn from :math:`p(x_i \mid x_{<i})`, with the known pixels (and the
    missing ones drawn so far) as :math:`x_{<i}`; the known pixels are kept. ``images`` must hold
    the model's gray levels exactly (``k / (levels - 1)``), as its training data did.
    """
    from aigc_lab.models.autoregressive import images_to_levels, levels_to_images

    check_images(images)
    if tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"images must be N x {' x '.join(map(str, model.image_shape))} for this model, got {tuple(images.shape)}")
    if getattr(model, "num_classes", 0):
        raise ValueError("pixelcnn_complete needs an unconditional PixelCNN (this one was trained with labels)")
    mask = check_mask(mask, images).expand(len(images), -1, -1, -1)
    device = next(model.parameters()).device
    x = images_to_levels(images, model.levels).to(device)
    missing = mask.bool().to(device)
    was_training = model.training
    model.eval()
    try:
        _, h, w = model.image_shape
        for i in range(h):
            rows = missing[:, 0, i]  # (N, W)
            if not rows.any():
                continue
            for j in range(w):
                todo = rows[:, j]
                if not todo.any():
                    continue
                logits = model.logits(x[:, :, : i + 1])[:, :, 0, i, j]  # (N, levels): p(x_ij | x_<ij); rows below cannot matter
                probs = logits.float().softmax(-1).cpu()
                drawn = torch.multinomial(probs, 1, generator=generator)[:, 0].to(device)
                x[:, 0, i, j] = torch.where(todo, drawn, x[:, 0, i, j])
    finally:
        model.train(was_training)
    return torch.where(mask.bool(), levels_to_images(x, model.levels).cpu(), images)
