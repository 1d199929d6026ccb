r"""Neural style transfer by optimisation (Gatys, Ecker & Bethge, 2016), on features that need no download.

Gatys et al. ("Image Style Transfer Using Convolutional Neural Networks", CVPR 2016) start from an
image :math:`x` and change its pixels by gradient descent until its features :math:`\phi_j(x)`
match the content image :math:`c` at a deep layer and its Gram matrices match the style image
:math:`s` at several layers:

.. math::

    \mathcal L(x) = \alpha \sum_{j \in C} \frac{\lVert \phi_j(x) - \phi_j(c) \rVert^2}{\lVert \phi_j(c) \rVert^2}
                  + \beta \sum_{j \in S} \frac{\lVert G_j(x) - G_j(s) \rVert_F^2}{\lVert G_j(s) \rVert_F^2}
                  + \gamma\, \mathrm{TV}(x),

with :math:`G_j` the Gram matrix of layer :math:`j` (:func:`aigc_lab.perceptual.gram_matrix`: which
features occur together, wherever they are) and TV the total variation (mean absolute difference
of neighbouring pixels), a mild smoothness prior. Each term is divided by its target's own size,
a choice of this book (Gatys et al. use fixed per-layer weights tuned to VGG-19): with it one
``style_weight`` :math:`\beta / \alpha` means the same thing in any feature network, which is what
lets us swap VGG for a network with random weights.

Random weights are enough for texture: Ustyuzhaninov, Brendel, Gatys & Bethge (2017, "What does it
take to generate natural textures?", ICLR) and He, Wang & Hopcroft (2016, "A Powerful Generative
Model Using Random Weights for the Deep Image Representation", NeurIPS) matched Gram matrices of
untrained convolutional networks and obtained textures and style transfers. What random features
lack is the trained network's notion of objects: content is kept as edges and colours, not as
"a face". The style is measured in a *second* network (:func:`judge_features`, other weights and
widths), so an image cannot score well by exploiting the one network it was optimised in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from aigc_lab import perceptual, similarity
from aigc_lab.images import check_images

#: the feature networks' settings: optimised in :func:`transfer_features`, judged in :func:`judge_features`.
TRANSFER_FEATURES = {"width": 32, "blocks": 4, "seed": 0}
JUDGE_FEATURES = {"width": 48, "blocks": 4, "seed": 1}


def transfer_features(channels: int = 3) -> perceptual.RandomFeatures:
    """The fixed random network whose features the transfer matches (:data:`TRANSFER_FEATURES`)."""
    return perceptual.RandomFeatures(channels, **TRANSFER_FEATURES)


def judge_features(channels: int = 3) -> perceptual.RandomFeatures:
    """Another random network (other seed and widths) that scores the style of a result, never optimised against."""
    return perceptual.RandomFeatures(channels, **JUDGE_FEATURES)


def total_variation(images: Tensor) -> Tensor:
    r"""Mean absolute difference of horizontally and vertically neighbouring pixels, :math:`\mathrm{TV}(x)`, per batch (a scalar)."""
    return (images[..., 1:, :] - images[..., :-1, :]).abs().mean() + (images[..., :, 1:] - images[..., :, :-1]).abs().mean()


class StyleObjective:
    r"""The loss :math:`\mathcal L(x)` of the module docstring for one content image and one style image.

    The targets' features and Gram matrices are computed once here. ``content_layers`` and
    ``style_layers`` index the feature maps ``features`` returns (default: content from the
    second-to-last layer, style from all). The style image may have another size than the
    content: Gram matrices do not depend on where things are.
    """

    def __init__(
        self,
        features: perceptual.FeatureExtractor,
        content: Tensor,
        style: Tensor,
        *,
        style_weight: float = 10.0,
        tv_weight: float = 0.0,
        content_layers: Sequence[int] | None = None,
        style_layers: Sequence[int] | None = None,
    ) -> None:
        check_images(content, name="content")
        check_images(style, name="style", channels=content.shape[1])
        if len(content) != 1 or len(style) != 1:
            raise ValueError(f"content and style must each be one image (1 x C x H x W), got {len(content)} and {len(style)}")
        if style_weight < 0 or tv_weight < 0:
            raise ValueError(f"style_weight and tv_weight must be >= 0, got {style_weight!r} and {tv_weight!r}")
        self.features = features
        self.style_weight, self.tv_weight = float(style_weight), float(tv_weight)
        with torch.no_grad():
            content_maps, style_maps = features(content), features(style)
        n = len(content_maps)
        self.content_layers = list(content_layers) if content_layers is not None else [n - 2]
        self.style_layers = list(style_layers) if style_layers is not None else list(range(n))
        for j in (*self.content_layers, *self.style_layers):
            if not -n <= j < n:
                raise ValueError(f"layer {j} does not exist: the feature network returns {n} maps")
        self.content_targets = {j: content_maps[j] for j in self.content_layers}
        self.style_targets = {j: perceptual.gram_matrix(style_maps[j]) for j in self.style_layers}

    def terms(self, images: Tensor) -> dict[str, Tensor]:
        """The unweighted ``content``, ``style`` and ``tv`` terms for ``images`` (1 x C x H x W), each a scalar."""
        maps = self.features(images)
        content = sum((maps[j] - t).pow(2).sum() / t.pow(2).sum().clamp_min(1e-12) for j, t in self.content_targets.items())
        style = sum(
            (perceptual.gram_matrix(maps[j]) - g).pow(2).sum() / g.pow(2).sum().clamp_min(1e-12) for j, g in self.style_targets.items()
        )
        return {"content": content, "style": style, "tv": total_variation(images)}

    def __call__(self, images: Tensor) -> Tensor:
        terms = self.terms(images)
        return terms["content"] + self.style_weight * terms["style"] + self.tv_weight * terms["tv"]


@dataclass
class TransferResult:
    """What :func:`gatys_transfer` returns: the image, the loss after each step, and the seconds it took."""

    image: Tensor  # 1 x C x H x W in [0, 1]
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def gatys_transfer(
    content: Tensor,
    style: Tensor,
    *,
    features: perceptual.FeatureExtractor | None = None,
    style_weight: float = 10.0,
    tv_weight: float = 0.0,
    steps: int = 200,
    lr: float = 0.03,
    init: str = "content",
    seed: int = 0,
    content_layers: Sequence[int] | None = None,
    style_layers: Sequence[int] | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
) -> TransferResult:
    r"""Optimise the pixels of an image to minimise :class:`StyleObjective` (Gatys et al., 2016).

    Adam on the pixels, which are kept in ``[0, 1]`` by clamping after every step. Gatys et al. use
    L-BFGS; on a CPU Adam reaches a comparable loss in fewer seconds per step and has no line search
    to go wrong on a clamped image (the chapter measures both speed and result, not the optimiser).
    ``init="content"`` starts from the content image (the usual choice: fewer steps); ``"noise"``
    from uniform noise drawn with ``seed``, which is slower and keeps less of the content.
    ``callback(step, image)`` sees the image after each step (for an animation or a snapshot); its
    time is not counted in the result's ``seconds`` (the optimisation's own, from the objective's
    targets to the last step).

    Args:
        content, style: ``1 x C x H x W`` images in ``[0, 1]``, the same ``C``; sizes may differ.
        features: the feature network (default :func:`transfer_features`).
        style_weight: :math:`\beta / \alpha`, the style term's weight against the content term's.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    if init not in ("content", "noise"):
        raise ValueError(f"init must be 'content' or 'noise', got {init!r}")
    features = features if features is not None else transfer_features(content.shape[1] if isinstance(content, Tensor) and content.dim() == 4 else 3)
    began = time.perf_counter()  # a reader's cost per image: the targets' features, then every step
    objective = StyleObjective(
        features, content, style, style_weight=style_weight, tv_weight=tv_weight, content_layers=content_layers, style_layers=style_layers
    )
    if init == "content":
        start = content.clone()
    else:
        start = torch.rand(content.shape, generator=torch.Generator().manual_seed(seed))
    image = start.requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=lr)
    losses = []
    watching = 0.0  # seconds spent in the callback, left out of the result's time
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = objective(image)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0, 1)
        losses.append(float(loss.detach()))
        if callback is not None:
            start = time.perf_counter()
            callback(step, image.detach())
            watching += time.perf_counter() - start
    return TransferResult(image.detach(), losses, time.perf_counter() - began - watching)


