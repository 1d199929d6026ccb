r"""The two baselines every table of chapter 3 starts with: Gaussians fitted to the pixels.

A generative model that cannot beat these has learned nothing a mean and a covariance could
not hold, so it is not a result.

* :class:`GaussianBaseline`: one Gaussian :math:`\mathcal{N}(x; \mu, \Sigma)` over all training
  images, flattened to :math:`D = C H W` values, fitted by maximum likelihood
  (:math:`\mu = \frac{1}{N}\sum_n x_n`, :math:`\Sigma = \frac{1}{N}\sum_n (x_n-\mu)(x_n-\mu)^\top`).
* :class:`ClassGaussianMixture`: :math:`p(x) = \sum_k \pi_k \mathcal{N}(x; \mu_k, \Sigma_k)`, one
  Gaussian per class fitted to that class's images, mixed with the class frequencies
  :math:`\pi_k`. It can also draw a chosen class: a conditional baseline for chapter 4.

Sampling uses the full covariance matrices, plus a small ``ridge`` :math:`\epsilon I` because
pixels that never change (the digits' corners) make :math:`\Sigma` singular:
:math:`x = \mu + L z`, :math:`L L^\top = \Sigma + \epsilon I`, :math:`z \sim \mathcal{N}(0, I)`,
clamped to :math:`[0, 1]`. Every pairwise pixel correlation is kept, so the baseline is as
strong as a Gaussian can be.

Likelihood needs a probability mass for discrete images (17 gray levels for digits), not a
density: a density can grow without bound on discrete data. A full-covariance Gaussian cannot be
turned into a mass per image in closed form (the mass of a 64-dimensional box has no closed form),
so :meth:`~GaussianBaseline.nll_nats` discretizes one pixel at a time (as PixelCNN++ does,
Salimans et al., 2017): in gray-level units :math:`u = x \cdot (\text{levels} - 1)`, level
:math:`k` of a pixel with Gaussian mean :math:`m` and standard deviation :math:`s` gets

.. math::
    P(k) = \Phi\left(\frac{k + \tfrac12 - m}{s}\right) - \Phi\left(\frac{k - \tfrac12 - m}{s}\right),

with the lowest bin open to :math:`-\infty` and the highest to :math:`+\infty`, so the masses
of one pixel sum to 1. Two ways to choose :math:`m` and :math:`s`:

* ``covariance="full"`` (the default): the chain rule of the full-covariance Gaussian,
  :math:`p(x) = \prod_d p(x_d \mid x_{<d})` in raster order. Each conditional is Gaussian with
  a mean linear in the earlier pixels and standard deviation :math:`L_{dd}` (:math:`L` the
  Cholesky factor of :math:`\Sigma + \epsilon I`), and is discretized as above given the
  observed earlier levels. The result is an exact probability mass over all images (an
  autoregressive model with linear-Gaussian conditionals); it is not the mass the Gaussian puts
  on each image's box, but it uses every correlation the samples use.
* ``covariance="diagonal"``: each pixel on its own, :math:`m = \mu_d`,
  :math:`s^2 = \Sigma_{dd} + \epsilon`, :math:`\log p(x) = \sum_d \log P(x_d)`: the simplest
  discrete Gaussian, and a much weaker one.

The default ``ridge`` of each class is the value of
:math:`\{10^{-4}, 3\cdot10^{-4}, \dots, 3\cdot10^{-2}\}` with the best full-covariance NLL on
the digits *val* split (never on the test split, where the book reports NLL and Frechet distance):
:math:`10^{-3}` for the single Gaussian, :math:`10^{-2}` for the class mixture, whose Gaussians
are fitted to about 100 images each and need more regularising.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from aigc_lab.images import check_images


class _PixelGaussians:
    """Shared machinery: K full-covariance Gaussians over flattened images, with weights.

    ``ridge`` is added to every covariance's diagonal (in ``[0, 1]`` units squared; default
    the subclass's ``DEFAULT_RIDGE``); ``levels`` is the number of gray levels :meth:`nll_nats` expects.
    """

    DEFAULT_RIDGE: float

    def __init__(self, *, ridge: float | None = None, levels: int = 17) -> None:
        ridge = self.DEFAULT_RIDGE if ridge is None else ridge
        if not ridge > 0:
            raise ValueError(f"ridge must be > 0 (it keeps the covariance invertible), got {ridge!r}")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
        self.ridge, self.levels = float(ridge), levels
        self.image_shape: tuple[int, int, int] | None = None
        self.means = self.covariances = self.cholesky = self.weights = None

    def _fit_groups(self, images: Tensor, groups: list[Tensor]) -> None:
        """Fit one Gaussian to each group of flattened images (float64 ``n_k x D``)."""
        self.image_shape = tuple(images.shape[1:])
        dims = groups[0].shape[1]
        self.means = torch.stack([x.mean(0) for x in groups])  # (K, D)
        self.covariances = torch.stack([torch.cov(x.T, correction=0).reshape(dims, dims) for x in groups])  # (K, D, D)
        eye = torch.eye(dims, dtype=torch.float64)
        self.cholesky = torch.linalg.cholesky(self.covariances + self.ridge * eye)  # (K, D, D)
        counts = torch.tensor([len(x) for x in groups], dtype=torch.float64)
        self.weights = counts / counts.sum()  # (K,)

    def _check_fitted(self) -> None:
        if self.means is None:
            raise ValueError(f"{type(self).__name__} is not fitted yet; call fit(images, labels) first")

    def _draw(self, components: Tensor, generator: torch.Generator | None) -> Tensor:
        """One sample of each listed component, as ``[0, 1]`` images: ``x = mu + L z``, clamped."""
        z = torch.randn(len(components), self.means.shape[1], dtype=torch.float64, generator=generator)
        x = torch.empty_like(z)
        # One matrix product per component, not self.cholesky[components]: that gather copies a
        # D x D factor per sample (75 MB at 3 x 32 x 32, so 37 GB for 500 samples).
        for k in components.unique().tolist():
            chosen = components == k
            x[chosen] = self.means[k] + z[chosen] @ self.cholesky[k].T
        return x.clamp(0, 1).float().reshape(len(components), *self.image_shape)

    def log_likelihood(self, images_as_levels: Tensor, *, covariance: str = "full") -> Tensor:
        r""":math:`\log p(x)` in nats of each image, float64 ``(N,)``.

        ``images_as_levels`` are integer gray levels ``N x C x H x W`` in ``[0, levels - 1]``
        (``ImageDataset.to_levels()``). ``covariance`` is ``"full"`` (the chain rule of the
        full-covariance Gaussian) or ``"diagonal"`` (independent pixels); see the module
        docstring. With several components,
        :math:`\log p(x) = \operatorname{logsumexp}_k(\log \pi_k + \log p_k(x))`.
        """
        self._check_fitted()
        if covariance not in ("diagonal", "full"):
            raise ValueError(f"covariance must be 'diagonal' or 'full', got {covariance!r}")
        u = self._check_levels(images_as_levels).flatten(1).double()  # (N, D) in level units
        scale = self.levels - 1
        per_component = []
        for mean, cov, chol in zip(self.means * scale, self.covariances * scale**2, self.cholesky * scale):
            if covariance == "diagonal":
                m = mean.expand_as(u)
                s = (cov.diagonal() + self.ridge * scale**2).sqrt().expand_as(u)
            else:
                # x = mean + L z: z_d depends on x_{<=d} only, and x_d = m_d + L_dd z_d with m_d fixed by x_{<d}.
                z = torch.linalg.solve_triangular(chol, (u - mean).T, upper=False).T  # (N, D)
                s = chol.diagonal().expand_as(u)
                m = u - s * z
            per_component.append(_log_bin_mass(u, m, s, self.levels).sum(dim=1))  # (N,)
        log_joint = torch.stack(per_component, dim=1) + self.weights.log()  # (N, K)
        return torch.logsumexp(log_joint, dim=1)

    def nll_nats(self, images_as_levels: Tensor, *, covariance: str = "full") -> float:
        r"""Mean negative log-likelihood in nats per image, :math:`-\frac{1}{N}\sum_n \log p(x_n)`.

        See :meth:`log_likelihood`; :func:`aigc_lab.metrics.bits_per_dim` converts it.
        """
        return float(-self.log_likelihood(images_as_levels, covariance=covariance).mean())

    def _check_levels(self, levels: Tensor) -> Tensor:
        if not isinstance(levels, Tensor) or levels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            got = levels.dtype if isinstance(levels, Tensor) else type(levels).__name__
            raise ValueError(
                f"images_as_levels must be an integer tensor of gray levels (use ImageDataset.to_levels()), got {got}"
            )
        if levels.dim() != 4 or tuple(levels.shape[1:]) != self.image_shape:
            want = " x ".join(map(str, self.image_shape))
            raise ValueError(f"images_as_levels must have shape N x {want}, got {tuple(levels.shape)}")
        if levels.numel() and (int(levels.min()) < 0 or int(levels.max()) > self.levels - 1):
            raise ValueError(
                f"images_as_levels must lie in [0, {self.levels - 1}] ({self.levels} levels), "
                f"got values in [{int(levels.min())}, {int(levels.max())}]"
            )
        return levels


def _log_bin_mass(u: Tensor, m: Tensor, s: Tensor, levels: int) -> Tensor:
    r""":math:`\log[\Phi(b) - \Phi(a)]` for the bin of integer level ``u`` under :math:`\mathcal{N}(m, s^2)`.

    ``a = (u - 1/2 - m) / s`` (:math:`-\infty` for level 0), ``b = (u + 1/2 - m) / s``
    (:math:`+\infty` for the top level). Computed as
    :math:`\log\Phi(b) + \log(1 - e^{\log\Phi(a) - \log\Phi(b)})` on the side of the mean where
    :math:`\Phi` is small (bins above the mean are mirrored, :math:`\Phi(b)-\Phi(a) = \Phi(-a)-\Phi(-b)`),
    so a bin many standard deviations out keeps an accurate, finite log-mass instead of
    :math:`\log 0`.
    """
    inf = torch.tensor(math.inf, dtype=u.dtype)
    a = torch.where(u > 0, (u - 0.5 - m) / s, -inf)
    b = torch.where(u < levels - 1, (u + 0.5 - m) / s, inf)
    mirror = a > 0
    low, high = torch.where(mirror, -b, a), torch.where(mirror, -a, b)
    log_high, log_low = torch.special.log_ndtr(high), torch.special.log_ndtr(low)
    return log_high + _log1mexp(log_low - log_high)


def _log1mexp(x: Tensor) -> Tensor:
    """:math:`\\log(1 - e^x)` for :math:`x \\le 0`, accurate at both ends (Maechler, 2012)."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _flatten(images: Tensor) -> Tensor:
    check_images(images)
    if len(images) < 2:
        raise ValueError(f"fitting a Gaussian needs at least 2 images, got {len(images)}")
    return images.flatten(1).double()


