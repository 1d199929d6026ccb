r"""A feed-forward style network (Johnson, Alahi & Fei-Fei, 2016): one forward pass per image (chapter 6.2).

Gatys et al.'s transfer (:mod:`aigc_lab.style_transfer`) optimises every new image for hundreds of
steps. Johnson et al. ("Perceptual Losses for Real-Time Style Transfer and Super-Resolution", ECCV
2016) train a network :math:`f_W` once, on many photos :math:`x`, to minimise the same loss with the
photo as its own content target:

.. math::

    \min_W \ \mathbb{E}_x \Big[ \sum_{j \in C} \frac{\lVert \phi_j(f_W(x)) - \phi_j(x) \rVert^2}{\lVert \phi_j(x) \rVert^2}
        + \beta \sum_{j \in S} \frac{\lVert G_j(f_W(x)) - G_j(s) \rVert_F^2}{\lVert G_j(s) \rVert_F^2}
        + \gamma\, \mathrm{TV}(f_W(x)) \Big],

after which stylising a photo costs one pass of :math:`f_W`. The terms are normalised as in
:class:`aigc_lab.style_transfer.StyleObjective`, in the same fixed random features
(:class:`aigc_lab.perceptual.RandomFeatures`), so the two methods are compared at the same weights.

The network is the paper's, narrower and cheaper for a CPU: a convolution in (the paper's is
9 x 9, this one 3 x 3 by default), two stride-2 convolutions down, residual blocks, two
nearest-neighbour upsamplings with convolutions (Odena et al., 2016, instead of the paper's
transposed convolutions, which leave checkerboard artefacts), a convolution out (9 x 9 in the
paper, 3 x 3 here); instance normalisation everywhere (Ulyanov, Vedaldi & Lempitsky, 2016, found
it much better than batch normalisation for stylisation), reflection padding at the borders.

The style is ``"pencil"`` or ``"oil"`` (the classical renderings of :mod:`aigc_lab.styles` of one
reference photo, :func:`aigc_lab.styles.reference_image`) or the path of an image file. Its Gram
matrices are computed once, on the first training step, and saved with the weights, so a trained
run loads without the style file.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aigc_lab import perceptual, styles
from aigc_lab.contract import ImageToImageModel, StepContext
from aigc_lab.degradations import augment
from aigc_lab.images import read_image_file


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, *, norm: bool = True, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, padding_mode="reflect")]
    if norm:
        layers.append(nn.InstanceNorm2d(cout, affine=True))
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(width, width, 3), _conv(width, width, 3, relu=False))

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class TransformNet(nn.Module):
    """Johnson et al.'s image transformation network: ``C x H x W`` in ``[0, 1]`` to the same size in ``[0, 1]`` (H, W multiples of 4).

    ``edge_kernel`` is the size of the first and the last convolution, the two at full resolution.
    With the paper's 9 x 9 they are a sixth (gray) to a third (colour) of the network's
    multiply-adds at width 8, and a larger share of its time: eight-channel convolutions at full
    resolution use a CPU poorly. In side runs of the pencil network, 3 x 3 ones took a third less
    time per training step and per photo (22 against 33 ms, 800 steps each); trained for 1,200
    steps, the time 800 had taken, the 3 x 3 network stylised a photo in 16 ms against the 9 x 9
    network's 25 ms, at a lower style distance (0.032 against 0.058 on coffee) and a content SSIM of
    0.43; 5 x 5 fell between the two.
    """

    def __init__(self, channels: int = 3, width: int = 16, residual_blocks: int = 3, *, edge_kernel: int = 3) -> None:
        super().__init__()
        if isinstance(edge_kernel, bool) or not isinstance(edge_kernel, int) or edge_kernel < 1 or edge_kernel % 2 == 0:
            raise ValueError(f"edge_kernel must be an odd positive integer (the paper's is 9), got {edge_kernel!r}")
        self.down = nn.Sequential(_conv(channels, width, edge_kernel), _conv(width, 2 * width, 3, 2), _conv(2 * width, 4 * width, 3, 2))
        self.residual = nn.Sequential(*(_Residual(4 * width) for _ in range(residual_blocks)))
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(4 * width, 2 * width, 3),
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(2 * width, width, 3),
            _conv(width, channels, edge_kernel, norm=False, relu=False),
        )  # fmt: skip

        nn.init.zeros_(self.up[-1][0].weight)  # an untrained network returns its input (see forward)
        nn.init.zeros_(self.up[-1][0].bias)

    def forward(self, images: Tensor) -> Tensor:
        # A change of the input's logits rather than a new image: training starts from the photo
        # (content loss 0) and only has to learn the style, not to copy the photo first.
        logits = torch.logit(images.clamp(1e-3, 1 - 1e-3))
        return torch.sigmoid(logits + self.up(self.residual(self.down(images * 2 - 1))))


def load_style_image(style: str, size: int, channels: int) -> Tensor:
    """The style image ``1 x C x size x size``: a named classical style's reference rendering, or an image file resized."""
    if style in styles.STYLES:
        image = styles.reference_image(style, size)
    else:
        image = read_image_file(style).unsqueeze(0)  # FileNotFoundError / ValueError name the file
        image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    if image.shape[1] != channels:
        image = image.mean(1, keepdim=True).expand(-1, channels, -1, -1) if image.shape[1] == 3 or channels == 3 else image
    return image.contiguous()


