r"""Chapter 1's tiny generators: one small network, two ways to train it.

The source article's code skeleton trains a generator ``G`` with ``nn.MSELoss`` on random
inputs. Made to run, that idea teaches the book's first lesson:

* :class:`MSEGenerator` maps noise :math:`z` to an image and minimises
  :math:`\mathbb{E}\lVert G(z) - x \rVert^2` against training images :math:`x` drawn
  independently of :math:`z`. The minimiser is :math:`G(z) = \mathbb{E}[x]` for every
  :math:`z` — the average image (per class, when conditioned on a label). MSE cannot
  generate; it can only regress.
* :class:`WGANGP` trains the same generator against a critic with the source's objective
  :math:`L = \mathbb{E}[D(x)] - \mathbb{E}[D(G(z))]` plus the gradient penalty that makes
  it work (Gulrajani et al., 2017), and learns to draw varied, sharp digits.

Both take an optional label (``num_classes > 0``), which enters by concatenating a learned
embedding to the input: the conditional generator of the source's skeleton.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aigc_lab.images import check_images, to_model_range, to_unit_range
from aigc_lab.losses import gradient_penalty, wgan_critic_loss, wgan_generator_loss
from aigc_lab.images import check_labels
from aigc_lab.contract import StepContext, TrainableModel


class MLPGenerator(nn.Module):
    """``G(z[, y])``: noise (and a label) to an image in ``[-1, 1]`` through two hidden layers."""

    def __init__(self, image_shape: tuple[int, int, int], z_dim: int = 16, hidden: int = 256, num_classes: int = 0):
        super().__init__()
        self.image_shape, self.z_dim, self.num_classes = tuple(image_shape), z_dim, num_classes
        self.embed = nn.Embedding(num_classes, z_dim) if num_classes else None
        in_dim = z_dim * (2 if num_classes else 1)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, math.prod(self.image_shape)),
            nn.Tanh(),
        )

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        labels = check_labels(labels, z.shape[0], self.num_classes)
        h = z if labels is None else torch.cat([z, self.embed(labels.to(z.device))], dim=1)  # (N, in_dim)
        return self.net(h).view(-1, *self.image_shape)  # (N, C, H, W)


class MLPCritic(nn.Module):
    """``D(x[, y])``: an image (and a label) to one unbounded score per image.

    No normalisation layers: the gradient penalty is taken per example, and batch norm would
    mix examples (Gulrajani et al., 2017, section 4).
    """

    def __init__(self, image_shape: tuple[int, int, int], hidden: int = 256, num_classes: int = 0):
        super().__init__()
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        in_dim = math.prod(self.image_shape)
        self.embed = nn.Embedding(num_classes, in_dim) if num_classes else None
        self.net = nn.Sequential(
            nn.Linear(in_dim * (2 if num_classes else 1), hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        check_images(x, name="critic input", value_range=None, channels=self.image_shape[0], size=self.image_shape[1:])
        labels = check_labels(labels, x.shape[0], self.num_classes)
        h = x.flatten(1)  # (N, C*H*W)
        if labels is not None:
            h = torch.cat([h, self.embed(labels.to(x.device))], dim=1)
        return self.net(h)[:, 0]  # (N,)


class _GeneratorModel(TrainableModel):
    """Shared by both chapter-1 models: a generator, its noise and its sampler."""

    def __init__(self, image_shape, z_dim: int, hidden: int, num_classes: int):
        super().__init__()
        if len(tuple(image_shape)) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
        self.generator = MLPGenerator(tuple(image_shape), z_dim, hidden, num_classes)

    @property
    def num_classes(self) -> int:
        return self.generator.num_classes

    def _noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        device = next(self.parameters()).device
        return torch.randn(n, self.generator.z_dim, generator=generator).to(device) if generator is not None else torch.randn(n, self.generator.z_dim, device=device)

    @torch.no_grad()
    def sample(self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        if labels is None and self.num_classes:
            labels = torch.arange(n) % self.num_classes  # one row of every class in a grid of width num_classes
        z = self._noise(n, generator)
        return to_unit_range(self.generator(z, labels))

    def _labels_for(self, y: Tensor) -> Tensor | None:
        return y if self.num_classes else None


class MSEGenerator(_GeneratorModel):
    r"""A generator trained with the source's ``nn.MSELoss``: :math:`\min_G \mathbb{E}\lVert G(z) - x\rVert^2`.

    With :math:`z` independent of :math:`x`, the best :math:`G` outputs :math:`\mathbb{E}[x]`
    (or :math:`\mathbb{E}[x \mid y]` with labels) whatever :math:`z` is.
    """

    name = "mse-generator"
    default_steps = 1500

    def __init__(self, image_shape=(1, 8, 8), z_dim: int = 16, hidden: int = 256, num_classes: int = 0, lr: float = 1e-3):
        super().__init__(image_shape, z_dim, hidden, num_classes)
        self.hparams = dict(image_shape=list(image_shape), z_dim=z_dim, hidden=hidden, num_classes=num_classes, lr=lr)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": torch.optim.Adam(self.generator.parameters(), lr=self.hparams["lr"])}

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        x, y = batch
        x = to_model_range(x)
        fake = self.generator(self._noise(x.shape[0]), self._labels_for(y))
        loss = F.mse_loss(fake, x)
        ctx.optimize("generator", loss)
        return {"mse": loss.detach()}


class WGANGP(_GeneratorModel):
    r"""The source's objective with a gradient penalty (WGAN-GP, Gulrajani et al., 2017).

    Critic, ``n_critic`` times per generator step:
    :math:`\min_D \; \mathbb{E}[D(G(z))] - \mathbb{E}[D(x)] + \lambda\,\mathbb{E}[(\lVert\nabla_{\hat x} D(\hat x)\rVert - 1)^2]`.

    Generator: :math:`\min_G \; -\mathbb{E}[D(G(z))]`.

    Defaults follow the paper (Adam, ``n_critic=5``, ``gp_weight=10``) except where a few CPU
    minutes call for faster learning: ``lr=2e-4`` (paper: 1e-4) and ``betas=(0.5, 0.9)``
    (paper: (0.0, 0.9)). On the digits, 3000 steps at ``lr=2e-4`` gave clearly more legible
    samples than at 1e-4.
    Logged ``wasserstein`` is the critic's estimate :math:`\mathbb{E}[D(x)] - \mathbb{E}[D(G(z))]`.
    """

    name = "wgan-gp-mlp"
    default_steps = 3000

    def __init__(
        self,
        image_shape=(1, 8, 8),
        z_dim: int = 16,
        hidden: int = 256,
        num_classes: int = 0,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        n_critic: int = 5,
        gp_weight: float = 10.0,
    ):
        super().__init__(image_shape, z_dim, hidden, num_classes)
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        self.critic = MLPCritic(tuple(image_shape), hidden, num_classes)
        self.hparams = dict(
            image_shape=list(image_shape), z_dim=z_dim, hidden=hidden, num_classes=num_classes,
            lr=lr, betas=list(betas), n_critic=n_critic, gp_weight=gp_weight,
        )

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr, betas = self.hparams["lr"], tuple(self.hparams["betas"])
        return {
            "critic": torch.optim.Adam(self.critic.parameters(), lr=lr, betas=betas),
            "generator": torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas),
        }

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        x, y = batch
        x, labels = to_model_range(x), self._labels_for(y)
        extra = () if labels is None else (labels,)
        for _ in range(self.hparams["n_critic"]):
            with torch.no_grad():
                fake = self.generator(self._noise(x.shape[0]), labels)
            distance = -wgan_critic_loss(self.critic(x, *extra), self.critic(fake, *extra))
            penalty = gradient_penalty(self.critic, x, fake, *extra)
            ctx.optimize("critic", -distance + self.hparams["gp_weight"] * penalty)
        fake = self.generator(self._noise(x.shape[0]), labels)
        g_loss = wgan_generator_loss(self.critic(fake, *extra))
        ctx.optimize("generator", g_loss)
        return {"wasserstein": distance.detach(), "gradient_penalty": penalty.detach(), "generator": g_loss.detach()}
