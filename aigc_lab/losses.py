r"""The losses the book teaches, each beside the formula it computes.

The source article's objective (its section 3) is the Wasserstein GAN value

.. math::

    L = \mathbb{E}_{x \sim p_{data}}[D(x)] - \mathbb{E}_{z \sim p_z}[D(G(z))],

which the critic :math:`D` maximises and the generator :math:`G` minimises
(Arjovsky et al., 2017, "Wasserstein GAN", arXiv:1701.07875). The source calls :math:`D` a
"data generator"; it is the critic (discriminator). And the objective alone is not enough:
:math:`L` only estimates a distance when :math:`D` is 1-Lipschitz, which the gradient penalty
of Gulrajani et al. (2017, "Improved Training of Wasserstein GANs", arXiv:1704.00028)
enforces softly.

Every function here returns a scalar to *minimise*, so the critic's loss is :math:`-L`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor


def _check_scores(scores: Tensor, name: str) -> Tensor:
    if not isinstance(scores, Tensor) or not scores.is_floating_point():
        raise ValueError(f"{name} must be a float tensor of critic scores, got {type(scores).__name__}")
    if scores.dim() == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if scores.dim() != 1:
        raise ValueError(f"{name} must have shape (N,) or (N, 1), got {tuple(scores.shape)}")
    return scores


def wgan_critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    r"""The critic's loss, :math:`-L = \mathbb{E}[D(G(z))] - \mathbb{E}[D(x)]`.

    Minimising it pushes the scores of real images up and of generated images down.
    """
    real_scores = _check_scores(real_scores, "real_scores")
    fake_scores = _check_scores(fake_scores, "fake_scores")
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: Tensor) -> Tensor:
    r"""The generator's loss, :math:`-\mathbb{E}[D(G(z))]`.

    This is :math:`L` without its first term, which does not depend on :math:`G`.
    """
    return -_check_scores(fake_scores, "fake_scores").mean()


def gradient_penalty(
    critic: Callable[..., Tensor],
    real: Tensor,
    fake: Tensor,
    *args: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The WGAN-GP penalty :math:`\mathbb{E}_{\hat x}[(\lVert \nabla_{\hat x} D(\hat x) \rVert_2 - 1)^2]`.

    :math:`\hat x = \epsilon x + (1 - \epsilon) \tilde x` with :math:`\epsilon \sim U[0, 1]`
    drawn per example, on the straight lines between real images :math:`x` and generated ones
    :math:`\tilde x` (Gulrajani et al., 2017, eq. 3). Extra ``args`` (e.g. labels) are passed
    to the critic unchanged. Multiply by :math:`\lambda` (10 in the paper) and add to the
    critic's loss.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, generator=generator, device="cpu" if generator is not None else real.device)
    eps = eps.to(device=real.device, dtype=real.dtype)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(mixed, *args)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def nonsaturating_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""The GAN discriminator's binary cross-entropy, real labelled 1 and generated 0.

    .. math::
        -\mathbb{E}[\log \sigma(D(x))] - \mathbb{E}[\log(1 - \sigma(D(G(z))))]
        = \mathbb{E}[\operatorname{softplus}(-D(x))] + \mathbb{E}[\operatorname{softplus}(D(G(z)))],

    with :math:`D` returning logits and :math:`\sigma` the logistic sigmoid (Goodfellow et al.,
    2014, "Generative Adversarial Nets", arXiv:1406.2661). The softplus form,
    :math:`\operatorname{softplus}(t) = \log(1 + e^t)`, is the same value computed without
    overflow: :math:`-\log\sigma(t) = \operatorname{softplus}(-t)` and
    :math:`-\log(1 - \sigma(t)) = \operatorname{softplus}(t)`.
    """
    real_logits = _check_scores(real_logits, "real_logits")
    fake_logits = _check_scores(fake_logits, "fake_logits")
    return torch.nn.functional.softplus(-real_logits).mean() + torch.nn.functional.softplus(fake_logits).mean()


def nonsaturating_generator_loss(fake_logits: Tensor) -> Tensor:
    r"""The generator's non-saturating loss, :math:`-\mathbb{E}[\log \sigma(D(G(z)))] = \mathbb{E}[\operatorname{softplus}(-D(G(z)))]`.

    The minimax game would have the generator minimise :math:`\mathbb{E}[\log(1 - \sigma(D(G(z))))]`,
    whose gradient vanishes when the discriminator confidently rejects the fakes, that is early in
    training. Goodfellow et al. (2014) proposed maximising :math:`\log \sigma(D(G(z)))` instead:
    the same fixed point, strong gradients when the generator is bad. DCGAN (Radford et al., 2016)
    trains with it.
    """
    return torch.nn.functional.softplus(-_check_scores(fake_logits, "fake_logits")).mean()


# ---------------------------------------------------------------- likelihood units


def bits_per_dim(nll_nats_per_image: float, dims: int) -> float:
    r"""Convert a negative log-likelihood in nats per image to bits per dimension.

    :math:`\mathrm{bpd} = \frac{\mathrm{NLL}}{D \ln 2}`, with :math:`D` = ``dims``, the number of
    values per image (``C * H * W``; 64 for digits). Bits per dimension compare across image
    sizes; nats per image are what the digits literature reports (e.g. Tomczak, *Deep
    Generative Modeling*, 2022).
    """
    _check_dims(dims)
    return float(nll_nats_per_image) / (dims * math.log(2))


def nats_per_image(bpd: float, dims: int) -> float:
    r"""The inverse of :func:`bits_per_dim`: :math:`\mathrm{NLL} = \mathrm{bpd} \cdot D \ln 2`."""
    _check_dims(dims)
    return float(bpd) * dims * math.log(2)


def _check_dims(dims: int) -> None:
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise ValueError(f"dims must be a positive integer (C * H * W), got {dims!r}")
