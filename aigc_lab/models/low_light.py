r"""Low-light enhancement, without a reference image (Zero-DCE) and with one (a U-Net trained on pairs) (chapter 6.1).

Guo, Li, Guo, Loy, Hou, Kwong & Cong (2020), "Zero-Reference Deep Curve Estimation for Low-Light
Image Enhancement" (CVPR), arXiv:2001.06826. A small network estimates, for every pixel and
channel, the parameters of a brightening curve, applied :math:`n` times:

.. math::

    LE_0 = I, \qquad LE_k = LE_{k-1} + A_k \odot LE_{k-1} \odot (1 - LE_{k-1}), \qquad A_k \in [-1, 1]^{3 \times H \times W},

a quadratic that keeps :math:`[0, 1]` in :math:`[0, 1]`, is monotonic, and brightens where
:math:`A_k > 0`. No clean image is needed for training: four losses judge the output alone,

* :func:`exposure_loss`: the mean brightness of each 16 x 16 region should be near a well-exposed
  level :math:`E = 0.6`;
* :func:`spatial_consistency_loss`: the contrast between each 4 x 4 region and its four
  neighbours should stay what it was in the input;
* :func:`colour_constancy_loss`: the channels' means should agree (the gray-world assumption);
* :func:`illumination_smoothness_loss`: the curve maps should vary smoothly (total variation).

The weights are those of the authors' code (exposure 10, spatial 1, colour 5, smoothness 200).

:class:`PairedEnhancer` is the comparison that shows what needing no reference costs: the book's
image U-Net trained on pairs of a darkened image and its original with the L1 loss, as the
supervised low-light methods are (Chen, Chen, Xu & Koltun, 2018, "Learning to See in the Dark",
CVPR, train a U-Net with L1 on pairs of short and long exposures). Because it sees the clean image,
it learns to remove the noise as well as to brighten; curves cannot remove noise.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aigc_lab.contract import ImageToImageModel, StepContext
from aigc_lab.degradations import augment, low_light
from aigc_lab.models.image_unet import ImageUNet

#: the authors' loss weights (their released training code)
LOSS_WEIGHTS = {"exposure": 10.0, "spatial": 1.0, "colour": 5.0, "smoothness": 200.0}


class DCENet(nn.Module):
    """The curve estimator: seven 3 x 3 convolutions with symmetric skip concatenations, ``tanh`` output of ``3 n`` maps."""

    def __init__(self, channels: int = 3, width: int = 32, iterations: int = 8) -> None:
        super().__init__()
        self.channels, self.iterations = channels, iterations
        conv = lambda cin, cout: nn.Conv2d(cin, cout, 3, padding=1)  # noqa: E731
        self.c1, self.c2, self.c3, self.c4 = conv(channels, width), conv(width, width), conv(width, width), conv(width, width)
        self.c5, self.c6 = conv(2 * width, width), conv(2 * width, width)
        self.c7 = conv(2 * width, channels * iterations)

    def forward(self, x: Tensor) -> Tensor:
        x1 = F.relu(self.c1(x))
        x2 = F.relu(self.c2(x1))
        x3 = F.relu(self.c3(x2))
        x4 = F.relu(self.c4(x3))
        x5 = F.relu(self.c5(torch.cat([x3, x4], 1)))
        x6 = F.relu(self.c6(torch.cat([x2, x5], 1)))
        return torch.tanh(self.c7(torch.cat([x1, x6], 1)))


def apply_curves(image: Tensor, curves: Tensor) -> Tensor:
    r"""Apply :math:`LE_k = LE_{k-1} + A_k LE_{k-1} (1 - LE_{k-1})` for each of the ``curves.shape[1] // C`` maps in turn."""
    c = image.shape[1]
    if curves.shape[1] % c or curves.shape[0] != image.shape[0] or curves.shape[2:] != image.shape[2:]:
        raise ValueError(f"curves must be N x (k * {c}) x H x W for images of shape {tuple(image.shape)}, got {tuple(curves.shape)}")
    out = image
    for a in curves.split(c, dim=1):
        out = out + a * out * (1 - out)
    return out


