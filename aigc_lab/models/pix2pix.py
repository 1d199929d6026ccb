r"""pix2pix: image-to-image translation with a conditional GAN and an L1 loss (chapter 4.6).

Isola, Zhu, Zhou & Efros (2017), "Image-to-Image Translation with Conditional Adversarial
Networks" (CVPR), arXiv:1611.07004. A generator :math:`G` maps an input image :math:`x` (edges,
a label map, an elevation map, a gray photo) to an output image; a discriminator :math:`D` sees
the input *and* an output and says, patch by patch, whether the output is the real target
:math:`y` of that input or :math:`G(x)`. The generator minimises

.. math::

    \mathcal{L}_G = \lambda_{adv}\, \mathbb{E}_x\big[-\log \sigma(D(x, G(x)))\big]
                  + \lambda_{L1}\, \mathbb{E}_{x, y}\, \lVert y - G(x) \rVert_1,
    \qquad \lambda_{L1} = 100,\ \lambda_{adv} = 1,

the non-saturating conditional GAN term plus the L1 distance to the target (the paper's
equation 4, with the non-saturating generator loss of its section 3.3), and the discriminator
minimises half the logistic loss,

.. math::

    \mathcal{L}_D = \tfrac{1}{2}\, \mathbb{E}_{x, y}\big[-\log \sigma(D(x, y)) - \log(1 - \sigma(D(x, G(x))))\big],

halved "to slow down the rate at which D learns relative to G" (section 3.3). Each
:math:`\log\sigma` is averaged over the discriminator's patches. L1 alone finds the median of
the plausible targets, which is a blur where they disagree (a colour, a texture); the
adversarial term penalises any output patch that a real target would not have, so it asks for
*one* sharp plausible answer. ``adversarial_weight=0`` is the paper's "L1" row of its ablation
(Table 1), ``l1_weight=0`` its "cGAN" row.

**Generator.** The shared U-Net (:class:`~aigc_lab.models.image_unet.ImageUNet`, Ronneberger et
al. 2015): the paper's generator is a U-Net too, because in translation the input and output
share their structure and the skip connections carry it across, past the bottleneck. It works in
:math:`[-1, 1]`, input scaled by :math:`2x - 1`, output through ``tanh`` (as the paper's), and
:meth:`Pix2Pix.forward` maps it back to :math:`[0, 1]`. The paper feeds no noise vector and adds
its noise only as dropout in the decoder, which it found to give "only minor stochasticity";
this version leaves the dropout out, so an output is a deterministic function of its input
(:meth:`~Pix2Pix.restore` gives the same image every time, as the other image-to-image models).

**Discriminator.** A PatchGAN (:class:`~aigc_lab.models.patchgan.PatchDiscriminator`) on the
input and output channels concatenated: :math:`D(x, y)` is conditional, so it can tell a sharp
output that does not fit its input from a real pair. With ``discriminator_layers=2`` each logit
sees 22 x 22 pixels, about a third of a 64-pixel pair; the paper's 70 x 70 PatchGAN on 256-pixel
images sees about a quarter.

**Data.** A pair is one stacked image, the input's channels followed by the target's
(``input_channels`` of them first), as :func:`aigc_lab.data.pairs.load_pairs` gives it, so the
generic training loop needs no change. :meth:`~Pix2Pix.damage` splits a pair into the model's
input; :meth:`~Pix2Pix.restore` translates input-only images.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from aigc_lab import image_losses, similarity
from aigc_lab.contract import ImageToImageModel, StepContext, inference
from aigc_lab.models.image_unet import ImageUNet
from aigc_lab.models.patchgan import PatchDiscriminator

# The 4-neighbour discrete Laplacian; its response is zero on any linear ramp, so it only measures detail.
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def high_frequency_energy(images: Tensor) -> Tensor:
    r"""The mean squared Laplacian of each image, shape ``(N,)``: a sharpness measure.

    :math:`E = \frac{1}{C (H - 2)(W - 2)} \sum_{c, i, j} (\Delta y)_{c, i, j}^2` with the 4-neighbour
    Laplacian :math:`\Delta y_{i,j} = y_{i-1,j} + y_{i+1,j} + y_{i,j-1} + y_{i,j+1} - 4 y_{i,j}`,
    over the pixels whose neighbours all exist (no padding, so the border adds no false edge).
    A blurred image has less of it than its sharp original; noise has more. Compare an output's
    with its target's: a model that blurs falls short of it.
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or min(images.shape[-2:]) < 3:
        raise ValueError(f"images must be N x C x H x W with sides of at least 3 pixels, got {getattr(images, 'shape', type(images).__name__)}")
    c = images.shape[1]
    kernel = _LAPLACIAN.to(images).expand(c, 1, 3, 3)
    return F.conv2d(images, kernel, groups=c).pow(2).mean(dim=(1, 2, 3))


