r"""A small U-Net that predicts the noise :math:`\epsilon_\theta(x_t, t[, y])` of a diffusion model.

The architecture follows the networks of Ho et al. (2020, "Denoising Diffusion Probabilistic
Models", arXiv:2006.11239) and Nichol & Dhariwal (2021, "Improved Denoising Diffusion
Probabilistic Models", arXiv:2102.09672), themselves a PixelCNN++-style U-Net (Ronneberger et al.,
2015), scaled down to the book's 8 x 8 to 32 x 32 images::

    x_t ─ conv ─ [ResBlock x num_res_blocks, Downsample] per level ─ ResBlock [Attention] ResBlock ─┐
                        │ skips (one per block)                                                     │
    eps ─ conv ─ [ResBlock x (num_res_blocks + 1) with a skip concatenated, Upsample] per level ────┘

* The time step :math:`t` enters as a sinusoidal embedding (Vaswani et al., 2017) of width
  ``base_channels``, :math:`\mathrm{emb}(t)_{2i} = \sin(t\,\omega_i)`, :math:`\mathrm{emb}(t)_{2i+1} = \cos(t\,\omega_i)`,
  :math:`\omega_i = 10000^{-i / (d/2)}`, then an MLP to width ``4 * base_channels``.
* A class label :math:`y` (``num_classes > 0``) is a learned embedding added to the time
  embedding. The table has ``num_classes + 1`` rows: the last one is the "null" label of
  classifier-free guidance (:class:`aigc_lab.models.diffusion.DDPM`).
* Every residual block is GroupNorm, SiLU, 3x3 conv, plus a projection of the embedding (so each
  block knows how much noise it is looking at), GroupNorm, SiLU, dropout, 3x3 conv, and a residual
  connection (a 1x1 conv when the width changes).
* Level :math:`\ell` has ``base_channels * channel_mults[l]`` channels and half the side of level
  :math:`\ell - 1`; self-attention (one head per 32 channels) is optional and only at the lowest
  resolution, where it is cheap.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    r"""Sinusoidal embedding of time steps ``t`` (``(N,)``, integer or float) to ``(N, dim)``.

    :math:`[\sin(t\,\omega_0), \dots, \sin(t\,\omega_{d/2-1}), \cos(t\,\omega_0), \dots]`,
    :math:`\omega_i = \text{max\_period}^{-i/(d/2)}`: frequencies from 1 down to about
    :math:`1/\text{max\_period}`, so both neighbouring and distant steps are told apart.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"the time embedding width must be an even integer >= 2, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)  # (dim/2,)
    args = t.float()[:, None] * freqs[None]  # (N, dim/2)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


MIN_CHANNELS_PER_GROUP = 4


