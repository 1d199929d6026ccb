r"""Single-image super-resolution with a sub-pixel convolution network: ESPCN (chapter 6.1).

Shi, Caballero, Huszar, Totz, Aitken, Bishop, Rueckert & Wang (2016), "Real-Time Single Image and
Video Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural Network" (CVPR),
arXiv:1609.05158. All convolutions run at the *low* resolution; the last one outputs
:math:`C r^2` channels, which the periodic shuffle :math:`\mathcal{PS}` rearranges into an image
:math:`r` times larger:

.. math::

    \hat y = \mathcal{PS}\big(W_3 * \tanh(W_2 * \tanh(W_1 * x))\big),
    \qquad \mathcal{PS}(T)_{c, h, w} = T_{c r^2 + r (h \bmod r) + (w \bmod r),\ \lfloor h/r \rfloor,\ \lfloor w/r \rfloor}.

The network predicts the difference from bicubic upsampling (a global residual, as VDSR, Kim et
al. 2016, found trains faster), so an untrained network starts at the classical baseline and
every gain over bicubic is the network's. Trained with the mean squared error against the
clean image, the PSNR loss of the papers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aigc_lab.contract import ImageToImageModel, StepContext
from aigc_lab.degradations import SR_SCALES, augment, bicubic_downsample, bicubic_upsample


class ESPCN(nn.Module):
    """The paper's network: 5 x 5 (64) -> 3 x 3 (32) -> 3 x 3 (C r^2) convolutions, tanh, pixel shuffle."""

    def __init__(self, channels: int = 1, scale: int = 2, width: int = 64) -> None:
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 5, padding=2),
            nn.Tanh(),
            nn.Conv2d(width, width // 2, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(width // 2, channels * scale * scale, 3, padding=1),
        )
        nn.init.zeros_(self.body[-1].weight)  # starts as bicubic upsampling exactly (the residual is 0)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, low: Tensor) -> Tensor:
        return bicubic_upsample(low.clamp(0, 1), self.scale) + F.pixel_shuffle(self.body(low), self.scale)


class SuperResolver(ImageToImageModel):
    """ESPCN as an :class:`~aigc_lab.contract.ImageToImageModel`: clean patches in, their bicubic downsampling as input, MSE."""

    name = "super-resolution"
    default_steps = 1000

    def __init__(self, image_shape: tuple[int, int, int] = (1, 48, 48), *, scale: int = 2, width: int = 64, lr: float = 1e-3) -> None:
        super().__init__()
        channels, h, w = (int(v) for v in image_shape)
        if channels not in (1, 3):
            raise ValueError(f"image_shape must have 1 or 3 channels, got {tuple(image_shape)}")
        if scale not in SR_SCALES:
            raise ValueError(f"scale must be one of {SR_SCALES}, got {scale!r}")
        if h % scale or w % scale:
            raise ValueError(f"training patches of {h} x {w} are not a multiple of the scale {scale}")
        self.hparams = {"image_shape": [channels, h, w], "scale": scale, "width": width, "lr": lr}
        self.net = ESPCN(channels, scale, width)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"super-resolution": torch.optim.Adam(self.net.parameters(), lr=self.hparams["lr"])}

    def damage(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, None]:
        """The low-resolution input, :func:`aigc_lab.degradations.bicubic_downsample` by the model's scale (no randomness, no mask)."""
        return bicubic_downsample(clean, self.scale), None

    def forward(self, low: Tensor) -> Tensor:
        """The super-resolved images, ``scale`` times larger (not clipped)."""
        if low.dim() != 4 or low.shape[1] != self.channels:
            raise ValueError(f"images must be N x {self.channels} x H x W in [0, 1], got {tuple(low.shape)}")
        return self.net(low)

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Any]:
        clean = augment(batch[0])
        loss = F.mse_loss(self(self.damage(clean)[0]), clean)
        ctx.optimize("super-resolution", loss)
        return {"loss/mse": float(loss.detach())}

    @torch.no_grad()
    def restore(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """Super-resolve low-resolution images of any size in evaluation mode: ``scale`` times larger, clipped to ``[0, 1]``."""
        self.check_restore_input(images, mask)
        low = images
        was_training = self.training
        self.eval()
        try:
            return self(low).clamp(0, 1)
        finally:
            self.train(was_training)
