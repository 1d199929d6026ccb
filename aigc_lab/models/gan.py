r"""Chapter 3's convolutional GANs, and chapter 4's conditional ones: DCGAN and WGAN.

A generative adversarial network (GAN; Goodfellow et al., 2014, "Generative Adversarial Nets",
arXiv:1406.2661) trains a generator :math:`G`, noise :math:`z \sim \mathcal{N}(0, I)` to image,
against a discriminator (or *critic*) :math:`D`, image to score. Two objectives are built in:

* :class:`DCGAN`, the **non-saturating** GAN with the convolutional architecture of Radford et al.
  (2016, "Unsupervised Representation Learning with Deep Convolutional GANs", arXiv:1511.06434):
  :math:`D` is a classifier trained with binary cross-entropy (real 1, fake 0),

  .. math::
      \min_D\; -\mathbb{E}[\log \sigma(D(x))] - \mathbb{E}[\log(1 - \sigma(D(G(z))))],
      \qquad \min_G\; -\mathbb{E}[\log \sigma(D(G(z)))].

  The generator's loss is the "-log D" trick of Goodfellow et al.: minimising
  :math:`\log(1 - \sigma(D(G(z))))` instead would give vanishing gradients exactly when
  :math:`G` is bad and :math:`D` confidently rejects its images.

* :class:`WGAN`, the source article's objective (section 3 of the source), the Wasserstein GAN of
  Arjovsky et al. (2017, "Wasserstein GAN", arXiv:1701.07875),

  .. math::
      L = \mathbb{E}_{x}[D(x)] - \mathbb{E}_{z}[D(G(z))], \qquad \max_D L, \quad \min_G -\mathbb{E}[D(G(z))],

  with the choice the source leaves out, ``constraint``: :math:`L` estimates the Wasserstein-1
  distance only when :math:`D` is 1-Lipschitz (Kantorovich-Rubinstein duality). ``"none"`` is the
  objective alone: nothing bounds :math:`D`, the critic's scores grow without bound and the
  generator's gradients with them. ``"clip"`` clips every critic weight to :math:`[-c, c]` after
  each critic step (Arjovsky et al.), a crude way to bound the Lipschitz constant. ``"gp"`` adds
  the gradient penalty :math:`\lambda\,\mathbb{E}[(\lVert\nabla_{\hat x} D(\hat x)\rVert_2 - 1)^2]`
  (WGAN-GP; Gulrajani et al., 2017, "Improved Training of Wasserstein GANs", arXiv:1704.00028).

**Conditioning** (chapter 4). With ``num_classes = K > 0`` both networks take a label :math:`y`, and
the source's conditional objective is :math:`L_{cGAN} = \mathbb{E}[D(x, y)] - \mathbb{E}[D(G(z, y), y)]`
(Mirza & Osindero, 2014, "Conditional Generative Adversarial Nets", arXiv:1411.1784). Three ways
to feed :math:`y` in, ``conditioning``:

* ``"concat"``: the one-hot label is concatenated to :math:`z`, and to the critic's input image as
  :math:`K` constant channels (Mirza & Osindero's recipe);
* ``"embedding"``: a learned embedding of the label is concatenated to :math:`z`, and another to
  the critic's feature vector :math:`\phi(x)` before a hidden layer (a nonlinearity is needed after
  the concatenation: a linear read-out of :math:`[\phi(x), e(y)]` would only add a per-class
  constant, which cancels in :math:`L_{cGAN}`);
* ``"projection"``: the projection discriminator of Miyato & Koyama (2018, "cGANs with Projection
  Discriminator", arXiv:1802.05637), :math:`D(x, y) = \psi(\phi(x)) + \langle e(y), \phi(x)\rangle`,
  the form the log-density ratio takes when the class posterior is log-linear in :math:`\phi(x)`.
  Its generator takes the label as a learned embedding concatenated to :math:`z` (the paper uses
  conditional batch norm; the embedding is simpler and was enough on the digits).

:class:`WGAN` can add AC-GAN's auxiliary classification term to both losses (``aux_weight``), give
the critic a larger learning rate (``critic_lr``) and layers at full resolution (``d_full_res``),
and embed a label made of attributes as the sum of one embedding per attribute (``label_factors``):
see its docstring.

**Architecture** (any ``image_shape = (C, H, W)`` with :math:`H = W` a power of two, at least 8).
Generator: ``linear -> 4 x 4 map -> [transposed conv 4x4 stride 2, batch norm, ReLU] per doubling
-> conv 3x3 -> tanh``, as in DCGAN. Critic: ``[conv 4x4 stride 2, norm, LeakyReLU] per halving down
to 4 x 4 -> conv 3x3 -> linear -> LeakyReLU`` gives the features :math:`\phi(x)`, and a linear layer
:math:`\psi` the score. The layers at full resolution are kept thin: on a CPU they cost the most.
Models work in ``[-1, 1]``; :meth:`~_ConvGAN.sample` returns ``[0, 1]``.

**Measured on the digits** (1000 training images, batch 64, one CPU thread; Frechet distance to the
test split, :func:`aigc_lab.metrics.frechet_distance_to_test`, of 1000 samples; baselines: one
Gaussian 48.98, a Gaussian per class 16.97, real train images 9.48):

===================================================  =====  ====  ==============  ===========
model (defaults unless said)                         steps  FD    classes         CPU seconds
===================================================  =====  ====  ==============  ===========
``DCGAN()``                                          3000   12.9  10 of 10        ~100
``WGAN(constraint="gp")``                            2000   16.3  10 of 10        ~150
``WGAN(constraint="clip")``                          1000   38.9  10 of 10        ~180
``WGAN(constraint="none")``                          300    57.0  10 of 10        ~35
``WGAN(num_classes=10, conditioning="projection")``  1500   10.2  accuracy 98.0%  ~120
``WGAN(num_classes=10, conditioning="concat")`` \*   1500   14.2  accuracy 93.7%  ~140
===================================================  =====  ====  ==============  ===========

Without a constraint the critic's scores grow without bound (mean :math:`|D(x)|` 16 after 25 steps,
500 after 100, 2600 after 300); Adam's normalised steps still move the generator, but the logged
"Wasserstein" estimate jumps around (10, 306, 47, 105) and means nothing. With ``"clip"`` and
:math:`c = 0.01` the scores stay near 0.01 and learning is slow (FD 50.2 after 500 steps, 38.9
after 1000). The conditional rows give the share of samples the classifier puts in the class asked
for (:func:`aigc_lab.metrics.classifier_accuracy`; every class covered). \* measured with
``critic_norm="layer"``, as was projection at FD 9.8 and accuracy 98.4%.
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aigc_lab.images import check_image_shape, check_images, to_model_range, to_unit_range
from aigc_lab.losses import (
    gradient_penalty,
    nonsaturating_discriminator_loss,
    nonsaturating_generator_loss,
    wgan_critic_loss,
    wgan_generator_loss,
)
from aigc_lab.images import check_label_factors, check_labels
from aigc_lab.models.conditioning import label_embedding
from aigc_lab.contract import StepContext, TrainableModel

CONDITIONINGS = ("concat", "embedding", "projection")
CONSTRAINTS = ("none", "clip", "gp")
CRITIC_NORMS = ("none", "layer", "batch")
BASE_SIZE = 4  # the generator starts from, and the critic ends at, a 4 x 4 feature map


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value  # type: ignore[return-value]


def _doublings(size: int) -> int:
    """How many factor-2 steps lie between the 4 x 4 base map and ``size`` x ``size``."""
    return int(math.log2(size // BASE_SIZE))


class ConvGenerator(nn.Module):
    r"""``G(z[, y])``: noise (and a label) to an image in ``[-1, 1]``, DCGAN-style.

    ``linear -> (width * 2^k) x 4 x 4 -> k x [ConvTranspose 4x4 stride 2 -> BatchNorm -> ReLU]
    -> conv 3x3 -> tanh``, halving the channels at each doubling of the side (:math:`k = \log_2(H/4)`).
    Batch norm and ReLU in the generator, tanh at the output, as Radford et al. (2016) recommend.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        z_dim: int = 32,
        width: int = 32,
        num_classes: int = 0,
        conditioning: str = "projection",
        full_res_layers: int = 0,
        label_factors: tuple[int, ...] | None = None,
    ):
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        self.z_dim, self.num_classes, self.conditioning = z_dim, num_classes, conditioning
        c, h, _ = self.image_shape
        k = _doublings(h)
        channels = [width * 2 ** (k - i) for i in range(k + 1)]  # e.g. 8x8: [128, 64]
        if num_classes and conditioning == "concat":
            self.embed, label_dim = None, num_classes  # one-hot, built in forward
        elif num_classes:
            self.embed, label_dim = label_embedding(num_classes, z_dim, label_factors), z_dim
        else:
            self.embed, label_dim = None, 0
        self.project = nn.Sequential(
            nn.Linear(z_dim + label_dim, channels[0] * BASE_SIZE * BASE_SIZE, bias=False),  # bias: batch norm has its own
            nn.Unflatten(1, (channels[0], BASE_SIZE, BASE_SIZE)),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(),
        )
        blocks = []
        for c_in, c_out in itertools.pairwise(channels):
            blocks += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        for _ in range(full_res_layers):  # optional 3x3 layers at full resolution, to draw sharper outlines
            blocks += [nn.Conv2d(channels[-1], channels[-1], 3, padding=1, bias=False), nn.BatchNorm2d(channels[-1]), nn.ReLU()]
        self.blocks = nn.Sequential(*blocks)
        # A 3x3 convolution at full resolution smooths the checkerboard that stride-2 transposed
        # convolutions leave (Odena et al., 2016, "Deconvolution and Checkerboard Artifacts").
        self.to_image = nn.Sequential(nn.Conv2d(channels[-1], c, 3, padding=1), nn.Tanh())

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        labels = check_labels(labels, z.shape[0], self.num_classes)
        if labels is not None:
            labels = labels.to(z.device)
            code = F.one_hot(labels, self.num_classes).to(z.dtype) if self.embed is None else self.embed(labels)
            z = torch.cat([z, code], dim=1)  # (N, z_dim + label_dim)
        return self.to_image(self.blocks(self.project(z)))  # (N, C, H, W)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "layer":
        # GroupNorm with one group = layer norm over (C, H, W) of each image on its own.
        return nn.GroupNorm(1, channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class ConvCritic(nn.Module):
    r"""``D(x[, y])``: an image (and a label) to one unbounded score (a logit, for :class:`DCGAN`).

    ``[concat label channels] -> conv 4x4 stride 2 -> LeakyReLU(0.2) -> (k - 1) x [conv 4x4 stride 2
    -> norm -> LeakyReLU(0.2)] -> conv 3x3 -> norm -> LeakyReLU(0.2) -> flatten -> linear -> LeakyReLU``
    is :math:`\phi(x)` (:math:`k = \log_2(H/4)`, the channels doubling from ``width`` at each layer);
    :math:`\psi` is a linear layer. Strided convolutions instead of pooling, LeakyReLU, no norm on
    the first layer, as in DCGAN.

    ``norm``: ``"batch"`` (DCGAN's choice), ``"layer"`` or ``"none"``. Batch norm must not be used
    with a gradient penalty: it makes each image's score depend on the others in its batch, while
    the penalty constrains the gradient of each score with respect to its own input only
    (Gulrajani et al., 2017, section 4, recommend layer norm). Layer norm, here ``GroupNorm(1, C)``,
    normalises each image on its own.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        width: int = 32,
        num_classes: int = 0,
        conditioning: str = "projection",
        norm: str = "layer",
        aux_classifier: bool = False,
        full_res_layers: int = 0,
        label_factors: tuple[int, ...] | None = None,
    ):
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        self.num_classes, self.conditioning = num_classes, conditioning
        _check_choice("norm", norm, CRITIC_NORMS)
        c, h, _ = self.image_shape
        k = _doublings(h)
        channels = [width * 2**i for i in range(k + 1)]  # e.g. 8x8: [32, 64]
        in_channels = c + (num_classes if num_classes and conditioning == "concat" else 0)
        bias = norm == "none"  # a norm layer subtracts the mean, which would cancel a bias (zero gradient)
        # The first layer downsamples at once: full-resolution layers cost the most on a CPU,
        # and no norm there, as in DCGAN.
        layers: list[nn.Module] = []
        for _ in range(full_res_layers):  # optional 3x3 layers at full resolution, where the outlines are
            layers += [nn.Conv2d(in_channels, channels[0], 3, padding=1), nn.LeakyReLU(0.2)]
            in_channels = channels[0]
        layers += [nn.Conv2d(in_channels, channels[0], 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for c_in, c_out in itertools.pairwise(channels[:-1]):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=bias), _norm(norm, c_out), nn.LeakyReLU(0.2)]
        # One more convolution at 4 x 4 gives depth where it is cheap.
        layers += [nn.Conv2d(channels[-2], channels[-1], 3, padding=1, bias=bias), _norm(norm, channels[-1]), nn.LeakyReLU(0.2)]
        features = channels[-1]
        layers += [nn.Flatten(), nn.Linear(channels[-1] * BASE_SIZE * BASE_SIZE, features), nn.LeakyReLU(0.2)]
        self.phi = nn.Sequential(*layers)
        self.embed = label_embedding(num_classes, features, label_factors) if num_classes and conditioning in ("embedding", "projection") else None
        if num_classes and conditioning == "embedding":
            # The label's embedding joins phi(x) before a hidden layer, so it can interact with x.
            self.joint = nn.Sequential(nn.Linear(2 * features, features), nn.LeakyReLU(0.2))
        else:
            self.joint = None
        self.psi = nn.Linear(features, 1)
        # AC-GAN's auxiliary classifier (Odena et al., 2017): class logits read from phi(x).
        self.classify = nn.Linear(features, num_classes) if num_classes and aux_classifier else None

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.score_and_logits(x, labels)[0]

    def score_and_logits(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The score ``D(x, y)`` ``(N,)`` and the auxiliary classifier's logits ``(N, K)`` (``None`` without one), from one pass."""
        check_images(x, name="critic input", value_range=None, channels=self.image_shape[0], size=self.image_shape[1:])
        labels = check_labels(labels, x.shape[0], self.num_classes)
        if labels is not None:
            labels = labels.to(x.device)
        if labels is not None and self.conditioning == "concat":
            onehot = F.one_hot(labels, self.num_classes).to(x.dtype)  # (N, K)
            x = torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)  # (N, C + K, H, W)
        h = phi = self.phi(x)  # (N, features)
        if labels is not None and self.conditioning == "embedding":
            h = self.joint(torch.cat([h, self.embed(labels)], dim=1))
        score = self.psi(h)[:, 0]  # (N,)
        if labels is not None and self.conditioning == "projection":
            score = score + (self.embed(labels) * h).sum(dim=1)  # + <e(y), phi(x)>
        return score, (self.classify(phi) if self.classify is not None else None)  # from phi(x), which has not seen y


