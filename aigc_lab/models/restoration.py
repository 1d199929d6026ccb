r"""Restoration networks: map a degraded image back to the clean one (chapters 5 and 6.1).

The network is DnCNN's (Zhang, Zuo, Chen, Meng & Zhang, 2017, "Beyond a Gaussian Denoiser:
Residual Learning of Deep CNN for Image Denoising", IEEE TIP 26(7)): a plain stack of 3 x 3
convolutions that predicts the *noise* :math:`v` of a noisy image :math:`x = y + v`, and returns
:math:`\hat y = x - \mathrm{net}(x)`. Predicting the residual is easier than predicting the
image: it is small and has no structure to copy. (DnCNN also uses batch normalisation; this
small version, trained for a few hundred steps, does without.)

:class:`Restorer` trains that network with any loss of :mod:`aigc_lab.image_losses`, plus,
optionally, a perceptual term (:mod:`aigc_lab.perceptual`) and a PatchGAN adversarial term, so
chapter 5 can change one loss at a time and keep everything else the same.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from aigc_lab import image_losses, perceptual, similarity
from aigc_lab.models.patchgan import PatchDiscriminator
from aigc_lab.contract import StepContext, TrainableModel


class DnCNN(nn.Module):
    """``depth`` 3 x 3 convolutions of ``width`` channels with ReLUs between; returns ``noisy - predicted noise``."""

    def __init__(self, channels: int = 1, *, width: int = 48, depth: int = 8) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be at least 2, got {depth!r}")
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, noisy: Tensor) -> Tensor:
        return noisy - self.body(noisy - 0.5)


def _check_shape(image_shape: object) -> tuple[int, int, int]:
    """``(C, H, W)`` with 1 or 3 channels and sides of at least 11 pixels (SSIM's window); any size, unlike the generators."""
    if not (isinstance(image_shape, (tuple, list)) and len(image_shape) == 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in image_shape)):
        raise ValueError(f"image_shape must be (C, H, W) integers, e.g. (1, 48, 48), got {image_shape!r}")
    c, h, w = image_shape
    if c not in (1, 3) or min(h, w) < 11:
        raise ValueError(f"image_shape must have 1 or 3 channels and sides of at least 11 pixels, got {tuple(image_shape)}")
    return (c, h, w)


def ms_ssim_scales_for(size: int) -> int:
    """The most MS-SSIM scales (at most five) whose windows fit in a ``size``-pixel patch."""
    scales = len(similarity.MS_SSIM_WEIGHTS)
    while scales > 1 and similarity.ms_ssim_min_size(scales) > size:
        scales -= 1
    if similarity.ms_ssim_min_size(scales) > size:
        raise ValueError(f"patches of {size} pixels are too small for SSIM's 11-pixel window")
    return scales