def _groups(channels: int) -> int:
    """GroupNorm groups: 32 as in the papers when the width allows, and never fewer than 4 channels a group.

    Each block adds the time (and label) embedding as a per-channel constant and then normalises.
    A group of one channel subtracts that channel's own mean, so the constant, and with it
    everything the block knows about :math:`t` and :math:`y`, would cancel exactly; the papers'
    widths (128 channels and up, 32 groups) never meet this, our small U-Nets (32 channels) did.
    With 4 or more channels a group the constant moves one channel against the others and survives
    (measured: a conditional DDPM on the digits, 600 steps, DDIM 20, no guidance, drew the asked-for
    digit 84.6% of the time with one channel a group and 93.0% with four; Frechet distance 20.3 and 13.7).
    """
    cap = max(1, min(32, channels // MIN_CHANNELS_PER_GROUP))
    return max(g for g in range(1, cap + 1) if channels % g == 0)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv; + the embedding; GroupNorm, SiLU, dropout, conv; + the input (1x1 conv if widths differ)."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_channels)
        self.norm2 = nn.GroupNorm(_groups(out_channels), out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (N, out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # the noise level (and class) as a per-channel bias
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, channels: int, head_channels: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = (
            self.qkv(self.norm(x)).view(n, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        )  # (N, heads, HW, c/heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, HW, c/heads)
        return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


class Downsample(nn.Module):
    """Halve the side with a stride-2 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double the side: nearest-neighbour upsampling, then a 3x3 convolution (no checkerboard artefacts)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def check_image_shape(image_shape) -> tuple[int, int, int]:
    """``(C, H, W)`` with ``H == W`` a power of two >= 8, as a tuple of ints; a ``ValueError`` otherwise."""
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else None
    if shape is None or len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"image_shape must be (C, H, W) of positive integers, got {image_shape!r}")
    _c, h, w = shape
    if h != w or h < 8 or h & (h - 1):
        raise ValueError(f"the U-Net needs square images whose side is a power of two >= 8 (8, 16, 32, ...), got H x W = {h} x {w}")
    return shape


class UNet(nn.Module):
    r""":math:`\epsilon_\theta(x_t, t[, y])`: images ``(N, C, H, W)``, integer steps ``(N,)`` and labels ``(N,)`` to ``(N, C, H, W)``.

    Args:
        image_shape: ``(C, H, W)``, ``H == W`` a power of two >= 8.
        base_channels: width of the first level; the time embedding is 4 times as wide.
        channel_mults: one entry per resolution level; level ``l`` has ``base_channels * channel_mults[l]``
            channels and side ``H / 2**l``. ``len(channel_mults) - 1`` downsamplings must leave at least 2 x 2 pixels.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attention: self-attention in the middle, at the lowest resolution.
        num_classes: 0 for an unconditional network; ``K > 0`` adds a label embedding with ``K + 1``
            rows, row ``K`` being the null label.
        dropout: dropout inside the residual blocks.
    """

    def __init__(
        self,
        image_shape=(1, 8, 8),
        base_channels: int = 32,
        channel_mults=(1, 2),
        num_res_blocks: int = 1,
        attention: bool = False,
        num_classes: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        c, size, _ = check_image_shape(image_shape)
        mults = tuple(channel_mults)
        if not mults or not all(isinstance(m, int) and m > 0 for m in mults):
            raise ValueError(f"channel_mults must be a non-empty sequence of positive integers, got {channel_mults!r}")
        if size >> (len(mults) - 1) < 2:
            raise ValueError(
                f"{len(mults)} levels halve a {size} x {size} image below 2 x 2; use at most {int(math.log2(size))} entries in channel_mults"
            )
        if base_channels < 2 or base_channels % 2:
            raise ValueError(f"base_channels must be an even integer >= 2, got {base_channels}")
        if num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.image_shape, self.num_classes, self.base_channels = ((c, size, size), num_classes, base_channels)
        emb_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_embedding = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None

        self.stem = nn.Conv2d(c, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips, ch = [base_channels], base_channels
        for level, mult in enumerate(mults):
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(ch, base_channels * mult, emb_dim, dropout))
                ch = base_channels * mult
                skips.append(ch)
            if level < len(mults) - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)
        middle: list[nn.Module] = [ResBlock(ch, ch, emb_dim, dropout)]
        if attention:
            middle.append(SelfAttention(ch))
        middle.append(ResBlock(ch, ch, emb_dim, dropout))
        self.middle = nn.ModuleList(middle)
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), base_channels * mult, emb_dim, dropout))
                ch = base_channels * mult
            if level > 0:
                self.up.append(Upsample(ch))
        self.out = nn.Sequential(nn.GroupNorm(_groups(ch), ch), nn.SiLU(), nn.Conv2d(ch, c, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base_channels))  # (N, 4 * base)
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError(
                    f"this U-Net is conditional on {self.num_classes} classes; pass labels (index {self.num_classes} is the null label)"
                )
            emb = emb + self.label_embedding(labels)
        elif labels is not None:
            raise ValueError("this U-Net is unconditional (num_classes=0); do not pass labels")
        h = self.stem(x)
        skips = [h]
        for block in self.down:
            h = block(h, emb)
            skips.append(h)
        for block in self.middle:
            h = block(h, emb)
        for block in self.up:
            if isinstance(block, ResBlock):
                h = torch.cat([h, skips.pop()], dim=1)  # the skip connection from the same resolution
            h = block(h, emb)
        return self.out(h)