class StyleNet(ImageToImageModel):
    """A feed-forward style network (Johnson et al., 2016): trained once on photos, it stylises a photo in one pass."""

    name = "style-net"
    default_steps = 1500
    train_data_options: dict[str, Any] = {"patch_size": 96, "n_patches": 2000}

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (3, 96, 96),
        *,
        style: str = "pencil",
        style_weight: float = 10.0,
        tv_weight: float = 0.0,
        width: int = 16,
        residual_blocks: int = 3,
        style_size: int = 256,
        lr: float = 2e-3,
    ) -> None:
        super().__init__()
        channels, h, w = (int(v) for v in image_shape)
        if channels not in (1, 3):
            raise ValueError(f"image_shape must have 1 or 3 channels, got {tuple(image_shape)}")
        if h % 4 or w % 4:
            raise ValueError(f"training images of {h} x {w}: the network needs sides that are multiples of 4")
        if not isinstance(style, str) or not style:
            raise ValueError(f"style must be one of {', '.join(styles.STYLES)} or the path of an image file, got {style!r}")
        if style_weight < 0 or tv_weight < 0:
            raise ValueError(f"style_weight and tv_weight must be >= 0, got {style_weight!r} and {tv_weight!r}")
        self.hparams = {
            "image_shape": [channels, h, w], "style": style, "style_weight": style_weight, "tv_weight": tv_weight,
            "width": width, "residual_blocks": residual_blocks, "style_size": style_size, "lr": lr,
        }  # fmt: skip
        self.net = TransformNet(channels, width, residual_blocks)
        # the loss network: the same fixed random features as aigc_lab.style_transfer.transfer_features (not saved: rebuilt from its seed)
        self.features = [perceptual.RandomFeatures(channels, width=32, blocks=4, seed=0)]  # a list hides it from state_dict and .to()
        n_maps = len(self.features[0].convs)
        self.content_layer = n_maps - 2
        for j, conv in enumerate(self.features[0].convs):  # the style's Gram matrices, filled on the first step, saved with the weights
            self.register_buffer(f"style_gram_{j}", torch.zeros(conv.out_channels, conv.out_channels))
        self.register_buffer("style_ready", torch.zeros((), dtype=torch.bool))

    def _style_grams(self) -> list[Tensor]:
        if not bool(self.style_ready):
            image = load_style_image(self.hparams["style"], self.hparams["style_size"], self.channels).to(self.style_ready.device)
            with torch.no_grad():
                for j, f in enumerate(self._features()(image)):
                    getattr(self, f"style_gram_{j}").copy_(perceptual.gram_matrix(f)[0])
            self.style_ready.fill_(True)
        return [getattr(self, f"style_gram_{j}") for j in range(len(self.features[0].convs))]

    def _features(self) -> perceptual.RandomFeatures:
        device = self.style_ready.device
        if next(self.features[0].parameters()).device != device:
            self.features[0].to(device)
        return self.features[0]

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"style-net": torch.optim.Adam(self.net.parameters(), lr=self.hparams["lr"])}

    def damage(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, None]:
        """A style network's input is the photo itself (nothing is damaged)."""
        return clean, None

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def loss_terms(self, photos: Tensor) -> dict[str, Tensor]:
        """The unweighted ``content``, ``style`` and ``tv`` terms of the module docstring for a batch of photos (batch means)."""
        grams = self._style_grams()
        out = self(photos)
        features = self._features()
        out_maps = features(out)
        with torch.no_grad():
            target = features(photos)[self.content_layer]
        dims = tuple(range(1, target.dim()))
        content = ((out_maps[self.content_layer] - target).pow(2).sum(dims) / target.pow(2).sum(dims).clamp_min(1e-12)).mean()
        style = sum(
            ((perceptual.gram_matrix(f) - g).pow(2).sum((1, 2)) / g.pow(2).sum().clamp_min(1e-12)).mean() for f, g in zip(out_maps, grams)
        )
        tv = (out[..., 1:, :] - out[..., :-1, :]).abs().mean() + (out[..., :, 1:] - out[..., :, :-1]).abs().mean()
        return {"content": content, "style": style, "tv": tv}

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Any]:
        terms = self.loss_terms(augment(batch[0]))
        loss = terms["content"] + self.hparams["style_weight"] * terms["style"] + self.hparams["tv_weight"] * terms["tv"]
        ctx.optimize("style-net", loss)
        return {"loss/total": float(loss.detach()), **{f"loss/{k}": float(v.detach()) for k, v in terms.items()}}

    @torch.no_grad()
    def restore(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """Stylise photos of any size (padded by reflection to a multiple of 4, then cropped back), in evaluation mode."""
        self.check_restore_input(images, mask)
        h, w = images.shape[-2:]
        pad_h, pad_w = -h % 4, -w % 4
        padded = F.pad(images, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else images
        was_training = self.training
        self.eval()
        try:
            return self(padded)[..., :h, :w].clamp(0, 1)
        finally:
            self.train(was_training)