class GaussianBaseline(_PixelGaussians):
    r"""One Gaussian :math:`\mathcal{N}(\mu, \Sigma)` over all training images (see the module docstring).

    Example::

        train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
        baseline = GaussianBaseline().fit(train.images)
        samples = baseline.sample(1000, generator=torch.Generator().manual_seed(0))
        baseline.nll_nats(test.to_levels())

    Args:
        ridge: added to the covariance's diagonal, in ``[0, 1]`` units squared (default
            ``1e-3``, chosen on the digits val split).
        levels: gray levels of the images :meth:`nll_nats` takes (17 for digits).
    """

    DEFAULT_RIDGE = 1e-3

    def fit(self, images: Tensor, labels: Tensor | None = None) -> GaussianBaseline:
        """Fit :math:`\\mu` and :math:`\\Sigma` (maximum likelihood) to ``N x C x H x W`` images in ``[0, 1]``.

        ``labels`` are accepted, for the same call as :class:`ClassGaussianMixture`, and ignored.
        """
        self._fit_groups(images, [_flatten(images)])
        return self

    @property
    def mean(self) -> Tensor:
        """:math:`\\mu`, float64 ``(D,)``."""
        self._check_fitted()
        return self.means[0]

    @property
    def covariance(self) -> Tensor:
        """:math:`\\Sigma` (without the ridge), float64 ``(D, D)``."""
        self._check_fitted()
        return self.covariances[0]

    def sample(self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """``n`` images ``x = mu + L z``, clamped to ``[0, 1]``: float32 ``n x C x H x W``."""
        self._check_fitted()
        if labels is not None:
            raise ValueError("GaussianBaseline is unconditional; use ClassGaussianMixture to sample given labels")
        _check_count(n)
        return self._draw(torch.zeros(n, dtype=torch.long), generator)


class ClassGaussianMixture(_PixelGaussians):
    r"""One Gaussian per class, mixed with the class frequencies (see the module docstring).

    ``sample(n)`` draws a class :math:`k \sim \pi` for each image, then
    :math:`x \sim \mathcal{N}(\mu_k, \Sigma_k)`; ``sample(n, labels=y)`` draws the given classes. :meth:`nll_nats` is the likelihood of the
    mixture, :math:`p(x) = \sum_k \pi_k p_k(x)`, which needs no label.

    Args:
        ridge: added to each covariance's diagonal, in ``[0, 1]`` units squared (default
            ``1e-2``, chosen on the digits val split).
        levels: gray levels of the images :meth:`nll_nats` takes (17 for digits).
    """

    DEFAULT_RIDGE = 1e-2

    def fit(self, images: Tensor, labels: Tensor) -> ClassGaussianMixture:
        """Fit one Gaussian (maximum likelihood) to each class's images; every class needs 2 or more."""
        x = _flatten(images)
        labels = _check_labels(labels, len(x))
        counts = torch.bincount(labels, minlength=int(labels.max()) + 1)
        if int(counts.min()) < 2:
            short = [k for k, c in enumerate(counts.tolist()) if c < 2]
            raise ValueError(f"every class from 0 to {len(counts) - 1} needs at least 2 images; classes {short} have fewer")
        self._fit_groups(images, [x[labels == k] for k in range(len(counts))])
        return self

    @property
    def num_classes(self) -> int:
        """:math:`K`, the number of Gaussians."""
        self._check_fitted()
        return len(self.weights)

    def sample(self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """``n`` images in ``[0, 1]``, float32 ``n x C x H x W``; of the classes ``labels`` when given."""
        self._check_fitted()
        _check_count(n)
        if labels is None:
            if n == 0:  # multinomial refuses to draw nothing
                return self._draw(torch.zeros(0, dtype=torch.long), generator)
            return self._draw(torch.multinomial(self.weights, n, replacement=True, generator=generator), generator)
        return self._draw(_check_labels(labels, n, self.num_classes), generator)


def _check_labels(labels: object, n: int, num_classes: int | None = None) -> Tensor:
    """``labels`` as int64 ``(n,)``, checked to lie in ``[0, num_classes - 1]`` (``>= 0`` without ``num_classes``)."""
    labels = torch.as_tensor(labels)
    if labels.shape != (n,) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be an integer tensor of shape ({n},), got {labels.dtype} {tuple(labels.shape)}")
    if n:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or (num_classes is not None and high >= num_classes):
            allowed = f"[0, {num_classes - 1}]" if num_classes is not None else ">= 0"
            raise ValueError(f"labels must lie in {allowed}, got values in [{low}, {high}]")
    return labels.long()


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