class _ConvGAN(TrainableModel):
    """Shared by :class:`DCGAN` and :class:`WGAN`: the two networks, the noise and the sampler."""

    def __init__(
        self,
        image_shape,
        z_dim: int,
        g_width: int,
        d_width: int,
        num_classes: int,
        conditioning: str,
        critic_norm: str,
        aux_classifier: bool = False,
        full_res_layers: tuple[int, int] = (0, 0),
        label_factors: tuple[int, ...] | None = None,
    ):
        super().__init__()
        image_shape = check_image_shape(image_shape)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0 (0: unconditional), got {num_classes!r}")
        for name, value in (("z_dim", z_dim), ("g_width", g_width), ("d_width", d_width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        _check_choice("conditioning", conditioning, CONDITIONINGS)
        label_factors = check_label_factors(label_factors, num_classes)
        if label_factors is not None and conditioning == "concat":
            raise ValueError(
                "label_factors cannot be used with conditioning='concat', which feeds the label one-hot, not through an embedding; "
                "use 'projection' or 'embedding'"
            )
        self.generator = ConvGenerator(image_shape, z_dim, g_width, num_classes, conditioning, full_res_layers[0], label_factors)
        self.critic = ConvCritic(image_shape, d_width, num_classes, conditioning, critic_norm, aux_classifier, full_res_layers[1], label_factors)
        # The settings both models share; each subclass adds its own (they rebuild the model in load_run).
        self.hparams = dict(
            image_shape=list(image_shape),
            z_dim=z_dim,
            g_width=g_width,
            d_width=d_width,
            num_classes=num_classes,
            conditioning=conditioning,
            critic_norm=critic_norm,
        )

    @property
    def num_classes(self) -> int:
        return self.generator.num_classes

    def _noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        device = next(self.parameters()).device
        z_dim = self.generator.z_dim
        return torch.randn(n, z_dim, generator=generator).to(device) if generator is not None else torch.randn(n, z_dim, device=device)

    @torch.no_grad()
    def sample(self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None, best_of: int = 1) -> Tensor:
        r"""``n`` images ``n x C x H x W`` in ``[0, 1]``; a conditional model draws ``labels``
        (default ``arange(n) % num_classes``: every class in turn, one class per column of a grid
        ``num_classes`` wide).

        ``best_of = k > 1`` (a critic with an auxiliary classifier :math:`C`, ``aux_weight > 0``):
        draw :math:`k` candidates for each image and keep the one whose label the critic's own
        classifier finds most likely, :math:`\arg\max_i \log \mathrm{softmax}(C(\phi(x_i)))_y`.
        A rejection step by the model's own critic, in the spirit of discriminator rejection
        sampling (Azadi et al., 2019, arXiv:1810.06758): it buys fidelity to the label with
        diversity and :math:`k` times the sampling time, as a guidance scale does for diffusion.
        """
        if labels is None and self.num_classes:
            labels = torch.arange(n) % self.num_classes
        labels = check_labels(labels, n, self.num_classes)
        if isinstance(best_of, bool) or not isinstance(best_of, int) or best_of < 1:
            raise ValueError(f"best_of must be an integer >= 1 (1: no selection), got {best_of!r}")
        if best_of > 1 and getattr(self.critic, "classify", None) is None:
            raise ValueError("best_of > 1 ranks candidates with the critic's auxiliary classifier: train the model with aux_weight > 0")
        best = self.generator(self._noise(n, generator), labels)
        if best_of > 1:
            target = labels.to(best.device)[:, None]

            def label_log_prob(x: Tensor) -> Tensor:
                return self.critic.score_and_logits(x, labels)[1].log_softmax(1).gather(1, target)[:, 0]  # (n,)

            best_score = label_log_prob(best)
            for _ in range(best_of - 1):
                candidate = self.generator(self._noise(n, generator), labels)
                score = label_log_prob(candidate)
                better = score > best_score
                best = torch.where(better[:, None, None, None], candidate, best)
                best_score = torch.where(better, score, best_score)
        return to_unit_range(best)

    def _batch(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Real images in ``[-1, 1]`` and the extra critic/generator arguments (the labels, if any)."""
        x, y = batch
        return to_model_range(x), ((y,) if self.num_classes else ())


class DCGAN(_ConvGAN):
    r"""The non-saturating GAN (Goodfellow et al., 2014) with DCGAN networks (Radford et al., 2016).

    One discriminator step, then one generator step, per training step:

    .. math::
        \min_D\; \mathrm{BCE}(D(x), 1) + \mathrm{BCE}(D(G(z)), 0)
        = -\mathbb{E}[\log\sigma(D(x))] - \mathbb{E}[\log(1 - \sigma(D(G(z))))],
        \qquad \min_G\; -\mathbb{E}[\log\sigma(D(G(z)))]

    (:func:`~aigc_lab.losses.nonsaturating_discriminator_loss`,
    :func:`~aigc_lab.losses.nonsaturating_generator_loss`); with labels, :math:`D(x, y)` and
    :math:`G(z, y)`. Adam with ``lr=2e-4, betas=(0.5, 0.999)`` as in the DCGAN paper.

    Logged: ``discriminator`` and ``generator`` losses, ``real_prob`` :math:`\mathbb{E}[\sigma(D(x))]`
    and ``fake_prob`` :math:`\mathbb{E}[\sigma(D(G(z)))]` (both near 0.5 when neither network wins).

    Recommended: :data:`RECOMMENDED_STEPS` steps at batch size 64 on the digits.
    """

    name = "dcgan"
    RECOMMENDED_STEPS = 3000
    default_steps = RECOMMENDED_STEPS  # what `python -m aigc_lab train dcgan` runs; ~100 CPU seconds on the digits

    def __init__(
        self,
        image_shape=(1, 8, 8),
        z_dim: int = 32,
        g_width: int = 32,
        d_width: int = 32,
        num_classes: int = 0,
        conditioning: str = "projection",
        critic_norm: str = "batch",
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
    ):
        super().__init__(image_shape, z_dim, g_width, d_width, num_classes, conditioning, critic_norm)
        self.hparams.update(lr=lr, betas=list(betas))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr, betas = self.hparams["lr"], tuple(self.hparams["betas"])
        return {
            "discriminator": torch.optim.Adam(self.critic.parameters(), lr=lr, betas=betas),
            "generator": torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas),
        }

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        x, extra = self._batch(batch)
        fake = self.generator(self._noise(x.shape[0]), *extra)
        real_logits, fake_logits = self.critic(x, *extra), self.critic(fake.detach(), *extra)
        d_loss = nonsaturating_discriminator_loss(real_logits, fake_logits)
        ctx.optimize("discriminator", d_loss)
        g_loss = nonsaturating_generator_loss(self.critic(fake, *extra))  # the updated D judges the same fakes
        ctx.optimize("generator", g_loss)
        return {
            "discriminator": d_loss.detach(),
            "generator": g_loss.detach(),
            "real_prob": torch.sigmoid(real_logits.detach()).mean(),
            "fake_prob": torch.sigmoid(fake_logits.detach()).mean(),
        }


# Defaults of WGAN that depend on the constraint: optimizer, learning rate, betas, critic norm.
WGAN_DEFAULTS: dict[str, dict[str, object]] = {
    # Gulrajani et al. use Adam(1e-4, betas=(0, 0.9)); 2e-4 and beta1 0.5 learn faster in a few CPU minutes.
    # n_critic 2 instead of their 5: a lower Frechet distance for the same CPU time on the digits.
    # No norm layer: on the digits it beat layer norm (Frechet distance 16.3 vs 18.5 after 2000 steps).
    "gp": dict(optimizer="adam", lr=2e-4, betas=(0.5, 0.9), critic_norm="none", n_critic=2),
    # Arjovsky et al.: RMSprop (momentum-based optimizers were unstable with clipping), lr 5e-5, c = 0.01.
    "clip": dict(optimizer="rmsprop", lr=5e-5, betas=(0.5, 0.9), critic_norm="none", n_critic=5),
    # Everything as in "gp", without the penalty: the one difference is the constraint.
    "none": dict(optimizer="adam", lr=2e-4, betas=(0.5, 0.9), critic_norm="none", n_critic=5),
}


class WGAN(_ConvGAN):
    r"""The source's objective :math:`L = \mathbb{E}[D(x)] - \mathbb{E}[D(G(z))]` with a chosen Lipschitz ``constraint``.

    ``n_critic`` critic steps (fresh noise, the same real batch) per generator step; the papers use 5,
    the default for ``"gp"`` is 2: on the digits it reached a lower Frechet distance for the same CPU
    time (2000 steps with 2: 18.5 in 166 CPU seconds; 1500 steps with 5: 20.2 in 265 CPU seconds).

    .. math::
        \min_D\; -L \;[+\, \lambda\,\mathbb{E}[(\lVert\nabla_{\hat x} D(\hat x)\rVert_2 - 1)^2] \text{ for "gp"}],
        \qquad \min_G\; -\mathbb{E}[D(G(z))],

    and, for ``"clip"``, every critic parameter clamped to ``[-clip_value, clip_value]`` after each
    critic step. With labels it is the source's :math:`L_{cGAN} = \mathbb{E}[D(x, y)] - \mathbb{E}[D(G(z, y), y)]`.

    ``constraint``:

    * ``"none"``: the objective alone. Nothing stops the critic from scaling its scores up, so
      :math:`L` grows without bound (logged ``wasserstein`` and ``critic_scale`` show it) and the
      generator gets ever larger, meaningless gradients.
    * ``"clip"``: weight clipping (Arjovsky et al., 2017); RMSprop ``lr=5e-5``, ``clip_value=0.01``
      as in the paper, and no normalisation in the critic (clipping the gains of a norm layer
      would only shrink its output).
    * ``"gp"``: the gradient penalty with ``gp_weight`` :math:`\lambda = 10` (Gulrajani et al.,
      2017), Adam, no norm layer in the critic (``"layer"`` works too, slightly worse on the digits;
      never batch norm: see :class:`ConvCritic`).

    ``n_critic``, ``optimizer``, ``lr``, ``betas`` and ``critic_norm`` left as ``None`` take the constraint's
    defaults in :data:`WGAN_DEFAULTS`; the values used are stored in ``hparams``.

    Options that help the critic of a conditional GAN learn what tells the classes apart (chapter 4
    uses them on ``shapes``, where the outline decides the class; each is stored in ``hparams``
    only when used, so older runs load unchanged):

    * ``aux_weight`` :math:`\alpha > 0`: the auxiliary classifier of AC-GAN (Odena et al., 2017,
      "Conditional Image Synthesis with Auxiliary Classifier GANs", arXiv:1610.09585), a linear
      head :math:`C` on :math:`\phi(x)` (before the label enters). The critic minimises
      :math:`-L_{cGAN} + \lambda\,\mathrm{GP} + \alpha\,\mathrm{CE}(C(\phi(x)), y)` on real images,
      the generator :math:`-\mathbb{E}[D(G(z, y), y)] + \alpha\,\mathrm{CE}(C(\phi(G(z, y))), y)`.
      Logged as ``aux_real`` and ``aux_fake``. Not with ``conditioning="concat"``, whose critic
      reads the label from its input.
    * ``critic_lr``: the critic's own learning rate (default ``lr``); a larger one is the two
      time-scale update rule of Heusel et al. (2017, arXiv:1706.08500).
    * ``g_full_res``, ``d_full_res``: extra 3x3 layers at full resolution in the generator and in
      the critic (which otherwise halves the image in its first layer).
    * ``label_factors``: when the classes are all combinations of attributes (``shapes``: 5 shapes
      x 6 colours, ``(5, 6)``), both networks embed a label as the sum of one embedding per
      attribute (:class:`aigc_lab.models.conditioning.FactorisedEmbedding`), so the generator
      learns "triangle" from the triangles of every colour. Not with ``conditioning="concat"``.

    Logged: ``wasserstein`` (the critic's estimate :math:`\mathbb{E}[D(x)] - \mathbb{E}[D(G(z))]`,
    as in :class:`aigc_lab.models.mlp.WGANGP`), ``critic`` (its whole loss), ``generator``,
    ``gradient_penalty`` (``"gp"`` only) and ``critic_scale`` :math:`\mathbb{E}|D(x)|`, the size of
    the critic's outputs, which only a constraint keeps bounded.

    Recommended: :data:`RECOMMENDED_STEPS` (per constraint) steps at batch size 64 on the digits.
    """

    name = "wgan"
    RECOMMENDED_STEPS: ClassVar[dict[str, int]] = {"gp": 2000, "clip": 3000, "none": 300}
    default_steps = RECOMMENDED_STEPS["gp"]  # each instance sets its constraint's (see __init__)

    def __init__(
        self,
        image_shape=(1, 8, 8),
        z_dim: int = 32,
        g_width: int = 32,
        d_width: int = 32,
        num_classes: int = 0,
        conditioning: str = "projection",
        constraint: str = "gp",
        n_critic: int | None = None,
        gp_weight: float = 10.0,
        clip_value: float = 0.01,
        optimizer: str | None = None,
        lr: float | None = None,
        betas: tuple[float, float] | None = None,
        critic_norm: str | None = None,
        aux_weight: float = 0.0,
        g_full_res: int = 0,
        d_full_res: int = 0,
        critic_lr: float | None = None,
        label_factors: tuple[int, ...] | list[int] | None = None,
    ):
        _check_choice("constraint", constraint, CONSTRAINTS)
        defaults = WGAN_DEFAULTS[constraint]
        optimizer = defaults["optimizer"] if optimizer is None else optimizer
        lr = defaults["lr"] if lr is None else lr
        betas = defaults["betas"] if betas is None else betas
        critic_norm = defaults["critic_norm"] if critic_norm is None else critic_norm
        n_critic = defaults["n_critic"] if n_critic is None else n_critic
        _check_choice("optimizer", optimizer, ("adam", "rmsprop"))
        _check_choice("critic_norm", critic_norm, CRITIC_NORMS)
        if constraint == "gp" and critic_norm == "batch":
            raise ValueError(
                "critic_norm='batch' cannot be used with constraint='gp': batch norm mixes the images of a batch, "
                "and the gradient penalty assumes each score depends on its own image only; use 'layer' or 'none'"
            )
        if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
            raise ValueError(f"n_critic must be an integer >= 1, got {n_critic!r}")
        if not clip_value > 0:
            raise ValueError(f"clip_value must be > 0, got {clip_value!r}")
        if not gp_weight >= 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight!r}")
        if not (isinstance(aux_weight, (int, float)) and not isinstance(aux_weight, bool) and aux_weight >= 0):
            raise ValueError(f"aux_weight must be a number >= 0 (0: no auxiliary classifier), got {aux_weight!r}")
        for name, value in (("g_full_res", g_full_res), ("d_full_res", d_full_res)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (extra 3x3 layers at full resolution), got {value!r}")
        if critic_lr is not None and not (isinstance(critic_lr, (int, float)) and not isinstance(critic_lr, bool) and critic_lr > 0):
            raise ValueError(f"critic_lr must be a positive number or None (None: the same as lr), got {critic_lr!r}")
        if aux_weight and not num_classes:
            raise ValueError("aux_weight > 0 needs labels to classify: set num_classes (the auxiliary classifier is for conditional GANs)")
        if aux_weight and conditioning == "concat":
            raise ValueError(
                "aux_weight > 0 cannot be used with conditioning='concat': the critic sees the label as input channels, "
                "so its classifier could read the label instead of the image; use 'projection' or 'embedding'"
            )
        super().__init__(
            image_shape, z_dim, g_width, d_width, num_classes, conditioning, critic_norm, aux_weight > 0, (g_full_res, d_full_res), label_factors
        )
        self.default_steps = self.RECOMMENDED_STEPS[constraint]
        self.hparams.update(
            constraint=constraint, n_critic=n_critic, gp_weight=gp_weight, clip_value=clip_value, optimizer=optimizer, lr=lr, betas=list(betas)
        )
        # Stored only when used, so runs saved before these options existed still load and resume.
        if aux_weight:
            self.hparams["aux_weight"] = float(aux_weight)
        if g_full_res:
            self.hparams["g_full_res"] = g_full_res
        if d_full_res:
            self.hparams["d_full_res"] = d_full_res
        if critic_lr is not None:
            self.hparams["critic_lr"] = float(critic_lr)
        if label_factors is not None:
            self.hparams["label_factors"] = list(label_factors)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr, betas = self.hparams["lr"], tuple(self.hparams["betas"])

        def make(parameters, lr: float) -> torch.optim.Optimizer:
            if self.hparams["optimizer"] == "rmsprop":
                return torch.optim.RMSprop(parameters, lr=lr)
            return torch.optim.Adam(parameters, lr=lr, betas=betas)

        critic_lr = self.hparams.get("critic_lr", lr)
        return {"critic": make(self.critic.parameters(), critic_lr), "generator": make(self.generator.parameters(), lr)}

    @torch.no_grad()
    def clip_critic(self) -> None:
        """Clamp every critic parameter to ``[-clip_value, clip_value]`` (Arjovsky et al., 2017, Algorithm 1)."""
        c = self.hparams["clip_value"]
        for p in self.critic.parameters():
            p.clamp_(-c, c)

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        x, extra = self._batch(batch)
        constraint = self.hparams["constraint"]
        aux_weight = self.hparams.get("aux_weight", 0.0)
        metrics: dict[str, Tensor] = {}
        for _ in range(self.hparams["n_critic"]):
            with torch.no_grad():
                fake = self.generator(self._noise(x.shape[0]), *extra)
            real_scores, real_logits = self.critic.score_and_logits(x, *extra)
            distance = -wgan_critic_loss(real_scores, self.critic(fake, *extra))  # L = E[D(x)] - E[D(G(z))]
            loss = -distance
            if aux_weight:  # AC-GAN: the critic also learns to name the class of real images
                aux_real = F.cross_entropy(real_logits, extra[0])
                loss = loss + aux_weight * aux_real
                metrics["aux_real"] = aux_real.detach()
            if constraint == "gp":
                penalty = gradient_penalty(self.critic, x, fake, *extra)
                loss = loss + self.hparams["gp_weight"] * penalty
                metrics["gradient_penalty"] = penalty.detach()
            ctx.optimize("critic", loss)
            if constraint == "clip":
                self.clip_critic()
        fake_scores, fake_logits = self.critic.score_and_logits(self.generator(self._noise(x.shape[0]), *extra), *extra)
        g_loss = wgan_generator_loss(fake_scores)
        if aux_weight:  # ... and the generator to draw images it names as the asked-for class
            aux_fake = F.cross_entropy(fake_logits, extra[0])
            g_loss = g_loss + aux_weight * aux_fake
            metrics["aux_fake"] = aux_fake.detach()
        ctx.optimize("generator", g_loss)
        metrics.update(
            wasserstein=distance.detach(),
            critic=loss.detach(),
            generator=g_loss.detach(),
            critic_scale=real_scores.detach().abs().mean(),
        )
        return metrics
