r"""Autoregressive image models: an RNN that draws row by row, and PixelCNN.

An autoregressive model orders the :math:`D` pixels of an image (here the raster order: row by
row, left to right) and applies the chain rule of probability,

.. math::

    p(x) = \prod_{i=1}^{D} p(x_i \mid x_{<i}), \qquad
    -\log p(x) = -\sum_{i=1}^{D} \log p(x_i \mid x_{<i}),

with one network that outputs every conditional at once. Each conditional is a categorical
distribution over the gray levels (17 for the digits: :math:`x_i \in \{0, \dots, 16\}`), so the
negative log-likelihood is exact: a sum of cross-entropies, in nats per image, with no bound
and no latent variable. The price is sampling: pixel :math:`i` can only be drawn once pixels
:math:`1, \dots, i-1` are, so a sample takes :math:`D` sequential steps.

Two ways to compute all :math:`p(x_i \mid x_{<i})` in one pass while training:

* :class:`RowRNN`, the source article's "RNN" generator, draws row by row: one GRU reads the
  rows, and inside each row a second GRU reads the pixels left to right, so its state at pixel
  :math:`(r, j)` summarises every earlier row and the pixels :math:`x_{r,<j}`.
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
from aigc_lab.losses import bits_per_dim
from aigc_lab.images import check_labels
from aigc_lab.contract import StepContext, TrainableModel

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

    def extra_repr(self) -> str:
        return f"mask={self.mask_type!r}, " + super().extra_repr()

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
    """What both models share: checks, the exact NLL, its evaluation and the training step.

    A subclass implements :meth:`logits`, every conditional in one pass, and
    :meth:`_draw_pixels`, the sampling loop.
    """

    def __init__(self, image_shape, levels: int, num_classes: int):
        super().__init__()
        image_shape = tuple(image_shape)
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
        if image_shape[0] != 1:
            raise ValueError(f"the autoregressive models order the pixels of one channel; got {image_shape[0]} channels")
        if not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        self.image_shape, self.levels, self.num_classes = image_shape, levels, num_classes

    def logits(self, x_levels: Tensor, labels: Tensor | None = None) -> Tensor:
        r"""The logits of every :math:`p(x_i \mid x_{<i})`, ``(N, levels, 1, H, W)``, in one pass."""
        raise NotImplementedError

    def nll_nats(self, x_levels: Tensor, labels: Tensor | None = None) -> Tensor:
        r"""Exact :math:`-\log p(x) = -\sum_i \log p(x_i \mid x_{<i})` per image, in nats: ``(N,)``.

        ``x_levels`` are int64 gray levels ``N x 1 x H x W`` (``ImageDataset.to_levels()``).
        """
        _check_levels(x_levels, self.levels, self.image_shape)
        logits = self.logits(x_levels, labels)  # (N, levels, 1, H, W)
        return F.cross_entropy(logits.float(), x_levels, reduction="none").flatten(1).sum(1)  # (N,)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])}

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        """Minimise the mean NLL in nats per image (logged as ``nll``)."""
        x, y = batch
        nll = self.nll_nats(images_to_levels(x, self.levels), y if self.num_classes else None).mean()
        ctx.optimize("model", nll)
        return {"nll": nll.detach()}

    @torch.no_grad()
    def evaluate(self, dataset, batch_size: int = 500) -> dict[str, float]:
        """Exact NLL of ``dataset``: ``{"nll_nats": per image, "bits_per_dim": per pixel}``, dropout off."""
        if getattr(dataset, "levels", self.levels) != self.levels:
            raise ValueError(f"this model has {self.levels} gray levels; the dataset has {dataset.levels} (was it resized?)")
        x = images_to_levels(dataset.images, self.levels)
        labels = dataset.labels if self.num_classes else None
        device = self._device()
        was_training = self.training
        self.eval()
        total = 0.0
        for start in range(0, len(x), batch_size):
            chunk_labels = labels[start : start + batch_size].to(device) if labels is not None else None
            total += float(self.nll_nats(x[start : start + batch_size].to(device), chunk_labels).double().sum())
        self.train(was_training)
        nll = total / len(x)
        return {"nll_nats": nll, "bits_per_dim": bits_per_dim(nll, math.prod(self.image_shape))}

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def sample(self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images in ``[0, 1]`` (levels ``k / (levels - 1)``), drawn pixel by pixel in raster order.

        ``labels`` (conditional models) default to ``0, 1, ..., num_classes - 1, 0, ...``; pass a
        ``torch.Generator`` to repeat the same draws.
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if labels is None and self.num_classes:
            labels = torch.arange(n) % self.num_classes  # a grid of width num_classes shows every class per row
        labels = check_labels(labels, n, self.num_classes)
        labels = labels.to(self._device()) if labels is not None else None
        x = torch.zeros(n, *self.image_shape, dtype=torch.long, device=self._device())
        was_training = self.training
        self.eval()
        self._draw_pixels(x, labels, generator)
        self.train(was_training)
        return levels_to_images(x, self.levels)

    def _draw_pixels(self, x_levels: Tensor, labels: Tensor | None, generator: torch.Generator | None) -> None:
        r"""Fill ``x_levels`` in place, each pixel drawn from :math:`p(x_i \mid x_{<i})`."""
        raise NotImplementedError


class PixelCNN(_AutoregressiveModel):
    r"""PixelCNN (van den Oord et al., 2016): masked convolutions output every :math:`p(x_i \mid x_{<i})`.

    ``first`` (mask A) -> ``n_layers`` residual blocks (mask B) -> two 1x1 convolutions to
    ``levels`` logits per pixel. The first layer reads two channels: the gray value
    :math:`x / 16` and a constant 1, which tells a pixel where the image border is (zero
    padding alone looks like blank paper). Feeding the value rather than a one-hot level makes
    neighbouring levels look alike, which matters with 1000 training images: a one-hot input
    over-fitted within a few hundred steps.

    A stack of small masked kernels has a blind spot: pixels up and to the right of :math:`i`
    that no path reaches (van den Oord et al., NeurIPS 2016). ``first_kernel_size=None`` (the
    default) makes the first kernel ``2 max(H, W) - 1`` wide, so on a small image it covers
    *every* earlier pixel and there is no blind spot.

    With ``num_classes > 0`` a learned vector per class is added to the first layer's output at
    every pixel: :math:`p(x_i \mid x_{<i}, y)`.

    Defaults, chosen on the digits' validation split: 48 channels, 4 blocks, dropout 0.3 and
    Adam at ``lr=2e-3``; about 1200 steps of 64 images, after which the validation NLL rises
    again (over-fitting).
    """

    name = "pixelcnn"
    default_steps = 1200  # tuned on digits: 2000 steps overfit the 1000 training images (higher test NLL)

    def __init__(
        self,
        image_shape=(1, 8, 8),
        levels: int = 17,
        channels: int = 48,
        n_layers: int = 4,
        kernel_size: int = 3,
        first_kernel_size: int | None = None,
        dropout: float = 0.3,
        num_classes: int = 0,
        lr: float = 2e-3,
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
            num_classes=num_classes, lr=lr,
        )

    def logits(self, x_levels: Tensor, labels: Tensor | None = None) -> Tensor:
        labels = check_labels(labels, x_levels.shape[0], self.num_classes)
        value = levels_to_images(x_levels, self.levels)  # (N, 1, H, W)
        # channels_last: on the CPU, convolutions of tiny images run markedly faster in it
        inputs = torch.cat([value, torch.ones_like(value)], dim=1).contiguous(memory_format=torch.channels_last)
        h = self.first(inputs)  # (N, channels, H, W)
        if labels is not None:
            h = h + self.label_bias(labels)[:, :, None, None]
        for block in self.blocks:
            h = block(h)
        return self.head(h).unsqueeze(2)  # (N, levels, 1, H, W)

    def _draw_pixels(self, x_levels: Tensor, labels: Tensor | None, generator: torch.Generator | None) -> None:
        """One network pass per pixel: ``H x W`` passes for an image."""
        _, h, w = self.image_shape
        for i in range(h):
            for j in range(w):
                # The masks never look down, so the rows below i cannot change row i: leave them out.
                logits = self.logits(x_levels[:, :, : i + 1], labels)[:, :, 0, i, j]  # (N, levels)
                x_levels[:, 0, i, j] = _draw(logits, generator)  # x_ij ~ p(x_ij | x_<ij)


class RowRNN(_AutoregressiveModel):
    r"""The source article's "RNN" generator: a GRU over the rows, and a GRU over each row's pixels.

    It factorises the image row by row, and each row pixel by pixel, exactly:

    .. math::

        p(x) = \prod_{r=1}^{H} \prod_{j=1}^{W} p(x_{r,j} \mid x_{<r},\, x_{r,<j}).

    * The row GRU reads row :math:`r-1` (its :math:`W` values in :math:`[-1, 1]`, and a flag for
      "no row above" at :math:`r = 1`); its output :math:`s_r` summarises the rows :math:`< r`.
    * The pixel GRU starts row :math:`r` from :math:`\tanh(W s_r)` and reads, at pixel
      :math:`j`, the pixel to the left :math:`x_{r,j-1}`, the three pixels above
      :math:`x_{r-1,j-1..j+1}` and a one-hot of :math:`j`; its output :math:`g_{r,j}` has seen
      :math:`x_{<r}` and :math:`x_{r,<j}`, nothing more.
    * A small MLP maps :math:`[g_{r,j}, s_r]` to the ``levels`` logits of
      :math:`p(x_{r,j} \mid \cdot)`.

    Training runs both GRUs over whole sequences at once (the pixel GRU over all :math:`N H`
    rows in parallel). Sampling carries the two states forward, so each pixel costs one GRU
    step instead of a pass over the whole image as in PixelCNN. With ``num_classes > 0``, the
    row GRU's initial state is a learned vector per class.

    Defaults, chosen on the digits' validation split: ``hidden=64``, ``inner=48``, dropout 0.3
    before the MLP, Adam at ``lr=1e-3``, about 2000 steps of 64 images (the validation NLL
    rises after that). A single GRU over all 64 pixels in raster order reached about the same
    validation NLL at three times the cost per step.
    """

    name = "row-rnn"
    default_steps = 2000  # the validation NLL rises after that (see above)

    def __init__(
        self,
        image_shape=(1, 8, 8),
        levels: int = 17,
        hidden: int = 64,
        inner: int = 48,
        dropout: float = 0.3,
        num_classes: int = 0,
        lr: float = 1e-3,
    ):
        super().__init__(image_shape, levels, num_classes)
        _, h, w = self.image_shape
        self.rows = nn.GRU(w + 1, hidden, batch_first=True)
        self.row_start = nn.Embedding(num_classes, hidden) if num_classes else None
        self.to_inner = nn.Linear(hidden, inner)
        self.pixels = nn.GRU(5 + w, inner, batch_first=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(inner + hidden, inner), nn.ReLU(), nn.Linear(inner, levels))
        self.hparams = dict(
            image_shape=list(self.image_shape), levels=levels, hidden=hidden, inner=inner,
            dropout=dropout, num_classes=num_classes, lr=lr,
        )

    def _values(self, x_levels: Tensor) -> Tensor:
        return x_levels[:, 0].float() * (2 / (self.levels - 1)) - 1  # (N, H, W) in [-1, 1]

    def _row_inputs(self, above: Tensor, first_row: int) -> Tensor:
        """Row GRU inputs for rows ``first_row ..``: the row above and a "no row above" flag."""
        n, r, _ = above.shape  # (N, R, W)
        flag = (torch.arange(first_row, first_row + r, device=above.device) == 0).float()
        return torch.cat([above, flag.expand(n, r)[..., None]], dim=-1)  # (N, R, W + 1)

    def _pixel_inputs(self, row: Tensor, above: Tensor) -> Tensor:
        """Pixel GRU inputs at every column: ``x_{r,j-1}``, a "first pixel" flag, ``x_{r-1,j-1..j+1}``, one-hot ``j``.

        Column ``j`` uses ``row`` only at ``j - 1``, so it can be built from a partly drawn row.
        """
        n, r, w = row.shape  # (N, R, W)
        left = F.pad(row, (1, 0))[..., :-1]  # (N, R, W): x_{r, j-1}
        first = torch.zeros(w, device=row.device)
        first[0] = 1
        up = F.pad(above, (1, 1))  # (N, R, W + 2)
        position = torch.eye(w, device=row.device).expand(n, r, w, w)
        near = torch.stack([left, first.expand(n, r, w), up[..., :-2], up[..., 1:-1], up[..., 2:]], dim=-1)  # (N, R, W, 5)
        return torch.cat([near, position], dim=-1)  # (N, R, W, 5 + W)

    def _row_state(self, labels: Tensor | None) -> Tensor | None:
        return self.row_start(labels)[None] if labels is not None else None  # (1, N, hidden)

    def logits(self, x_levels: Tensor, labels: Tensor | None = None) -> Tensor:
        n, _, h, w = x_levels.shape
        labels = check_labels(labels, n, self.num_classes)
        v = self._values(x_levels)  # (N, H, W)
        above = F.pad(v, (0, 0, 1, 0))[:, :-1]  # (N, H, W): row r-1, zeros above the first row
        s, _ = self.rows(self._row_inputs(above, 0), self._row_state(labels))  # (N, H, hidden): s_r sees rows < r
        g0 = torch.tanh(self.to_inner(s)).reshape(1, n * h, -1)  # (1, N*H, inner)
        g, _ = self.pixels(self._pixel_inputs(v, above).reshape(n * h, w, -1), g0)  # (N*H, W, inner)
        features = torch.cat([g.reshape(n, h, w, -1), s[:, :, None].expand(n, h, w, s.shape[-1])], dim=-1)
        return self.head(features).permute(0, 3, 1, 2).unsqueeze(2)  # (N, levels, 1, H, W)

    def _walk(self, x_levels: Tensor, labels: Tensor | None, draw: bool, generator: torch.Generator | None = None) -> Tensor:
        """Step both GRUs pixel by pixel; with ``draw``, write each drawn pixel into ``x_levels``.

        Returns the logits, ``(N, levels, 1, H, W)``; without ``draw`` they equal :meth:`logits`.
        """
        n, _, h, w = x_levels.shape
        v = self._values(x_levels)  # (N, H, W), updated as pixels are drawn
        out = torch.empty(n, self.levels, 1, h, w, device=x_levels.device)
        row_state = self._row_state(labels)
        for r in range(h):
            above = v[:, r - 1 : r] if r else torch.zeros_like(v[:, :1])  # (N, 1, W)
            s, row_state = self.rows(self._row_inputs(above, r), row_state)  # (N, 1, hidden)
            g = torch.tanh(self.to_inner(s)).transpose(0, 1).contiguous()  # (1, N, inner)
            for j in range(w):
                inputs = self._pixel_inputs(v[:, r : r + 1], above)[:, 0, j : j + 1]  # (N, 1, 5 + W)
                out_j, g = self.pixels(inputs, g)  # (N, 1, inner)
                logits = self.head(torch.cat([out_j, s], dim=-1))[:, 0]  # (N, levels)
                out[:, :, 0, r, j] = logits
                if draw:
                    x_levels[:, 0, r, j] = _draw(logits, generator)  # x_rj ~ p(x_rj | x_<r, x_r,<j)
                    v[:, r, j] = self._values(x_levels)[:, r, j]
        return out

    def _draw_pixels(self, x_levels: Tensor, labels: Tensor | None, generator: torch.Generator | None) -> None:
        """Row by row, pixel by pixel, carrying the GRU states: one GRU step per pixel."""
        self._walk(x_levels, labels, draw=True, generator=generator)
