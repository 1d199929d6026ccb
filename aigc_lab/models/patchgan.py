"""The PatchGAN discriminator: one real-or-fake logit per overlapping patch, not per image.

Isola, Zhu, Zhou & Efros (2017, "Image-to-Image Translation with Conditional Adversarial
Networks", CVPR) judge an output image patch by patch: a fully convolutional stack of stride-2
4 x 4 convolutions whose every output logit sees one receptive field (70 x 70 pixels with their
three downsampling layers; smaller here, for small images). Low frequencies are left to a pixel
loss; the discriminator only has to judge local texture and sharpness, which is what pixel
losses average away. Shared by the restoration, loss and image-to-image chapters.
"""

from __future__ import annotations

from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """``N x C x H x W`` images in ``[0, 1]`` -> ``N x 1 x h x w`` patch logits.

    ``layers`` stride-2 convolutions (4 x 4, ``width`` channels doubling up to ``8 * width``,
    LeakyReLU 0.2, no normalisation in the first layer, as pix2pix; instance norm, not batch
    norm, after the others, so a patch's logit does not depend on the other images of the
    batch), then a stride-1 4 x 4 convolution to one logit per patch. The receptive field is
    reported by :meth:`receptive_field`.
    """

    def __init__(self, in_channels: int = 1, *, width: int = 32, layers: int = 2) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {in_channels!r}")
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers!r}")
        blocks: list[nn.Module] = []
        channels = in_channels
        for i in range(layers):
            out = width * min(2**i, 8)
            blocks.append(nn.Conv2d(channels, out, 4, stride=2, padding=1))
            if i > 0:
                blocks.append(nn.InstanceNorm2d(out, affine=True))
            blocks.append(nn.LeakyReLU(0.2))
            channels = out
        blocks.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*blocks)
        self.in_channels = in_channels
        self.layers = layers

    def receptive_field(self) -> int:
        """The side in pixels of the patch that one output logit sees."""
        field = 4  # the last 4 x 4 convolution, stride 1
        for _ in range(self.layers):
            field = (field - 1) * 2 + 4
        return field

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"PatchDiscriminator expects images N x {self.in_channels} x H x W, got {tuple(images.shape)}")
        # Centre the [0, 1] images, as the other networks of the book see [-1, 1].
        return self.net(images * 2 - 1)
