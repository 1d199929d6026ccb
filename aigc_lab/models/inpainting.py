r"""Inpainting with a U-Net: the masked image and its mask in, the whole image out (chapter 6.1).

The network sees :math:`[x \odot (1 - m),\ m]` (the kept pixels and the mask, 1 = missing) and
predicts the image; only the missing pixels are taken from it, the kept ones pass through:
:math:`\hat y = m \odot f_\theta(x \odot (1 - m), m) + (1 - m) \odot x`. The loss weighs the
missing pixels six times the kept ones, the L1 "hole" and "valid" terms of Liu, Reda, Shih, Wang,
Tao & Catanzaro (2018), "Image Inpainting for Irregular Holes Using Partial Convolutions" (ECCV):

.. math::

    \mathcal{L} = 6\, \frac{\lVert m \odot (f_\theta - y) \rVert_1}{N} + \frac{\lVert (1 - m) \odot (f_\theta - y) \rVert_1}{N}.

Masks are drawn afresh every step (:func:`aigc_lab.degradations.random_masks`: strokes and boxes),
so the model learns to fill holes of any shape, not the ones it saw.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from aigc_lab.contract import ImageToImageModel, StepContext
from aigc_lab.degradations import apply_mask, augment, random_masks
from aigc_lab.models.image_unet import ImageUNet

HOLE_WEIGHT, VALID_WEIGHT = 6.0, 1.0  # Liu et al. (2018)


class Inpainter(ImageToImageModel):
    """A U-Net inpainter trained on clean patches with fresh random masks each step."""

    name = "inpainter"
    default_steps = 1000
    needs_mask = True

    def __init__(self, image_shape: tuple[int, int, int] = (1, 48, 48), *, width: int = 32, levels: int = 3, lr: float = 1e-3, mask_kind: str = "mixed") -> None:
        super().__init__()
        channels, h, w = (int(v) for v in image_shape)
        if channels not in (1, 3):
            raise ValueError(f"image_shape must have 1 or 3 channels, got {tuple(image_shape)}")
        random_masks(1, (h, w), kind=mask_kind)  # an unknown kind or a too-small size fails here
        self.hparams = {"image_shape": [channels, h, w], "width": width, "levels": levels, "lr": lr, "mask_kind": mask_kind}
        self.net = ImageUNet(channels + 1, channels, width=width, levels=levels)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"inpainter": torch.optim.Adam(self.net.parameters(), lr=self.hparams["lr"])}

    def forward(self, images: Tensor, mask: Tensor) -> Tensor:
        """The network's whole-image prediction from the kept pixels and the mask (not composited, not clipped)."""
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise ValueError(f"images must be N x {self.channels} x H x W in [0, 1], got {tuple(images.shape)}")
        masked = apply_mask(images, mask)  # checks the mask's shape and values
        return self.net(torch.cat([masked, mask.expand(len(images), 1, *images.shape[2:])], 1))

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
