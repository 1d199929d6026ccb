r"""A blind Gaussian denoiser: one U-Net for every noise level from 0 to 55 (chapter 6.1).

The network predicts the *noise* of a noisy image :math:`x = y + \frac{\sigma}{255} n` and
subtracts it, :math:`\hat y = x - f_\theta(x)`, the residual learning of DnCNN (Zhang, Zuo, Chen,
Meng & Zhang, 2017, "Beyond a Gaussian Denoiser", IEEE TIP 26(7)); it is trained with the mean
squared error :math:`\lVert \hat y - y \rVert^2`, whose minimiser is the posterior mean
:math:`\mathbb{E}[y \mid x]`, the best denoiser in PSNR. *Blind*: every training image gets its
own level :math:`\sigma \sim U[0, 55]` (DnCNN-B's range), and the network is never told it, so
one model serves any level in that range, as a reader's photo of unknown noise needs.

The network is :class:`aigc_lab.models.image_unet.ImageUNet` rather than DnCNN's plain stack: on
the book's photo patches, with the same number of parameters and the same training time, the
U-Net denoised 1.3 dB better at sigma 25 (``tools/denoiser_choice.py`` prints the comparison).
Its downsampling gives each output pixel a wide view of the image cheaply, which is what
averaging away strong noise needs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from aigc_lab.contract import ImageToImageModel, StepContext
from aigc_lab.degradations import BLIND_SIGMA_RANGE, augment, gaussian_noise, random_sigmas
from aigc_lab.models.image_unet import ImageUNet


class Denoiser(ImageToImageModel):
    """A blind U-Net denoiser (noise level unknown, 0 to 55) that predicts the noise and subtracts it."""

    name = "denoiser"
    default_steps = 2000

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 48, 48),
        *,
        width: int = 16,
        levels: int = 2,
        lr: float = 1e-3,
        sigma_range: tuple[float, float] = BLIND_SIGMA_RANGE,
        decay_steps: int = 0,
        norm: bool = True,
    ) -> None:
        super().__init__()
        channels, h, w = (int(v) for v in image_shape)
        if channels not in (1, 3):
            raise ValueError(f"image_shape must have 1 or 3 channels, got {tuple(image_shape)}")
        low, high = (float(v) for v in sigma_range)
        random_sigmas(1, low, high)  # a bad range fails here, naming the 0-255 scale
        if isinstance(decay_steps, bool) or not isinstance(decay_steps, int) or decay_steps < 0:
            raise ValueError(f"decay_steps must be a non-negative integer (0: a constant learning rate), got {decay_steps!r}")
        self.hparams = {
            "image_shape": [channels, h, w],
            "width": width,
            "levels": levels,
            "lr": lr,
            "sigma_range": [low, high],
            "decay_steps": decay_steps,
            "norm": bool(norm),
        }
        self.net = ImageUNet(channels, channels, width=width, levels=levels, norm=bool(norm))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"denoiser": torch.optim.Adam(self.net.parameters(), lr=self.hparams["lr"])}

    def damage(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, None]:
        """The training input: each image with white Gaussian noise of its own level from ``hparams["sigma_range"]`` (no mask)."""
        sigma = random_sigmas(len(clean), *self.hparams["sigma_range"], generator=generator)
        return gaussian_noise(clean, sigma, generator=generator), None

    def forward(self, noisy: Tensor) -> Tensor:
        """The denoised images, ``noisy - predicted noise`` (not clipped)."""
        if noisy.dim() != 4 or noisy.shape[1] != self.channels:
            raise ValueError(f"images must be N x {self.channels} x H x W, got {tuple(noisy.shape)}")
        return noisy - self.net(noisy)

    def learning_rate(self, step: int) -> float:
        r"""The learning rate at ``step``: ``lr``, or with ``decay_steps`` a cosine from ``lr`` to 0 over them.

        :math:`\eta_t = \frac{\eta}{2}\left(1 + \cos\frac{\pi \min(t, T)}{T}\right)` (SGDR without
        restarts, Loshchilov & Hutter, 2017): a short run ends at a small step size, where Adam
        stops jumping around the minimum it has found.
        """
        decay = self.hparams.get("decay_steps", 0)
        if not decay:
            return self.hparams["lr"]
        return 0.5 * self.hparams["lr"] * (1 + math.cos(math.pi * min(step, decay) / decay))

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Any]:
        for group in ctx.optimizers["denoiser"].param_groups:  # set from the step, so a resumed run continues the schedule
            group["lr"] = self.learning_rate(ctx.step)
        clean = augment(batch[0])
        loss = F.mse_loss(self(self.damage(clean)[0]), clean)
        ctx.optimize("denoiser", loss)
        return {"loss/mse": float(loss.detach())}

    @torch.no_grad()
    def restore(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """Denoise a batch of any size in evaluation mode, clipped to ``[0, 1]``.

        ``images`` may hold noise that pushes them a little outside ``[0, 1]`` (an unclipped
        noisy array); only a saved file is clipped.
        """
        self.check_restore_input(images, mask, check_range=False)
        was_training = self.training
        self.eval()
        try:
            return self(images).clamp(0, 1)
        finally:
            self.train(was_training)