def _check_shape(image_shape: object, input_channels: object, levels: object, discriminator_layers: object) -> tuple[int, int, int]:
    if not (isinstance(image_shape, (tuple, list)) and len(image_shape) == 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in image_shape)):
        raise ValueError(f"image_shape must be the stacked pair's (C, H, W) integers, e.g. (4, 64, 64), got {image_shape!r}")
    for name, value in (("input_channels", input_channels), ("levels", levels), ("discriminator_layers", discriminator_layers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    c, h, w = image_shape
    if not 1 <= input_channels < c:
        raise ValueError(
            f"input_channels ({input_channels}) must leave at least one target channel of the pair's {c}: "
            "a pair stacks the input's channels, then the target's"
        )
    multiple = 2**levels
    if h % multiple or w % multiple:
        raise ValueError(f"the pairs' sides must be multiples of 2**levels = {multiple} (the U-Net halves them {levels} times), got {h} x {w}")
    smallest = 2 ** (discriminator_layers + 1)  # the PatchGAN must still give at least one logit
    if min(h, w) < smallest:
        raise ValueError(f"the pairs' sides must be at least {smallest} pixels for a PatchGAN of {discriminator_layers} layers, got {h} x {w}")
    return (c, h, w)


class Pix2Pix(ImageToImageModel):
    r"""pix2pix (Isola et al., 2017): a U-Net generator trained with L1 plus a conditional PatchGAN, on stacked pairs.

    Args:
        image_shape: the stacked pair's ``(C, H, W)``, as the dataset gives it (``(4, 64, 64)``
            for :func:`~aigc_lab.data.pairs.load_pairs`); ``H`` and ``W`` multiples of ``2**levels``.
        input_channels: how many leading channels are the input; the other ``C - input_channels``
            are the target.
        l1_weight: :math:`\lambda_{L1}` (the paper's 100); 0 is the paper's "cGAN alone".
        adversarial_weight: :math:`\lambda_{adv}` (1); 0 is "L1 alone", and no discriminator is built.
        width, levels: the U-Net's first width and number of halvings (16 and 3: a 64-pixel pair's
            bottleneck is 8 x 8 with 128 channels, 0.5 M parameters, which trains on a CPU).
        discriminator_width, discriminator_layers: the PatchGAN's (receptive field
            :meth:`~aigc_lab.models.patchgan.PatchDiscriminator.receptive_field`: 22 pixels for 2 layers, 46 for 3).
        lr, betas: Adam's, for both networks (the paper's 2e-4 and (0.5, 0.999)).
        flip: mirror half of each batch left to right, the paper's augmentation. Off by default:
            it is wrong where the mapping has a direction (a hill-shaded map lit from the
            north-west would be lit from the north-east).
    """

    name = "pix2pix"
    # Measured on the hillshade pairs at 64 x 64 with these defaults (one busy CPU thread, batch 8):
    # the held-out L1 fell from 0.061 to 0.047 between steps 100 and 300 and was still falling, at
    # 0.16 s a step for L1 alone and 0.25 s with the discriminator; 600 steps doubles that run
    # (not measured to convergence).
    default_steps = 600
    # Whole pairs, not random patches: the pairs dataset cuts its crops itself (its size option).
    train_data_options: dict[str, Any] = {}

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (4, 64, 64),
        *,
        input_channels: int = 1,
        l1_weight: float = 100.0,
        adversarial_weight: float = 1.0,
        width: int = 16,
        levels: int = 3,
        discriminator_width: int = 32,
        discriminator_layers: int = 2,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        flip: bool = False,
    ) -> None:
        super().__init__()
        c, h, w = _check_shape(image_shape, input_channels, levels, discriminator_layers)
        if min(l1_weight, adversarial_weight) < 0 or max(l1_weight, adversarial_weight) <= 0:
            raise ValueError(
                f"l1_weight and adversarial_weight must be >= 0 and not both 0 (the paper's ablation: "
                f"adversarial_weight=0 is L1 alone, l1_weight=0 is cGAN alone), got {l1_weight!r} and {adversarial_weight!r}"
            )
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), e.g. (0.5, 0.999), got {betas!r}")
        self.hparams = {
            "image_shape": [c, h, w],
            "input_channels": input_channels,
            "l1_weight": float(l1_weight),
            "adversarial_weight": float(adversarial_weight),
            "width": width,
            "levels": levels,
            "discriminator_width": discriminator_width,
            "discriminator_layers": discriminator_layers,
            "lr": lr,
            "betas": [float(b) for b in betas],
            "flip": bool(flip),
        }
        self.input_channels, self.target_channels = input_channels, c - input_channels
        self.generator = ImageUNet(input_channels, self.target_channels, width=width, levels=levels)
        self.discriminator = (
            PatchDiscriminator(c, width=discriminator_width, layers=discriminator_layers) if adversarial_weight > 0 else None
        )

    @property
    def channels(self) -> int:
        """The channels :meth:`restore` takes: the *input's*, not the stacked pair's."""
        return self.input_channels

    @property
    def output_channels(self) -> int:
        """The channels :meth:`restore` returns: the target's."""
        return self.target_channels

    def target(self, clean: Tensor) -> Tensor:
        """The target half of stacked pairs: what :meth:`restore` of :meth:`damage`'s input should give."""
        return self.split(clean)[1]

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr, betas = self.hparams["lr"], tuple(self.hparams["betas"])
        optimizers = {"generator": torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas)}
        if self.discriminator is not None:
            optimizers["discriminator"] = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)
        return optimizers

    def split(self, pairs: Tensor) -> tuple[Tensor, Tensor]:
        """``(inputs, targets)`` of stacked pairs ``N x C x H x W`` (``C`` of ``image_shape``)."""
        c = self.hparams["image_shape"][0]
        if not isinstance(pairs, Tensor) or pairs.dim() != 4 or pairs.shape[1] != c:
            got = tuple(pairs.shape) if isinstance(pairs, Tensor) else type(pairs).__name__
            raise ValueError(
                f"pairs must be N x {c} x H x W ({self.input_channels} input channels, then {self.target_channels} target channels), got {got}"
            )
        return pairs[:, : self.input_channels], pairs[:, self.input_channels :]

    def damage(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, None]:
        """The model's input for a stacked pair: its input channels (nothing random, no mask)."""
        return self.split(clean)[0], None

    def forward(self, inputs: Tensor) -> Tensor:
        """:math:`G(x)`: ``N x input_channels x H x W`` in ``[0, 1]`` -> ``N x target_channels x H x W`` in ``[0, 1]``."""
        if inputs.dim() != 4 or inputs.shape[1] != self.input_channels:
            raise ValueError(f"inputs must be N x {self.input_channels} x H x W in [0, 1], got {tuple(inputs.shape)}")
        return (torch.tanh(self.generator(inputs * 2 - 1)) + 1) / 2

    def _judge(self, inputs: Tensor, outputs: Tensor) -> Tensor:
        """:math:`D(x, y)`: the patch logits of ``outputs`` as translations of ``inputs``."""
        return self.discriminator(torch.cat([inputs, outputs], 1))

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Any]:
        pairs = batch[0]
        if self.hparams["flip"]:
            mirror = torch.rand(len(pairs), device=pairs.device) < 0.5
            pairs = torch.where(mirror[:, None, None, None], pairs.flip(-1), pairs)  # input and target together
        inputs, targets = self.split(pairs)
        outputs = self(inputs)
        logs: dict[str, Any] = {}
        if self.discriminator is not None:
            real_logits, fake_logits = self._judge(inputs, targets), self._judge(inputs, outputs.detach())
            real_term, fake_term = image_losses.patch_adversarial_losses(real_logits, fake_logits, objective="nonsaturating")
            d_loss = 0.5 * (real_term + fake_term)  # halved, as the paper: D learns slower than G
            ctx.optimize("discriminator", d_loss)
            logs["loss/discriminator"] = float(d_loss.detach())
            logs["real_prob"] = float(torch.sigmoid(real_logits.detach()).mean())
            logs["fake_prob"] = float(torch.sigmoid(fake_logits.detach()).mean())
        l1 = F.l1_loss(outputs, targets)
        logs["loss/l1"] = float(l1.detach())  # logged even when it is not trained on: the cGAN-alone run's distance to the targets
        loss = self.hparams["l1_weight"] * l1 if self.hparams["l1_weight"] > 0 else outputs.new_zeros(())
        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)  # the generator's step must not touch D's gradients
            adversarial = image_losses.patch_generator_loss(self._judge(inputs, outputs), objective="nonsaturating")  # the updated D
            self.discriminator.requires_grad_(True)
            loss = loss + self.hparams["adversarial_weight"] * adversarial
            logs["loss/adversarial"] = float(adversarial.detach())
        ctx.optimize("generator", loss)
        logs["loss/generator"] = float(loss.detach())
        return logs

    @torch.no_grad()
    def restore(self, images: Tensor, mask: Tensor | None = None, *, batch_size: int = 32) -> Tensor:
        """Translate input-only images ``N x input_channels x H x W`` in ``[0, 1]`` in evaluation mode.

        Returns ``N x target_channels x H x W`` in ``[0, 1]``. Any side of at least ``2**levels``
        works: the U-Net pads other sides by reflection to the next multiple of ``2**levels`` and
        crops back; below that, its deepest level would see nothing but padding.
        """
        self.check_restore_input(images, mask)
        smallest = 2 ** self.hparams["levels"]
        if min(images.shape[-2:]) < smallest:
            raise ValueError(
                f"{self.name} translates images with sides of at least 2**levels = {smallest} pixels "
                f"(the U-Net halves them {self.hparams['levels']} times), got {images.shape[-2]} x {images.shape[-1]}"
            )
        was_training = self.training
        self.eval()
        try:
            parts = [self(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(parts) if parts else images.new_zeros(0, self.target_channels, *images.shape[-2:])

    @inference
    def evaluate(self, dataset: Any) -> dict[str, float]:
        """:func:`evaluate_pairs` on the stacked pairs of ``dataset`` (an :class:`~aigc_lab.data.ImageDataset` of pairs)."""
        pairs = dataset.images if hasattr(dataset, "images") else torch.stack([dataset[i][0] for i in range(len(dataset))])
        return evaluate_pairs(self, pairs)


@torch.no_grad()
def evaluate_pairs(model: Pix2Pix, pairs: Tensor, *, batch_size: int = 32) -> dict[str, float]:
    """How close ``model``'s outputs are to the targets of held-out stacked ``pairs``, and how sharp.

    Returns the means over the pairs of ``psnr`` and ``ssim`` (:mod:`aigc_lab.similarity`) and
    ``l1`` of the outputs against the targets, the outputs' :func:`high_frequency_energy`
    ``hf_energy`` and the targets' ``target_hf_energy`` (a blurring model's is lower than its
    targets'; one that invents texture may exceed it).
    """
    device = next(model.parameters()).device
    inputs, targets = model.split(pairs)
    outputs = model.restore(inputs.to(device), batch_size=batch_size).cpu()
    targets = targets.cpu()
    return {
        "psnr": float(similarity.psnr(outputs, targets).mean()),
        "ssim": float(similarity.ssim(outputs, targets).mean()),
        "l1": float((outputs - targets).abs().mean()),
        "hf_energy": float(high_frequency_energy(outputs).mean()),
        "target_hf_energy": float(high_frequency_energy(targets).mean()),
    }
