r"""Perceptual losses: compare images in a network's features instead of in pixels.

Johnson, Alahi & Fei-Fei (2016, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution", ECCV) train an image-to-image network with two losses measured in the features
:math:`\phi_j` (``C_j x H_j x W_j``) of a fixed network:

- the **feature reconstruction** loss, :math:`\ell_{feat}^j = \frac{1}{C_j H_j W_j}\lVert \phi_j(\hat y) - \phi_j(y)\rVert_2^2`:
  keep what the features see (edges, textures) rather than every pixel value;
- the **style** loss of Gatys, Ecker & Bethge (2016, "Image Style Transfer Using Convolutional
  Neural Networks", CVPR), with the Gram matrix
  :math:`G_j(y)_{c c'} = \frac{1}{C_j H_j W_j} \sum_{h, w} \phi_j(y)_{c h w}\, \phi_j(y)_{c' h w}`
  and :math:`\ell_{style}^j = \lVert G_j(\hat y) - G_j(y) \rVert_F^2`: match which features occur
  together, wherever they are (texture statistics, no layout).

They use VGG-16 trained on ImageNet, a download of 528 MB. The book needs none: a *fixed random*
convolutional network already has features whose statistics describe texture (Ustyuzhaninov,
Brendel, Gatys & Bethge, 2017, "What does it take to generate natural textures?", ICLR), and a
classifier trained on the book's own data is a second choice. :func:`vgg16_features` loads
VGG-16 when the reader has its weights file, and never downloads unless asked to.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: a feature extractor: images ``N x C x H x W`` -> a list of feature maps ``N x C_j x H_j x W_j``.
FeatureExtractor = Callable[[Tensor], list[Tensor]]


class RandomFeatures(nn.Module):
    """A fixed convolutional network with random weights whose layers' outputs serve as features.

    ``blocks`` blocks of (3 x 3 convolution, ReLU, 2 x 2 average pooling), ``width`` channels
    doubling per block; the weights are drawn once from ``seed`` (Kaiming-uniform, as
    ``nn.Conv2d``'s default) and never trained. Calling it returns the feature map after each
    block's ReLU. The input is an image in ``[0, 1]``; it is centred to ``[-1, 1]`` first.
    """

    def __init__(self, in_channels: int = 1, *, width: int = 32, blocks: int = 3, seed: int = 0) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (gray) or 3 (RGB), got {in_channels!r}")
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # the same seed gives the same features in every process
        try:
            layers = []
            channels = in_channels
            for block in range(blocks):
                out = width * 2**block
                layers.append(nn.Conv2d(channels, out, 3, padding=1))
                channels = out
            self.convs = nn.ModuleList(layers)
        finally:
            torch.random.set_rng_state(generator_state)
        self.in_channels = in_channels
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: Tensor) -> list[Tensor]:
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"RandomFeatures expects images N x {self.in_channels} x H x W, got {tuple(images.shape)}")
        h = images * 2 - 1
        features = []
        for i, conv in enumerate(self.convs):
            h = F.relu(conv(h))
            features.append(h)
            if i < len(self.convs) - 1:
                h = F.avg_pool2d(h, 2)
        return features


def gram_matrix(features: Tensor) -> Tensor:
    r"""The Gram matrix of each feature map, :math:`G_{cc'} = \frac{1}{CHW}\sum_{h,w} \phi_{chw}\phi_{c'hw}`, shape ``N x C x C``."""
    if features.dim() != 4:
        raise ValueError(f"features must be N x C x H x W, got {tuple(features.shape)}")
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def _features(extractor: FeatureExtractor, output: Tensor, target: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    if output.shape != target.shape:
        raise ValueError(f"output and target must have the same shape, got {tuple(output.shape)} and {tuple(target.shape)}")
    with torch.no_grad():
        target_features = [f.detach() for f in extractor(target)]
    return extractor(output), target_features


def feature_loss(extractor: FeatureExtractor, output: Tensor, target: Tensor, *, layers: Sequence[int] | None = None) -> Tensor:
    r"""Feature reconstruction loss, :math:`\sum_j \frac{1}{C_j H_j W_j}\lVert\phi_j(\hat y) - \phi_j(y)\rVert^2` averaged over the batch.

    ``layers`` picks feature maps by index (default: all).
    """
    out_f, tgt_f = _features(extractor, output, target)
    chosen = range(len(out_f)) if layers is None else layers
    return sum(F.mse_loss(out_f[j], tgt_f[j]) for j in chosen)


def style_loss(extractor: FeatureExtractor, output: Tensor, target: Tensor, *, layers: Sequence[int] | None = None) -> Tensor:
    r"""Gram-matrix (style) loss, :math:`\sum_j \lVert G_j(\hat y) - G_j(y)\rVert_F^2` averaged over the batch."""
    out_f, tgt_f = _features(extractor, output, target)
    chosen = range(len(out_f)) if layers is None else layers
    return sum((gram_matrix(out_f[j]) - gram_matrix(tgt_f[j])).pow(2).sum((1, 2)).mean() for j in chosen)


def feature_distance(extractor: FeatureExtractor, images_a: Tensor, images_b: Tensor) -> Tensor:
    """Per image: the mean over layers of the mean squared feature difference (a metric; lower is closer)."""
    with torch.no_grad():
        fa, fb = extractor(images_a), extractor(images_b)
        return torch.stack([(a - b).pow(2).flatten(1).mean(1) for a, b in zip(fa, fb)]).mean(0)


#: the VGG-16 layers Johnson et al. use: relu1_2, relu2_2, relu3_3, relu4_3 (indices in ``vgg16().features``).
VGG16_LAYERS = (3, 8, 15, 22)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class _VGGFeatures(nn.Module):
    def __init__(self, features: nn.Sequential, layers: Sequence[int]) -> None:
        super().__init__()
        self.features = features[: max(layers) + 1]
        self.layers = set(layers)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: Tensor) -> list[Tensor]:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"VGG features expect images N x 1 or 3 x H x W in [0, 1], got {tuple(images.shape)}")
        h = (images.expand(-1, 3, -1, -1) - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.layers:
                out.append(h)
        return out


def vgg16_features(weights: str | os.PathLike | None = None, *, layers: Sequence[int] = VGG16_LAYERS, download: bool = False) -> FeatureExtractor:
    """VGG-16's ImageNet features at ``layers`` (optional; the book runs without them).

    ``weights`` is a local file saved from ``torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()``.
    Without a file, ``download=True`` lets torchvision fetch the weights (528 MB, needs the
    internet); otherwise a ``FileNotFoundError`` says how to get them in one sentence.
    """
    from torchvision.models import VGG16_Weights, vgg16

    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no VGG-16 weights file at {path}; save one with torch.save(torchvision.models.vgg16(weights='IMAGENET1K_V1').state_dict(), PATH) on a machine with internet")
        model = vgg16()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    elif download:
        try:
            model = vgg16(weights=VGG16_Weights.IMAGENET1K_V1)
        except Exception as error:  # noqa: BLE001 - any network failure reads the same to the reader
            raise RuntimeError(f"could not download the VGG-16 weights (528 MB; needs the internet): {error}") from None
    else:
        raise FileNotFoundError("VGG-16 features need its ImageNet weights: pass weights=PATH to a saved state dict, or download=True to fetch them (528 MB, needs the internet)")
    return _VGGFeatures(model.features, layers)


def gram_distance(extractor: FeatureExtractor, images_a: Tensor, images_b: Tensor) -> Tensor:
    """Per image: :math:`\\sum_j \\lVert G_j(a) - G_j(b) \\rVert_F^2`, how far apart the texture statistics are, wherever things are (a metric)."""
    with torch.no_grad():
        fa, fb = extractor(images_a), extractor(images_b)
        return torch.stack([(gram_matrix(a) - gram_matrix(b)).pow(2).sum((1, 2)) for a, b in zip(fa, fb)]).sum(0)