class Restorer(TrainableModel):
    r"""A DnCNN denoiser trained with a chosen loss (Gaussian noise of standard deviation ``noise_sigma`` / 255).

    The loss is

    .. math::

        \ell_{pixel}(\hat y, y) + \lambda_{feat}\, \ell_{feat}(\hat y, y) + \lambda_{style}\, \ell_{style}(\hat y, y) + \lambda_{adv}\, \ell_{adv}(\hat y),

    with :math:`\ell_{pixel}` one of ``"mse"``, ``"l1"``, ``"ssim"``, ``"ms-ssim"``, ``"mixed"``
    (:data:`aigc_lab.image_losses.PIXEL_LOSSES`), :math:`\ell_{feat}` and :math:`\ell_{style}` the
    feature reconstruction and Gram-matrix losses in a fixed random network
    (:class:`aigc_lab.perceptual.RandomFeatures`)
    and :math:`\ell_{adv}` the PatchGAN generator loss, whose discriminator trains alongside.
    MS-SSIM uses as many of its five scales as the training patches allow (three for 48-pixel
    patches), with the kept weights rescaled to sum to 1.
    """

    name = "restorer"
    default_steps = 600

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 48, 48),
        *,
        noise_sigma: float = 25.0,
        loss: str = "mse",
        feature_weight: float = 0.0,
        style_weight: float = 0.0,
        adversarial_weight: float = 0.0,
        objective: str = "nonsaturating",
        width: int = 32,
        depth: int = 6,
        lr: float = 1e-3,
        discriminator_lr: float = 2e-4,
        feature_seed: int = 0,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        image_shape = _check_shape(image_shape)
        image_losses.pixel_loss(loss)  # an unknown name fails here, not at the first step
        if not noise_sigma > 0:
            raise ValueError(f"noise_sigma must be positive (on the 0-255 scale, e.g. 25), got {noise_sigma!r}")
        if min(feature_weight, style_weight, adversarial_weight) < 0:
            raise ValueError(f"feature_weight, style_weight and adversarial_weight must be >= 0, got {feature_weight!r}, {style_weight!r} and {adversarial_weight!r}")
        image_losses.patch_generator_loss(torch.zeros(1), objective=objective)  # checks the objective's name
        self.hparams = {
            "image_shape": list(image_shape),
            "noise_sigma": float(noise_sigma),
            "loss": loss,
            "feature_weight": float(feature_weight),
            "style_weight": float(style_weight),
            "adversarial_weight": float(adversarial_weight),
            "objective": objective,
            "width": width,
            "depth": depth,
            "lr": lr,
            "discriminator_lr": discriminator_lr,
            "feature_seed": feature_seed,
        }
        channels, size = image_shape[0], min(image_shape[1:])
        self.image_shape = image_shape
        self.net = DnCNN(channels, width=width, depth=depth)
        self.loss_name = loss
        self.ms_ssim_weights = image_losses.truncated_ms_ssim_weights(ms_ssim_scales_for(size))
        self.features = perceptual.RandomFeatures(channels, seed=feature_seed) if feature_weight > 0 or style_weight > 0 else None
        self.discriminator = PatchDiscriminator(channels) if adversarial_weight > 0 else None

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = {"restorer": torch.optim.Adam(self.net.parameters(), lr=self.hparams["lr"])}
        if self.discriminator is not None:
            optimizers["discriminator"] = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams["discriminator_lr"], betas=(0.5, 0.999))
        return optimizers

    def degrade(self, clean: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """``clean`` plus Gaussian noise of standard deviation ``noise_sigma / 255`` (not clipped, as in DnCNN)."""
        self._check_images(clean, "clean")
        noise = torch.randn(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
        return clean + noise * (self.hparams["noise_sigma"] / 255)

    def forward(self, degraded: Tensor) -> Tensor:
        """The restored images (not clipped; :meth:`restore` clips them to ``[0, 1]`` for viewing and metrics)."""
        self._check_images(degraded, "degraded")
        return self.net(degraded)

    @torch.no_grad()
    def restore(self, degraded: Tensor, *, batch_size: int = 16) -> Tensor:
        """Restore a batch in evaluation mode, clipped to ``[0, 1]``."""
        was_training = self.training
        self.eval()
        try:
            parts = [self(degraded[i : i + batch_size]).clamp(0, 1) for i in range(0, degraded.shape[0], batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(parts)

    def _check_images(self, images: Tensor, name: str) -> None:
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != self.image_shape[0]:
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"{name} must be images N x {self.image_shape[0]} x H x W, got {got}")

    def pixel_term(self, output: Tensor, clean: Tensor) -> Tensor:
        """The chosen pixel or structural loss of ``output`` against ``clean``."""
        loss_fn = image_losses.pixel_loss(self.loss_name)
        if self.loss_name in ("ms-ssim", "mixed"):
            return loss_fn(output, clean, weights=self.ms_ssim_weights)
        return loss_fn(output, clean)

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Any]:
        clean, _ = batch
        output = self(self.degrade(clean))
        logs: dict[str, Any] = {}
        if self.discriminator is not None:
            real_term, fake_term = image_losses.patch_adversarial_losses(
                self.discriminator(clean), self.discriminator(output.detach()), objective=self.hparams["objective"]
            )
            ctx.optimize("discriminator", real_term + fake_term)
            logs["loss/discriminator"] = float((real_term + fake_term).detach())
        pixel = self.pixel_term(output, clean)
        loss = pixel
        logs["loss/pixel"] = float(pixel.detach())
        if self.hparams["feature_weight"] > 0:
            feat = perceptual.feature_loss(self.features, output, clean)
            loss = loss + self.hparams["feature_weight"] * feat
            logs["loss/feature"] = float(feat.detach())
        if self.hparams["style_weight"] > 0:
            style = perceptual.style_loss(self.features, output, clean)
            loss = loss + self.hparams["style_weight"] * style
            logs["loss/style"] = float(style.detach())
        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)  # the restorer's step must not touch D's gradients
            adv = image_losses.patch_generator_loss(self.discriminator(output), objective=self.hparams["objective"])
            self.discriminator.requires_grad_(True)
            loss = loss + self.hparams["adversarial_weight"] * adv
            logs["loss/adversarial"] = float(adv.detach())
        ctx.optimize("restorer", loss)
        logs["loss/total"] = float(loss.detach())
        return logs

    @torch.no_grad()
    def evaluate(self, dataset: Any) -> dict[str, float]:
        """Mean PSNR, SSIM (and MS-SSIM when the images are large enough) on ``dataset``'s images, noise seed 0."""
        clean = dataset.images if hasattr(dataset, "images") else torch.stack([dataset[i][0] for i in range(len(dataset))])
        clean = clean.to(next(self.parameters()).device)
        restored = self.restore(self.degrade(clean, generator=torch.Generator(clean.device).manual_seed(0)))
        results = {"psnr": float(similarity.psnr(restored, clean).mean()), "ssim": float(similarity.ssim(restored, clean).mean())}
        if min(clean.shape[-2:]) >= similarity.ms_ssim_min_size():
            results["ms_ssim"] = float(similarity.ms_ssim(restored, clean).mean())
        return results
