r"""A network built like the Kuwahara filter, which learns the filter's choice from pairs (chapter 6.2.3).

The Kuwahara filter (Kuwahara et al., 1976; :func:`aigc_lab.styles.kuwahara`) gives each pixel
:math:`p` the mean :math:`m_k(p)` of one of its four overlapping :math:`(r+1) \times (r+1)`
quadrant windows, the one of least variance:

.. math:: y(p) = m_{k^*}(p), \qquad k^* = \arg\min_k s_k^2(p).

A generic image-to-image network (pix2pix's U-Net) has to discover both the averaging and the
sharp, pixel-by-pixel switch between windows; trained with L1 on a few thousand patches it learns
the colours and the smoothing, and blurs the switch. :class:`KuwaharaNet` builds the filter's
structure in and learns only what the filter decides: the four quadrant means are computed, not
learned (:func:`aigc_lab.styles.quadrant_means`, the filter's own two box filters), and a small CNN, the *selector*, looks at the
image and gives four logits per pixel; the output is the softmax-weighted mean

.. math:: \hat y(p) = A \sum_{k=1}^{4} \operatorname{softmax}_k\bigl(f_\theta(x)\bigr)(p)\, m_k(p) + b,

followed by a learned per-pixel colour map :math:`(A, b)` (a 1 x 1 convolution, initialised to the
identity), which can learn the oil painting's saturation boost, itself linear in RGB
(:func:`aigc_lab.styles.oil_painting`). Nothing tells the selector that variance is what matters:
it must learn that from the pairs. Its receptive field (:attr:`KuwaharaNet.receptive_field`, 13
pixels for four 3 x 3 convolutions dilated 1, 2, 2, 1) covers the :math:`(2r+1) \times (2r+1)`
window the filter looks at for :math:`r \le 6`.

This is the old lesson of *inductive bias*: a network whose architecture matches the structure of
the function it must learn needs far fewer examples and steps than one that must discover it.
The comparison with the U-Net on the same pairs is in 6.2.3.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aigc_lab.contract import ImageToImageModel, StepContext, inference
from aigc_lab.styles import quadrant_means  # the filter's own, shared: the means are computed, not learned

#: the selector's dilations: four 3 x 3 convolutions, receptive field 1 + 2 * (1 + 2 + 2 + 1) = 13
SELECTOR_DILATIONS = (1, 2, 2, 1)


class KuwaharaNet(ImageToImageModel):
    r"""The Kuwahara filter's structure with a learned choice: softmax over the four quadrant means, then a colour map.

    Trains on stacked pairs (the photo's ``C`` channels, then the filter's rendering's ``C``), as
    :func:`aigc_lab.data.pairs.load_pairs` gives them for ``task="oil"``, with the L1 loss.

    Args:
        image_shape: the stacked pair's ``(2 C, H, W)``, ``C`` 1 or 3; ``H, W > radius``.
        radius: the quadrants' :math:`r` (their side is ``radius + 1``), the filter's (4 for the
            book's oil painting).
        width: the selector's channels.
        lr: Adam's learning rate.
    """

    name = "kuwahara-net"
    default_steps = 300
    # Whole pairs, not random patches: the pairs dataset cuts its crops itself (its size option).
    train_data_options: dict[str, Any] = {}

    def __init__(self, image_shape: tuple[int, int, int] = (6, 64, 64), *, radius: int = 4, width: int = 16, lr: float = 1e-3) -> None:
        super().__init__()
        if not (isinstance(image_shape, (tuple, list)) and len(image_shape) == 3):
            raise ValueError(f"image_shape must be (C, H, W) of a stacked pair, got {image_shape!r}")
        c, h, w = (int(v) for v in image_shape)
        if c not in (2, 6):
            raise ValueError(f"image_shape's C must be 2 (gray photo + gray rendering) or 6 (colour + colour), got {c}")
        for label, value, low in (("radius", radius, 1), ("width", width, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{label} must be an int >= {low}, got {value!r}")
        if min(h, w) <= radius:
            raise ValueError(f"the pairs' sides must exceed radius ({radius}) for the reflection padding, got {h} x {w}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        self.hparams = {"image_shape": [c, h, w], "radius": radius, "width": width, "lr": float(lr)}
        self.image_channels = c // 2
        layers: list[nn.Module] = []
        cin = self.image_channels
        for dilation in SELECTOR_DILATIONS:
            layers += [nn.Conv2d(cin, width, 3, padding=dilation, dilation=dilation), nn.ReLU()]
            cin = width
        layers.append(nn.Conv2d(cin, 4, 1))
        self.selector = nn.Sequential(*layers)
        self.colour = nn.Conv2d(self.image_channels, self.image_channels, 1)
        with torch.no_grad():  # start as the plain (soft) Kuwahara filter
            self.colour.weight.copy_(torch.eye(self.image_channels)[:, :, None, None])
            self.colour.bias.zero_()

    @property
    def channels(self) -> int:
        """The channels :meth:`restore` takes: the photo's, not the stacked pair's."""
        return self.image_channels

    @property
    def receptive_field(self) -> int:
        """The side of the window of input pixels one logit of the selector sees."""
        return 1 + 2 * sum(SELECTOR_DILATIONS)

    def target(self, clean: Tensor) -> Tensor:
        """The rendering half of stacked pairs."""
        return self.split(clean)[1]

    def split(self, pairs: Tensor) -> tuple[Tensor, Tensor]:
        """``(photos, renderings)`` of stacked pairs ``N x 2C x H x W``."""
        c = self.image_channels
        if not isinstance(pairs, Tensor) or pairs.dim() != 4 or pairs.shape[1] != 2 * c:
            got = tuple(pairs.shape) if isinstance(pairs, Tensor) else type(pairs).__name__
            raise ValueError(f"pairs must be N x {2 * c} x H x W ({c} photo channels, then {c} rendering channels), got {got}")
        return pairs[:, :c], pairs[:, c:]

    def damage(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, None]:
        """The model's input for a stacked pair: its photo half (nothing random, no mask)."""
        return self.split(clean)[0], None

    def weights(self, images: Tensor) -> Tensor:
        """The selector's softmax over the four quadrants, ``N x 4 x H x W``: which window each pixel takes."""
        return torch.softmax(self.selector(images * 2 - 1), dim=1)

    def forward(self, images: Tensor) -> Tensor:
        """``N x C x H x W`` photos in ``[0, 1]`` -> their learned Kuwahara rendering, same shape, in ``[0, 1]``."""
        if images.dim() != 4 or images.shape[1] != self.image_channels:
            raise ValueError(f"images must be N x {self.image_channels} x H x W in [0, 1], got {tuple(images.shape)}")
        r = self.hparams["radius"]
        if min(images.shape[-2:]) <= r:
            raise ValueError(f"{self.name} needs sides longer than radius ({r}), got {images.shape[-2]} x {images.shape[-1]}")
        mixed = (self.weights(images).unsqueeze(2) * quadrant_means(images, r)).sum(1)
        return self.colour(mixed).clamp(0, 1)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])}

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Any]:
        photos, renderings = self.split(batch[0])
        loss = F.l1_loss(self(photos), renderings)
        ctx.optimize("model", loss)
        return {"loss/l1": float(loss.detach())}

    @inference
    def restore(self, images: Tensor, mask: Tensor | None = None, *, batch_size: int = 32) -> Tensor:
        """Render ``N x C x H x W`` photos in ``[0, 1]`` (any size with sides longer than ``radius``) in evaluation mode."""
        self.check_restore_input(images, mask)
        parts = [self(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return torch.cat(parts) if parts else images.new_zeros(0, self.image_channels, *images.shape[-2:])
