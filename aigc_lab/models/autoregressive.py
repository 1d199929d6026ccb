r"""Autoregressive image models: an RNN that draws pixel by pixel, and PixelCNN.

An autoregressive model orders the :math:`D` pixels of an image (here the raster order: row by
row, left to right) and applies the chain rule of probability,

.. math::

    p(x) = \prod_{i=1}^{D} p(x_i \mid x_{<i}), \qquad
    -\log p(x) = -\sum_{i=1}^{D} \log p(x_i \mid x_{<i}),

with one network that outputs every conditional at once. Each conditional is a categorical
distribution over the gray levels (17 for the digits: :math:`x_i \in \{0, \dots, 16\}`), so the
negative log-likelihood is exact: a sum of cross-entropies, in nats per image, with no bound
and no latent variable. The price is sampling: pixel :math:`i` can only be drawn once pixels
:math:`1, \dots, i-1` are, so a sample takes :math:`D` passes of the network.

Two ways to compute all :math:`p(x_i \mid x_{<i})` in one pass while training:

* :class:`RowRNN`, the source article's "RNN" generator: a GRU reads the image one pixel at a
  time in raster order; its state after pixel :math:`i-1` summarises :math:`x_{<i}`.
* :class:`PixelCNN`: convolutions whose kernels are masked so that the output at pixel
  :math:`i` never sees pixels :math:`\ge i` (:class:`MaskedConv2d`).

References: A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu, "Pixel Recurrent Neural
Networks", ICML 2016 (arXiv:1601.06759), which introduces both PixelRNN and PixelCNN and the
masks "A" and "B"; A. van den Oord et al., "Conditional Image Generation with PixelCNN
Decoders", NeurIPS 2016 (arXiv:1606.05328), which conditions on a class through a learned bias.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aigc_lab.images import check_images
from aigc_lab.train import StepContext, TrainableModel

_LEVEL_TOLERANCE = 1e-3  # float32 k/16 is exact; allow rounding noise from other sources


def images_to_levels(images: Tensor, levels: int) -> Tensor:
    """Images in ``[0, 1]`` holding exactly ``levels`` gray values ``k / (levels - 1)`` to ``k`` (int64).

    Raises:
        ValueError: when a value lies off that grid, e.g. after bilinear resizing.
    """
    check_images(images)
    scaled = images * (levels - 1)
    k = scaled.round()
    off = (scaled - k).abs()
    if off.numel() and float(off.max()) > _LEVEL_TOLERANCE:
        bad = float(images.flatten()[off.flatten().argmax()])
        raise ValueError(
            f"an autoregressive model over {levels} gray levels needs images whose values are exactly "
            f"k/{levels - 1}; found {bad:.4g}. Resized images have no exact levels: load the data without size="
        )
    return k.long()


def levels_to_images(x: Tensor, levels: int) -> Tensor:
    """Integer levels ``0 .. levels-1`` to float32 images ``k / (levels - 1)`` in ``[0, 1]``."""
    return x.float() / (levels - 1)


def _check_levels(x: Tensor, levels: int, image_shape: tuple[int, int, int]) -> Tensor:
    if not isinstance(x, Tensor) or x.dtype != torch.int64 or x.dim() != 4 or tuple(x.shape[1:]) != image_shape:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x_levels must be an int64 tensor N x {' x '.join(map(str, image_shape))} of gray levels, got {got}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= levels):
        raise ValueError(f"x_levels must lie in [0, {levels - 1}], got [{int(x.min())}, {int(x.max())}]")
    return x


def _check_labels(labels: Tensor | None, n: int, num_classes: int) -> Tensor | None:
    if num_classes == 0:
        if labels is not None:
            raise ValueError("this model is unconditional (num_classes=0); do not pass labels")
        return None
    if labels is None:
        raise ValueError(f"this model is conditional on {num_classes} classes; pass labels (int64 tensor of length {n})")
    labels = torch.as_tensor(labels)
    if labels.shape != (n,) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be an integer tensor of shape ({n},), got {labels.dtype} {tuple(labels.shape)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got [{int(labels.min())}, {int(labels.max())}]")
    return labels.long()


def _draw(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    """One categorical draw per row of ``logits`` (N, K) -> (N,), on ``generator``'s device."""
    probs = logits.float().softmax(dim=-1)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(logits.device)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