def exposure_loss(enhanced: Tensor, level: float = 0.6, region: int = 16) -> Tensor:
    r""":math:`\frac{1}{M}\sum_k |Y_k - E|`, :math:`Y_k` the mean brightness of the :math:`k`-th ``region`` x ``region`` block."""
    gray = enhanced.mean(1, keepdim=True)
    return (F.avg_pool2d(gray, region) - level).abs().mean()


def spatial_consistency_loss(enhanced: Tensor, original: Tensor, region: int = 4) -> Tensor:
    r""":math:`\frac{1}{K}\sum_i \sum_{j \in \Omega(i)} (|Y_i - Y_j| - |I_i - I_j|)^2` on ``region``-pixel blocks, :math:`\Omega(i)` the four neighbours."""
    y = F.avg_pool2d(enhanced.mean(1, keepdim=True), region)
    i = F.avg_pool2d(original.mean(1, keepdim=True), region)
    total = enhanced.new_zeros(())
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        shifted_y = torch.roll(y, shifts=(dy, dx), dims=(2, 3))
        shifted_i = torch.roll(i, shifts=(dy, dx), dims=(2, 3))
        d = ((y - shifted_y).abs() - (i - shifted_i).abs()) ** 2
        # drop the wrapped-around border row or column that roll brings in
        d = d[..., 1:, :] if dy == 1 else d[..., :-1, :] if dy == -1 else d
        d = d[..., :, 1:] if dx == 1 else d[..., :, :-1] if dx == -1 else d
        total = total + d.mean()
    return total


def colour_constancy_loss(enhanced: Tensor) -> Tensor:
    r""":math:`\sum_{(p, q)} (J_p - J_q)^2` over the channel pairs, :math:`J_p` a channel's mean; 0 for gray images."""
    if enhanced.shape[1] == 1:
        return enhanced.new_zeros(())
    means = enhanced.mean((2, 3))
    r, g, b = means.unbind(1)
    return ((r - g) ** 2 + (r - b) ** 2 + (g - b) ** 2).mean()


def illumination_smoothness_loss(curves: Tensor) -> Tensor:
    r"""Total variation of the curve maps: :math:`\frac{1}{N}\sum_n \sum_c (|\nabla_x A_n^c| + |\nabla_y A_n^c|)^2`, as the authors' code computes it."""
    dh = (curves[..., 1:, :] - curves[..., :-1, :]).pow(2).mean()
    dw = (curves[..., :, 1:] - curves[..., :, :-1]).pow(2).mean()
    return 2 * (dh + dw)


