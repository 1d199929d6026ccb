"""A plain image-to-image U-Net (Ronneberger, Fischer & Brox, 2015), shared by the models that map an image to an image.

Used by the inpainting network of chapter 6.1 (the masked image and its mask in, the image out)
and meant for pix2pix's generator (Isola et al., 2017, whose generator is a U-Net of this kind).
Unlike :mod:`aigc_lab.models.unet`, the diffusion U-Net, it has no time or label input: each level
is two 3 x 3 convolutions with group normalisation and SiLU, halved in size by a stride-2
convolution on the way down and doubled by nearest-neighbour upsampling on the way up, with the
encoder's features concatenated to the decoder's at every level (the skip connections that let
fine detail bypass the bottleneck).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _block(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    groups = 8 if cout % 8 == 0 else 1

    def normalise() -> nn.Module:
        return nn.GroupNorm(groups, cout) if norm else nn.Identity()

    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), normalise(), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1), normalise(), nn.SiLU(),
    )  # fmt: skip


class ImageUNet(nn.Module):
    """``in_channels`` -> ``out_channels`` at the same size; ``levels`` halvings, widths ``width * 2**level``.

    Any height and width that are multiples of ``2**levels`` work; others are padded by
    reflection to the next multiple and cropped back, so a reader's photo of any size can be
    passed through.

    ``norm=False`` leaves out the group normalisation. A denoiser needs that: group normalisation
    divides each image's features by their own spread, which removes the very amplitude that tells
    a blind denoiser how strong the noise is, and its statistics over a 48-pixel training patch
    are not those over a whole photo.
    """

    def __init__(self, in_channels: int, out_channels: int, *, width: int = 32, levels: int = 3, norm: bool = True) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        widths = [width * 2**i for i in range(levels + 1)]
        self.levels = levels
        self.inc = _block(in_channels, widths[0], norm)
        self.down = nn.ModuleList(nn.Conv2d(widths[i], widths[i], 3, stride=2, padding=1) for i in range(levels))
        self.enc = nn.ModuleList(_block(widths[i], widths[i + 1], norm) for i in range(levels))
        self.dec = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i], norm) for i in reversed(range(levels)))
        self.out = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        multiple = 2**self.levels
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if min(h, w) > max(pad_h, pad_w) else "replicate")
        skips = [self.inc(x)]
        for down, enc in zip(self.down, self.enc):
            skips.append(enc(down(skips[-1])))
        y = skips.pop()
        for dec in self.dec:
            skip = skips.pop()
            y = dec(torch.cat([F.interpolate(y, size=skip.shape[-2:], mode="nearest"), skip], 1))
        return self.out(y)[..., :h, :w]
