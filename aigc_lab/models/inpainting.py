r"""Inpainting with a U-Net: the masked image and its mask in, the whole image out (chapter 6.1).

The holes are first filled by a classical rule (:func:`harmonic_fill`: push-pull's average of the
nearest known pixels, coarse to fine, smoothed by a few sweeps of Laplace's equation), and the
network learns only the *correction* of that fill, from the filled image and the mask
(1 = missing): :math:`g = \mathrm{fill}(x, m)`,
:math:`f = g + r_\theta(g, m)`, and only the missing pixels are taken from it, the kept ones pass
through: :math:`\hat y = m \odot f + (1 - m) \odot x`. The correction's last layer starts at zero,
so an untrained model *is* the harmonic fill and training only has to add what the rule misses (with
``prefill="none"`` the network starts from black holes, as in the first version of this model).

The loss weighs the missing pixels six times the kept ones, the L1 "hole" and "valid" terms of Liu, Reda, Shih, Wang,
Tao & Catanzaro (2018), "Image Inpainting for Irregular Holes Using Partial Convolutions" (ECCV):

.. math::

    \mathcal{L} = 6\, \frac{\lVert m \odot (f_\theta - y) \rVert_1}{N} + \frac{\lVert (1 - m) \odot (f_\theta - y) \rVert_1}{N}.

Masks are drawn afresh every step (:func:`aigc_lab.degradations.random_masks`: strokes and boxes),
so the model learns to fill holes of any shape, not the ones it saw.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from aigc_lab.contract import ImageToImageModel, StepContext
from aigc_lab.degradations import apply_mask, augment, random_masks
from aigc_lab.models.image_unet import ImageUNet

HOLE_WEIGHT, VALID_WEIGHT = 6.0, 1.0  # Liu et al. (2018)
PREFILLS = ("harmonic", "none")
HARMONIC_ITERATIONS = 30  # sweeps after push-pull: most of the gain of 200 on the book's 64 x 64 test crops, at a seventh of the time


@torch.no_grad()
def push_pull_fill(images: Tensor, mask: Tensor) -> Tensor:
    r"""Fill ``mask == 1`` with the push-pull rule (Gortler, Grzeszczuk, Szeliski & Cohen, 1996, "The Lumigraph").

    *Push*: halve the image and its known-pixel weight :math:`w` (1 = known) by 2 x 2 averages
    until no pixel is missing, so every coarse pixel holds the mean of the known pixels under it,
    :math:`c_{l+1} = \mathrm{avg}(w_l c_l) / \mathrm{avg}(w_l)`. *Pull*: from the coarsest level
    back up, blend each level with the bilinear upsampling :math:`u` of the one above by its
    coverage, :math:`c_l \leftarrow \min(w_l, 1)\, c_l + (1 - \min(w_l, 1))\, u(c_{l+1})`. Known
    pixels (:math:`w = 1`) stay exactly as they are; a hole gets a smooth blend of the colours
    around it, coarser the farther it reaches. Linear time, any size, any device.

    Args:
        images: ``N x C x H x W``.
        mask: ``N or 1 x 1 x H x W``, 1 = missing (values 0 or 1).

    Returns:
        ``N x C x H x W``, equal to ``images`` where ``mask == 0``.
    """
    weight = (1 - mask).expand(len(images), 1, *images.shape[2:]).to(images.dtype)
    colours, weights = [images * weight], [weight]
    while (weights[-1] <= 0).any() and min(weights[-1].shape[-2:]) > 1:
        summed = F.avg_pool2d(colours[-1], 2, ceil_mode=True)  # weighted colour sums, pooled
        w = F.avg_pool2d(weights[-1], 2, ceil_mode=True)
        colours.append(summed)
        weights.append(w)
    # colours[l] holds w * c (weighted sums); divide where anything is known
    estimate = colours[-1] / weights[-1].clamp_min(1e-8)
    if (weights[-1] <= 0).any():  # nothing known at all in an image: its mean of known pixels is undefined, use 0.5
        estimate = torch.where(weights[-1] > 0, estimate, torch.full_like(estimate, 0.5))
    for level in range(len(colours) - 2, -1, -1):
        w = weights[level]
        coarse = F.interpolate(estimate, size=w.shape[-2:], mode="bilinear", align_corners=False)
        fine = colours[level] / w.clamp_min(1e-8)
        alpha = w.clamp(0, 1)
        estimate = alpha * fine + (1 - alpha) * coarse
    return torch.where(mask.bool().expand_as(images), estimate, images)


@torch.no_grad()
def harmonic_fill(images: Tensor, mask: Tensor, iterations: int = HARMONIC_ITERATIONS) -> Tensor:
    r"""Fill ``mask == 1`` smoothly: :func:`push_pull_fill`, then ``iterations`` Jacobi sweeps of Laplace's equation in the holes.

    Each sweep replaces every missing pixel by the mean of its four neighbours,
    :math:`c_{ij} \leftarrow \frac14 (c_{i-1,j} + c_{i+1,j} + c_{i,j-1} + c_{i,j+1})`, which converges to
    the harmonic interpolation of the hole's border (the membrane that :math:`\Delta c = 0` spans;
    biharmonic inpainting solves :math:`\Delta^2 c = 0`, a stiffer plate). Push-pull's start makes a
    few dozen sweeps enough. Known pixels are returned exactly.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
    estimate = push_pull_fill(images, mask)
    missing = mask.bool().expand_as(images)
    for _ in range(iterations):
        padded = F.pad(estimate, (1, 1, 1, 1), mode="replicate")
        neighbours = (padded[..., :-2, 1:-1] + padded[..., 2:, 1:-1] + padded[..., 1:-1, :-2] + padded[..., 1:-1, 2:]) / 4
        estimate = torch.where(missing, neighbours, estimate)
    return estimate