class CurveEnhancer(ImageToImageModel):
    """Zero-DCE as an :class:`~aigc_lab.contract.ImageToImageModel`: trained on dark images alone, with the four losses above.

    The training batches are clean images; each step darkens them with :meth:`damage`
    (:func:`aigc_lab.degradations.low_light` with its defaults) and trains on the dark images
    only: the clean ones are never shown to the losses, which is the point of the method.
    """

    name = "low-light"
    default_steps = 600
    train_data_options = {"patch_size": 64, "n_patches": 4000}

    def __init__(self, image_shape: tuple[int, int, int] = (3, 64, 64), *, width: int = 32, iterations: int = 8, lr: float = 1e-4, exposure_level: float = 0.6) -> None:
        super().__init__()
        channels = int(image_shape[0])
        if channels not in (1, 3):
            raise ValueError(f"image_shape must have 1 or 3 channels, got {tuple(image_shape)}")
        if min(image_shape[1:]) < 16:
            raise ValueError(f"images must be at least 16 x 16 (the exposure loss averages 16 x 16 regions), got {tuple(image_shape)}")
        if not 0 < exposure_level < 1:
            raise ValueError(f"exposure_level must lie in (0, 1), got {exposure_level}")
        self.hparams = {"image_shape": list(image_shape), "width": width, "iterations": iterations, "lr": lr, "exposure_level": exposure_level}
        self.net = DCENet(channels, width, iterations)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        # Adam with weight decay 1e-4, as in the authors' code
        return {"enhancer": torch.optim.Adam(self.net.parameters(), lr=self.hparams["lr"], weight_decay=1e-4)}

    def forward(self, dark: Tensor) -> tuple[Tensor, Tensor]:
        """The enhanced images and the curve maps."""
        if dark.dim() != 4 or dark.shape[1] != self.net.channels:
            raise ValueError(f"images must be N x {self.net.channels} x H x W in [0, 1], got {tuple(dark.shape)}")
        curves = self.net(dark)
        return apply_curves(dark, curves), curves

    def losses(self, dark: Tensor, enhanced: Tensor, curves: Tensor) -> dict[str, Tensor]:
        """The four non-reference losses, unweighted."""
        return {
            "exposure": exposure_loss(enhanced, self.hparams["exposure_level"]),
            "spatial": spatial_consistency_loss(enhanced, dark),
            "colour": colour_constancy_loss(enhanced),
            "smoothness": illumination_smoothness_loss(curves),
        }

    def damage(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, None]:
        """The dark training input, :func:`aigc_lab.degradations.low_light` of ``clean`` with its defaults (no mask)."""
        return low_light(clean, generator=generator), None

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Any]:
        dark, _ = self.damage(augment(batch[0]))
        enhanced, curves = self(dark)
        terms = self.losses(dark, enhanced, curves)
        loss = sum(LOSS_WEIGHTS[k] * v for k, v in terms.items())
        ctx.optimize("enhancer", loss)
        return {"loss/total": float(loss.detach()), **{f"loss/{k}": float(v.detach()) for k, v in terms.items()}}

    @torch.no_grad()
    def restore(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """Enhance dark images of any size in evaluation mode, clipped to ``[0, 1]``."""
        self.check_restore_input(images, mask)
        dark = images
        was_training = self.training
        self.eval()
        try:
            return self(dark)[0].clamp(0, 1)
        finally:
            self.train(was_training)


class PairedEnhancer(ImageToImageModel):
    """A U-Net trained on (dark, original) pairs with the L1 loss: the supervised counterpart of :class:`CurveEnhancer`."""

    name = "low-light-paired"
    default_steps = 1500
    train_data_options = {"patch_size": 64, "n_patches": 4000}

    def __init__(self, image_shape: tuple[int, int, int] = (3, 64, 64), *, width: int = 16, levels: int = 3, lr: float = 1e-3) -> None:
        super().__init__()
        channels, h, w = (int(v) for v in image_shape)
        if channels not in (1, 3):
            raise ValueError(f"image_shape must have 1 or 3 channels, got {tuple(image_shape)}")
        self.hparams = {"image_shape": [channels, h, w], "width": width, "levels": levels, "lr": lr}
        self.net = ImageUNet(channels, channels, width=width, levels=levels)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"enhancer": torch.optim.Adam(self.net.parameters(), lr=self.hparams["lr"])}

    def damage(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, None]:
        """The dark input, :func:`aigc_lab.degradations.low_light` of ``clean`` with its defaults (no mask), as :class:`CurveEnhancer`'s."""
        return low_light(clean, generator=generator), None

    def forward(self, dark: Tensor) -> Tensor:
        """The enhanced images (not clipped)."""
        if dark.dim() != 4 or dark.shape[1] != self.channels:
            raise ValueError(f"images must be N x {self.channels} x H x W in [0, 1], got {tuple(dark.shape)}")
        return self.net(dark)

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Any]:
        clean = augment(batch[0])
        dark, _ = self.damage(clean)
        loss = F.l1_loss(self(dark), clean)
        ctx.optimize("enhancer", loss)
        return {"loss/l1": float(loss.detach())}

    @torch.no_grad()
    def restore(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """Enhance dark images of any size in evaluation mode, clipped to ``[0, 1]``."""
        self.check_restore_input(images, mask)
        was_training = self.training
        self.eval()
        try:
            return self(images).clamp(0, 1)
        finally:
            self.train(was_training)