@torch.no_grad()
def style_scores(results: Tensor, content: Tensor, style: Tensor, *, judge: perceptual.FeatureExtractor | None = None) -> dict[str, Tensor]:
    r"""How stylised and how faithful each result is, judged outside the network it was optimised in.

    Returns, per image of ``results`` (``N x C x H x W``):

    * ``style_distance``: :math:`\sum_j \lVert G_j(x) - G_j(s)\rVert_F^2 / \lVert G_j(s)\rVert_F^2`
      in ``judge``'s features (default :func:`judge_features`), relative per layer as in the
      objective, so 0 is the style image's own texture statistics;
    * ``style_reduction``: ``1 - style_distance / (the content image's style distance)``: the share
      of the way from the content's texture to the style's (the target is at least 0.8);
    * ``content_ssim``: SSIM to the content image on brightness (:func:`aigc_lab.similarity.ssim`),
      how much of the content's structure survives.
    """
    check_images(results, name="results")
    check_images(content, name="content", channels=results.shape[1])
    check_images(style, name="style", channels=results.shape[1])
    judge = judge if judge is not None else judge_features(results.shape[1])
    style_grams = [perceptual.gram_matrix(f) for f in judge(style)]

    def distance(images: Tensor) -> Tensor:
        grams = [perceptual.gram_matrix(f) for f in judge(images)]
        return torch.stack([(g - s).pow(2).sum((1, 2)) / s.pow(2).sum() for g, s in zip(grams, style_grams)]).sum(0)

    style_distance = distance(results)
    content_distance = distance(content)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)

    def gray(images: Tensor) -> Tensor:
        return (images * luma).sum(1, keepdim=True) if images.shape[1] == 3 else images

    return {
        "style_distance": style_distance,
        "style_reduction": 1 - style_distance / content_distance,
        "content_ssim": similarity.ssim(gray(results), gray(content).expand(len(results), -1, -1, -1)),
    }