class Inpainter(ImageToImageModel):
    """A U-Net inpainter trained on clean patches with fresh random masks each step."""

    name = "inpainter"
    default_steps = 1000
    needs_mask = True

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 48, 48),
        *,
        width: int = 32,
        levels: int = 3,
        lr: float = 1e-3,
        mask_kind: str = "mixed",
        prefill: str = "harmonic",
    ) -> None:
        super().__init__()
        channels, h, w = (int(v) for v in image_shape)
        if channels not in (1, 3):
            raise ValueError(f"image_shape must have 1 or 3 channels, got {tuple(image_shape)}")
        random_masks(1, (h, w), kind=mask_kind)  # an unknown kind or a too-small size fails here
        if prefill not in PREFILLS:
            raise ValueError(f"prefill must be one of {PREFILLS}, got {prefill!r}")
        self.hparams = {"image_shape": [channels, h, w], "width": width, "levels": levels, "lr": lr, "mask_kind": mask_kind, "prefill": prefill}
        self.net = ImageUNet(channels + 1, channels, width=width, levels=levels)
        if prefill != "none":  # the correction starts at zero: the untrained model is the harmonic fill itself
            torch.nn.init.zeros_(self.net.out.weight)
            torch.nn.init.zeros_(self.net.out.bias)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"inpainter": torch.optim.Adam(self.net.parameters(), lr=self.hparams["lr"])}

    def forward(self, images: Tensor, mask: Tensor) -> Tensor:
        """The network's whole-image prediction from the kept pixels and the mask (not composited, not clipped)."""
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise ValueError(f"images must be N x {self.channels} x H x W in [0, 1], got {tuple(images.shape)}")
        masked = apply_mask(images, mask)  # checks the mask's shape and values
        mask = mask.expand(len(images), 1, *images.shape[2:])
        if self.hparams.get("prefill", "none") == "none":
            return self.net(torch.cat([masked, mask], 1))
        filled = harmonic_fill(masked, mask)
        return filled + self.net(torch.cat([filled, mask], 1))

    def damage(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Fresh random masks (:func:`aigc_lab.degradations.random_masks` of the model's kind): ``(clean images, masks)``; :meth:`forward` hides the masked pixels."""
        return clean, random_masks(len(clean), tuple(clean.shape[2:]), kind=self.hparams["mask_kind"], generator=generator).to(clean.device)

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Any]:
        clean = augment(batch[0])
        _, mask = self.damage(clean)
        error = (self(clean, mask) - clean).abs()
        n = error.numel()
        hole, valid = (error * mask).sum() / n, (error * (1 - mask)).sum() / n
        loss = HOLE_WEIGHT * hole + VALID_WEIGHT * valid
        ctx.optimize("inpainter", loss)
        return {"loss/total": float(loss.detach()), "loss/hole": float(hole.detach()), "loss/valid": float(valid.detach())}

    @torch.no_grad()
    def restore(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """Fill the missing pixels (``mask == 1``) and keep the rest exactly, in evaluation mode, clipped to ``[0, 1]``."""
        self.check_restore_input(images, mask)
        was_training = self.training
        self.eval()
        try:
            filled = self(images, mask).clamp(0, 1)
        finally:
            self.train(was_training)
        return torch.where(mask.bool().expand_as(images), filled, images)
