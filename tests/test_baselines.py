import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from aigc_lab.baselines import ClassGaussianMixture, GaussianBaseline


def _tiny(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlated 1 x 1 x 2 images on 3 gray levels (0, 0.5, 1) in two classes."""
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(3, (n,), generator=g)
    second = (first + torch.randint(-1, 2, (n,), generator=g)).clamp(0, 2)
    images = torch.stack([first, second], dim=1).float().div(2).reshape(n, 1, 1, 2)
    return images, torch.arange(n) % 2


def _all_level_images(levels: int = 3) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(levels), repeat=2))).reshape(-1, 1, 1, 2)


@pytest.mark.parametrize("model", [GaussianBaseline(), ClassGaussianMixture()])
def test_samples_shape_range_and_determinism(model):
    images, labels = _tiny()
    model.fit(images, labels)
    a = model.sample(50, generator=torch.Generator().manual_seed(3))
    b = model.sample(50, generator=torch.Generator().manual_seed(3))
    assert a.shape == (50, 1, 1, 2) and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, model.sample(50, generator=torch.Generator().manual_seed(4)))
    assert model.sample(0).shape == (0, 1, 1, 2)


def test_fitted_moments_match_numpy():
    images, labels = _tiny()
    flat = images.flatten(1).numpy().astype(np.float64)
    gaussian = GaussianBaseline().fit(images)
    np.testing.assert_allclose(gaussian.mean.numpy(), flat.mean(0))
    np.testing.assert_allclose(gaussian.covariance.numpy(), np.cov(flat, rowvar=False, bias=True))  # maximum likelihood
    mixture = ClassGaussianMixture().fit(images, labels)
    assert mixture.num_classes == 2 and mixture.weights.tolist() == [0.5, 0.5]
    for k in range(2):
        in_class = flat[labels.numpy() == k]
        np.testing.assert_allclose(mixture.means[k].numpy(), in_class.mean(0))
        np.testing.assert_allclose(mixture.covariances[k].numpy(), np.cov(in_class, rowvar=False, bias=True))


def test_samples_follow_the_fitted_gaussian():
    g = torch.Generator().manual_seed(0)
    images = (0.5 + 0.05 * torch.randn(500, 1, 2, 2, generator=g)).clamp(0, 1)  # far from the clamp
    model = GaussianBaseline(ridge=1e-6).fit(images)
    samples = model.sample(20000, generator=g).flatten(1).double()
    assert torch.allclose(samples.mean(0), model.mean, atol=2e-3)
    assert torch.allclose(torch.cov(samples.T), model.covariance, atol=2e-4)


def test_conditional_sampling_draws_the_asked_class():
    g = torch.Generator().manual_seed(0)
    dark, bright = torch.full((20, 1, 2, 2), 0.1), torch.full((20, 1, 2, 2), 0.9)
    images = torch.cat([dark, bright]) + 0.01 * torch.rand(40, 1, 2, 2, generator=g)
    labels = torch.tensor([0] * 20 + [1] * 20)
    mixture = ClassGaussianMixture(ridge=1e-6).fit(images, labels)
    asked = torch.tensor([1, 0, 1, 1])
    drawn = mixture.sample(4, generator=g, labels=asked).mean(dim=(1, 2, 3))
    assert torch.equal((drawn > 0.5).long(), asked)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        mixture.sample(1, labels=torch.tensor([2]))
    with pytest.raises(ValueError, match="unconditional"):
        GaussianBaseline().fit(images).sample(4, labels=asked)


def test_each_sample_is_its_class_mean_plus_the_cholesky_factor_times_its_noise():
    # x_i = mu_k + L_k z_i with z drawn (N, D) from the generator, whatever the order of the classes:
    # the components are drawn one class at a time, so check against the formula sample by sample.
    g = torch.Generator().manual_seed(0)
    images = torch.rand(60, 1, 2, 3, generator=g)
    labels = torch.arange(60) % 3
    mixture = ClassGaussianMixture().fit(images, labels)
    asked = torch.tensor([2, 0, 2, 1, 0, 2, 1])
    drawn = mixture.sample(len(asked), generator=torch.Generator().manual_seed(5), labels=asked)
    z = torch.randn(len(asked), 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    expected = torch.stack([mixture.means[k] + mixture.cholesky[k] @ z[i] for i, k in enumerate(asked.tolist())])
    torch.testing.assert_close(drawn.flatten(1), expected.clamp(0, 1).float())


def test_diagonal_nll_by_hand():
    images = torch.tensor([[0.0, 0.5], [0.5, 1.0], [1.0, 1.0]]).reshape(3, 1, 1, 2)
    ridge = 0.01
    model = GaussianBaseline(ridge=ridge, levels=3).fit(images)
    test = torch.tensor([[0, 2], [1, 0]]).reshape(2, 1, 1, 2)
    # In level units (x 2): pixel means 1 and 5/3, variances (2/3 + 4 * ridge) and (2/9 + 4 * ridge).
    m, s = np.array([1.0, 5 / 3]), np.sqrt(np.array([2 / 3, 2 / 9]) + 4 * ridge)
    edges = {0: (-np.inf, 0.5), 1: (0.5, 1.5), 2: (1.5, np.inf)}
    expected = [
        sum(np.log(norm.cdf((edges[k][1] - m[d]) / s[d]) - norm.cdf((edges[k][0] - m[d]) / s[d])) for d, k in enumerate(row))
        for row in test.flatten(1).tolist()
    ]
    np.testing.assert_allclose(model.log_likelihood(test, covariance="diagonal").numpy(), expected, rtol=1e-10)
    assert model.nll_nats(test, covariance="diagonal") == pytest.approx(-np.mean(expected))


def test_full_nll_is_the_chain_rule_of_the_gaussian_by_hand():
    images, _ = _tiny()
    ridge = 0.02
    model = GaussianBaseline(ridge=ridge, levels=3).fit(images)
    mu = model.mean.numpy() * 2
    cov = (model.covariance.numpy() + ridge * np.eye(2)) * 4
    edges = {0: (-np.inf, 0.5), 1: (0.5, 1.5), 2: (1.5, np.inf)}

    def log_mass(k, mean, std):
        return np.log(norm.cdf((edges[k][1] - mean) / std) - norm.cdf((edges[k][0] - mean) / std))

    test = _all_level_images()
    expected = []
    for u1, u2 in test.flatten(1).tolist():
        conditional_mean = mu[1] + cov[1, 0] / cov[0, 0] * (u1 - mu[0])
        conditional_var = cov[1, 1] - cov[1, 0] ** 2 / cov[0, 0]
        expected.append(log_mass(u1, mu[0], np.sqrt(cov[0, 0])) + log_mass(u2, conditional_mean, np.sqrt(conditional_var)))
    np.testing.assert_allclose(model.log_likelihood(test).numpy(), expected, rtol=1e-9)


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
@pytest.mark.parametrize("model", [GaussianBaseline(levels=3), ClassGaussianMixture(levels=3)])
def test_likelihood_is_a_probability_mass(model, covariance):
    images, labels = _tiny()
    model.fit(images, labels)
    every_image = _all_level_images()  # all 3^2 images
    total = model.log_likelihood(every_image, covariance=covariance).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
def test_mixture_nll_is_logsumexp_of_its_class_gaussians(covariance):
    images, labels = _tiny(60)
    labels = (torch.arange(60) % 3 == 0).long()  # unequal classes: weights 2/3 and 1/3
    mixture = ClassGaussianMixture(ridge=0.01, levels=3).fit(images, labels)
    test = _all_level_images()
    per_class = [
        GaussianBaseline(ridge=0.01, levels=3).fit(images[labels == k]).log_likelihood(test, covariance=covariance)
        for k in (0, 1)
    ]
    brute = np.log((2 / 3) * np.exp(per_class[0].numpy()) + (1 / 3) * np.exp(per_class[1].numpy()))
    np.testing.assert_allclose(mixture.log_likelihood(test, covariance=covariance).numpy(), brute, rtol=1e-10)


def test_nll_is_finite_far_in_the_tails():
    images = torch.zeros(10, 1, 1, 2)
    images[:, 0, 0, 1] = torch.linspace(0, 0.1, 10)
    model = GaussianBaseline(ridge=1e-6, levels=17).fit(images)  # pixel 0 always black: std 0.016 levels
    bright = torch.tensor([[16, 0], [5, 1]]).reshape(2, 1, 1, 2)
    log_p = model.log_likelihood(bright, covariance="diagonal")
    assert torch.isfinite(log_p).all()
    s = math.sqrt(1e-6) * 16
    # Level 5 of pixel 0: the bin [4.5, 5.5] lies 280 standard deviations out; its mass is ~ the tail beyond 4.5.
    pixel_1 = model.log_likelihood(torch.tensor([[0, 1]]).reshape(1, 1, 1, 2), covariance="diagonal")
    assert float(log_p[1] - pixel_1[0]) == pytest.approx(norm.logsf(4.5 / s) - norm.logcdf(0.5 / s), rel=1e-6)


def test_inputs_are_checked():
    images, labels = _tiny()
    with pytest.raises(ValueError, match="not fitted"):
        GaussianBaseline().sample(3)
    model = GaussianBaseline(levels=3).fit(images)
    with pytest.raises(ValueError, match="integer tensor of gray levels"):
        model.nll_nats(images)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        model.nll_nats(torch.full((1, 1, 1, 2), 3))
    with pytest.raises(ValueError, match="N x 1 x 1 x 2"):
        model.nll_nats(torch.zeros(1, 1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="covariance"):
        model.nll_nats(torch.zeros(1, 1, 1, 2, dtype=torch.long), covariance="spherical")
    with pytest.raises(ValueError, match="at least 2 images"):
        ClassGaussianMixture().fit(images[:3], torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        GaussianBaseline().fit(images * 2 - 1)
    with pytest.raises(ValueError, match="ridge"):
        GaussianBaseline(ridge=0)


def test_digits_numbers_of_the_chapter_3_table():
    """The test-split likelihoods chapter 3 reports; a change here changes the book's table."""
    from aigc_lab.data import load_dataset

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    levels = test.to_levels()
    gaussian = GaussianBaseline().fit(train.images)
    mixture = ClassGaussianMixture().fit(train.images, train.labels)
    assert gaussian.nll_nats(levels) == pytest.approx(103.32, abs=0.01)
    assert gaussian.nll_nats(levels, covariance="diagonal") == pytest.approx(119.01, abs=0.01)
    assert mixture.nll_nats(levels) == pytest.approx(100.28, abs=0.01)
    assert mixture.nll_nats(levels, covariance="diagonal") == pytest.approx(110.62, abs=0.01)