class MaskedConv2d(nn.Conv2d):
    """A convolution that only looks at pixels before the centre in raster order.

    For a ``k x k`` kernel with centre ``(c, c)``, ``c = k // 2``, the mask keeps the rows above
    the centre, and the centre row left of the centre; mask ``"B"`` also keeps the centre, mask
    ``"A"`` does not. For ``k = 3``::

        A: 1 1 1    B: 1 1 1
           1 0 0       1 1 0
           0 0 0       0 0 0

    The first layer uses ``"A"`` (output ``i`` must not see input ``i``); later layers use
    ``"B"``, since their input at ``i`` already depends only on pixels ``< i``.
    Single-channel images only: the mask does not order colour channels.
    """

    def __init__(self, mask_type: str, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd positive integer, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        c = kernel_size // 2
        mask = torch.zeros(kernel_size, kernel_size)
        mask[:c] = 1
        mask[c, : c + (mask_type == "B")] = 1
        self.mask_type = mask_type
        self.register_buffer("mask", mask[None, None], persistent=False)  # (1, 1, k, k)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)


class ResidualBlock(nn.Module):
    """PixelCNN's residual block (van den Oord et al., 2016, figure 5): ``x + 1x1(relu(kxk_B(relu(x))))``."""

    def __init__(self, channels: int, kernel_size: int, dropout: float):
        super().__init__()
        self.conv = MaskedConv2d("B", channels, channels, kernel_size)
        self.out = nn.Conv2d(channels, channels, 1)  # a 1x1 convolution is causal as it is
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.out(self.dropout(F.relu(self.conv(F.relu(h)))))  # (N, channels, H, W)


class _AutoregressiveModel(TrainableModel):
    """What both models share: level checks, the exact NLL, evaluation and the sampling loop.

    Subclasses implement :meth:`logits` (all conditionals in one pass) and may override
    :meth:`sample` with a faster loop.
    """

    def __init__(self, image_shape, levels: int, num_classes: int):
        super().__init__()
        image_shape = tuple(image_shape)
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
        if image_shape[0] != 1:
            raise ValueError(f"autoregressive models here order the pixels of one channel; got {image_shape[0]} channels")
        if not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
        self.image_shape, self.levels, self.num_classes = image_shape, levels, num_classes

    def logits(self, x_levels: Tensor, labels: Tensor | None = None) -> Tensor:
        """The logits of every :math:`p(x_i \\mid x_{<i})`: ``(N, levels, C, H, W)``."""
        raise NotImplementedError

    def nll_nats(self, x_levels: Tensor, labels: Tensor | None = None) -> Tensor:
        r"""Exact :math:`-\log p(x) = -\sum_i \log p(x_i \mid x_{<i})` per image, in nats: ``(N,)``."""
        _check_levels(x_levels, self.levels, self.image_shape)
        logits = self.logits(x_levels, labels)  # (N, levels, C, H, W)
        return F.cross_entropy(logits.float(), x_levels, reduction="none").flatten(1).sum(1)  # (N,)

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        x, y = batch
        nll = self.nll_nats(images_to_levels(x, self.levels), y if self.num_classes else None).mean()
        ctx.optimize("model", nll)
        return {"nll": nll.detach()}

    @torch.no_grad()
    def evaluate(self, dataset, batch_size: int = 500) -> dict[str, float]:
        """Exact test NLL of ``dataset``: ``{"nll_nats": per image, "bits_per_dim": per pixel}``."""
        if getattr(dataset, "levels", self.levels) != self.levels:
            raise ValueError(f"this model has {self.levels} gray levels; the dataset has {dataset.levels} (was it resized?)")
        x = images_to_levels(dataset.images, self.levels)
        labels = dataset.labels if self.num_classes else None
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        total = 0.0
        for start in range(0, len(x), batch_size):
            chunk_labels = labels[start : start + batch_size].to(device) if labels is not None else None
            total += float(self.nll_nats(x[start : start + batch_size].to(device), chunk_labels).double().sum())
        self.train(was_training)
        nll = total / len(x)
        return {"nll_nats": nll, "bits_per_dim": nll / (math.prod(self.image_shape) * math.log(2))}

    def _sample_labels(self, n: int, labels: Tensor | None) -> Tensor | None:
        if labels is None and self.num_classes:
            labels = torch.arange(n) % self.num_classes  # a grid of width num_classes shows every class per row
        labels = _check_labels(labels, n, self.num_classes)
        return labels.to(next(self.parameters()).device) if labels is not None else None

    @torch.no_grad()
    def sample(self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images in ``[0, 1]``, drawn pixel by pixel in raster order: ``D`` passes of :meth:`logits`."""
        labels = self._sample_labels(n, labels)
        c, h, w = self.image_shape
        x = torch.zeros(n, c, h, w, dtype=torch.long, device=next(self.parameters()).device)
        was_training = self.training
        self.eval()
        for i in range(h):
            for j in range(w):
                x[:, 0, i, j] = _draw(self.logits(x, labels)[:, :, 0, i, j], generator)  # p(x_ij | x_<ij)
        self.train(was_training)
        return levels_to_images(x, self.levels)


class PixelCNN(_AutoregressiveModel):
    r"""PixelCNN (van den Oord et al., 2016): masked convolutions output every :math:`p(x_i \mid x_{<i})`.

    ``first`` (mask A) -> ``n_layers`` residual blocks (mask B) -> two 1x1 convolutions to
    ``levels`` logits per pixel. The input enters one-hot, so the first layer is a lookup of a
    learned vector per gray level and kernel position.

    A stack of small masked kernels has a blind spot: pixels up and to the right of ``i`` that
    no path reaches (van den Oord et al., NeurIPS 2016). ``first_kernel_size=None`` (the default)
    makes the first kernel ``2 max(H, W) - 1`` wide, so on a small image it covers *every* earlier
    pixel and there is no blind spot.

    With ``num_classes > 0`` a learned vector per class is added to the first layer's output at
    every pixel: :math:`p(x_i \mid x_{<i}, y)`.
    """

    name = "pixelcnn"

    def __init__(
        self,
        image_shape=(1, 8, 8),
        levels: int = 17,
        channels: int = 64,
        n_layers: int = 4,
        kernel_size: int = 3,
        first_kernel_size: int | None = None,
        dropout: float = 0.0,
        num_classes: int = 0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ):
        super().__init__(image_shape, levels, num_classes)
        _, h, w = self.image_shape
        k0 = first_kernel_size if first_kernel_size is not None else 2 * max(h, w) - 1
        self.first = MaskedConv2d("A", 2, channels, k0)
        self.label_bias = nn.Embedding(num_classes, channels) if num_classes else None
        self.blocks = nn.ModuleList(ResidualBlock(channels, kernel_size, dropout) for _ in range(n_layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, levels, 1))
        self.hparams = dict(
            image_shape=list(self.image_shape), levels=levels, channels=channels, n_layers=n_layers,
            kernel_size=kernel_size, first_kernel_size=first_kernel_size, dropout=dropout,
            num_classes=num_classes, lr=lr, weight_decay=weight_decay,
        )

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.AdamW(self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])}

    def logits(self, x_levels: Tensor, labels: Tensor | None = None) -> Tensor:
        labels = _check_labels(labels, x_levels.shape[0], self.num_classes)
        value = levels_to_images(x_levels, self.levels)  # (N, 1, H, W)
        h = self.first(torch.cat([value, torch.ones_like(value)], dim=1))  # (N, channels, H, W)
        if labels is not None:
            h = h + self.label_bias(labels)[:, :, None, None]
        for block in self.blocks:
            h = block(h)
        return self.head(h).unsqueeze(2)  # (N, levels, 1, H, W)
