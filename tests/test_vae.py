import math

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from aigc_lab.models import build_model
from aigc_lab.models.vae import (
    VAE,
    categorical_log_prob,
    discretized_logistic_log_prob,
    gaussian_kl,
    gaussian_log_density,
)
from aigc_lab.train import StepContext, TrainConfig, fit
from aigc_lab.runs import load_run

SMALL = dict(image_shape=(1, 4, 4), latent_dim=3, hidden=16, levels=5)


def _level_images(n: int, seed: int = 0, levels: int = 5, shape=(1, 4, 4)) -> torch.Tensor:
    """Images holding exact gray levels k / (levels - 1), with some structure for a model to learn."""
    g = torch.Generator().manual_seed(seed)
    bright = torch.rand(n, 1, 1, 1, generator=g) < 0.5
    noise = torch.randint(0, 2, (n, *shape), generator=g)
    k = torch.where(bright, levels - 1 - noise, noise)
    return k.float() / (levels - 1)


def _steps(model, x, y=None, steps=1):
    y = torch.zeros(len(x), dtype=torch.long) if y is None else y
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    history = []
    for ctx.step in range(steps):
        history.append({k: float(v) for k, v in model.training_step((x, y), ctx).items()})
    return history


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(7, 5), torch.randn(7, 5)
    q, p = Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros(7, 5), torch.ones(7, 5))
    torch.testing.assert_close(gaussian_kl(mu, logvar), kl_divergence(q, p).sum(-1))
    assert torch.allclose(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_log_densities_match_torch_distributions():
    torch.manual_seed(0)
    z, mu, logvar = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)
    torch.testing.assert_close(gaussian_log_density(z, mu, logvar), Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1))
    logits, levels = torch.randn(3, 10, 17), torch.randint(0, 17, (3, 10))
    torch.testing.assert_close(categorical_log_prob(levels, logits), Categorical(logits=logits).log_prob(levels))


def test_discretized_logistic_mixture_against_its_formula():
    torch.manual_seed(0)
    w, means, log_scales = (torch.randn(20, 3, dtype=torch.float64) * 2 for _ in range(3))
    table = discretized_logistic_log_prob(torch.arange(17), w[:, None], means[:, None], log_scales[:, None], 17)  # (20, 17)
    edges = torch.cat([torch.tensor([-math.inf]), torch.linspace(-1 + 1 / 16, 1 - 1 / 16, 16), torch.tensor([math.inf])]).double()
    cdf = torch.sigmoid((edges - means[..., None]) / log_scales.exp()[..., None])  # (20, 3, 18)
    expected = ((cdf[..., 1:] - cdf[..., :-1]) * w.softmax(-1)[..., None]).sum(1)  # P(k) = sum_m pi_m [F(c_k + h) - F(c_k - h)]
    torch.testing.assert_close(table.exp(), expected)
    torch.testing.assert_close(table.exp().sum(-1), torch.ones(20, dtype=torch.float64))
    far = discretized_logistic_log_prob(torch.tensor([16]), torch.zeros(1, 1), torch.tensor([[-1.0]]), torch.tensor([[-5.0]]), 17)
    assert torch.isfinite(far) and far < -100, "a far tail is a large finite penalty, not -inf"


@pytest.mark.parametrize("num_classes, likelihood", [(0, "logistic"), (3, "logistic"), (0, "categorical")])
def test_every_parameter_receives_a_gradient(num_classes, likelihood):
    torch.manual_seed(0)
    model = VAE(**SMALL, num_classes=num_classes, likelihood=likelihood)
    seen = {}
    for name, p in model.named_parameters():
        p.register_hook(lambda g, name=name: seen.__setitem__(name, float(g.abs().sum())))
    _steps(model, _level_images(8), torch.arange(8) % 3)
    names = [n for n, _ in model.named_parameters()]
    assert sorted(seen) == sorted(names), f"no gradient for {set(names) - set(seen)}"
    assert all(v > 0 for v in seen.values())


def test_training_lowers_the_negative_elbo_and_logs_its_terms():
    torch.manual_seed(0)
    model = VAE(**SMALL, lr=3e-3)
    history = _steps(model, _level_images(64), steps=60)
    assert set(history[0]) == {"nelbo", "reconstruction", "kl"}
    assert all(math.isclose(h["nelbo"], h["reconstruction"] + h["kl"], rel_tol=1e-5) for h in history)
    first, last = sum(h["nelbo"] for h in history[:5]), sum(h["nelbo"] for h in history[-5:])
    assert last < first, (first, last)


def test_importance_weighted_bound_with_one_sample_is_the_elbo_in_expectation():
    torch.manual_seed(0)
    model = VAE(**SMALL).eval()
    x = _level_images(1).expand(4000, -1, -1, -1)  # one image, many independent draws of z
    iw1 = model.importance_weighted_nll(x, k=1, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reconstruction, kl = model.elbo_terms(x, generator=torch.Generator().manual_seed(2))
    nelbo = reconstruction + kl
    standard_error = math.hypot(float(iw1.std()), float(nelbo.std())) / math.sqrt(len(x))
    assert abs(float(iw1.mean() - nelbo.mean())) < 4 * standard_error


def test_importance_weighting_tightens_the_bound_after_training():
    torch.manual_seed(0)
    model = VAE(**SMALL, lr=3e-3)
    x = _level_images(64)
    _steps(model, x, steps=40)
    model.eval()
    nelbo = model.importance_weighted_nll(x, k=1, generator=torch.Generator().manual_seed(0)).mean()
    iw = model.importance_weighted_nll(x, k=256, generator=torch.Generator().manual_seed(0)).mean()
    assert iw < nelbo
    levels = torch.round(x * 4).long()  # integer levels are accepted as they are
    again = model.importance_weighted_nll(levels, k=256, generator=torch.Generator().manual_seed(0)).mean()
    torch.testing.assert_close(again, iw)


@pytest.mark.parametrize("likelihood", ["logistic", "categorical"])
def test_samples_are_images_in_unit_range_and_repeat_with_a_generator(likelihood):
    model = VAE(**SMALL, likelihood=likelihood).train()
    for mode in ("mean", "sample"):
        a = model.sample(6, generator=torch.Generator().manual_seed(1), mode=mode)
        b = model.sample(6, generator=torch.Generator().manual_seed(1), mode=mode)
        assert a.shape == (6, 1, 4, 4) and a.min() >= 0 and a.max() <= 1 and torch.equal(a, b)
    assert model.training, "sampling turns dropout off only while it runs"
    drawn = model.sample(50, mode="sample")
    assert torch.equal(drawn * 4, torch.round(drawn * 4)), "sampled pixels are gray levels"
    assert model.reconstruct(_level_images(3)).shape == (3, 1, 4, 4)
    with pytest.raises(ValueError, match="mode must be one of"):
        model.sample(2, mode="median")


def test_conditioning_is_wired_through():
    torch.manual_seed(0)
    model = VAE(**SMALL, num_classes=3)
    z = torch.randn(2, 3)
    assert not torch.allclose(model.decode(z, torch.tensor([0, 0])), model.decode(z, torch.tensor([1, 1])))
    assert model.sample(6).shape == (6, 1, 4, 4)
    with pytest.raises(ValueError, match="pass labels"):
        model.decode(z)


def test_images_that_are_not_exact_gray_levels_are_refused():
    model = VAE(image_shape=(1, 8, 8))
    resized_like = torch.full((2, 1, 8, 8), 0.5 / 16)  # between two of the 17 levels
    with pytest.raises(ValueError, match="17 gray levels"):
        model.elbo_terms(resized_like)
    with pytest.raises(ValueError, match="8 x 8"):
        model.elbo_terms(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        model.elbo_terms(torch.full((2, 1, 8, 8), 2.0))


def test_fit_then_rebuild_from_hparams(tmp_path):
    torch.manual_seed(0)

    class Levels(torch.utils.data.Dataset):
        images, labels = _level_images(32), torch.zeros(32, dtype=torch.long)
        name, split, transform = "levels", "train", None

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return self.images[i], self.labels[i]

    model = VAE(**SMALL)
    history = fit(model, Levels(), tmp_path, TrainConfig(steps=6, batch_size=8, log_every=3), device="cpu")
    assert history.last("nelbo") > 0
    rebuilt = build_model("vae", **model.hparams)
    assert rebuilt.hparams == model.hparams
    loaded, config = load_run(tmp_path, device="cpu")
    assert config["model"] == "vae" and config["hparams"] == model.hparams
    model.eval()
    g = lambda: torch.Generator().manual_seed(3)
    torch.testing.assert_close(loaded.sample(4, generator=g()), model.sample(4, generator=g()))
    result = loaded.evaluate(Levels(), k=8)
    assert set(result) >= {"nelbo_nats", "iw_nll_nats", "bits_per_dim"}
    assert result["iw_nll_nats"] <= result["nelbo_nats"] + 1e-4
    assert math.isclose(result["bits_per_dim"], result["iw_nll_nats"] / (16 * math.log(2)))


CONV = dict(image_shape=(3, 8, 8), latent_dim=3, hidden=16, levels=5, channels=4, architecture="conv")


@pytest.mark.parametrize("num_classes", [0, 3])
def test_the_conv_architecture_trains_every_parameter_and_lowers_the_negative_elbo(num_classes):
    torch.manual_seed(0)
    model = VAE(**CONV, num_classes=num_classes, lr=3e-3)
    assert model.hparams["architecture"] == "conv" and model.hparams["channels"] == 4
    assert "architecture" not in VAE(**SMALL).hparams  # stored only when used: older runs load unchanged
    seen = {}
    for name, p in model.named_parameters():
        p.register_hook(lambda g, name=name: seen.__setitem__(name, float(g.abs().sum())))
    x = _level_images(32, shape=(3, 8, 8))
    history = _steps(model, x, torch.arange(32) % 3, steps=40)
    assert sorted(seen) == sorted(n for n, _ in model.named_parameters())
    assert sum(h["nelbo"] for h in history[-5:]) < sum(h["nelbo"] for h in history[:5])
    assert model.sample(4, labels=torch.arange(4) % 3 if num_classes else None).shape == (4, 3, 8, 8)
    assert model.importance_weighted_nll(x[:2], torch.arange(2) if num_classes else None, k=3).shape == (2,)
    if num_classes:
        z = torch.randn(2, 3)
        assert not torch.allclose(model.decode(z, torch.tensor([0, 0])), model.decode(z, torch.tensor([1, 1])))


def test_the_conv_decoder_lays_out_pixels_as_the_flattened_image():
    # Pixel d of x.flatten(1) is channel d // (H * W): give the last convolution a bias that
    # encodes (channel, parameter) and nothing else, and read it back at every pixel.
    model = VAE(**CONV, components=2)
    last = model.decoder.up[-1]
    P = 3 * 2
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([100.0 * c + p for c in range(3) for p in range(P)]))
    params = model.decoder(torch.randn(2, 5, 3))  # (K, N, D, P): the importance-sampling layout
    assert params.shape == (2, 5, 3 * 64, P)
    channel = torch.arange(3 * 64) // 64
    expected = 100.0 * channel[:, None] + torch.arange(P)[None, :]
    assert torch.equal(params[1, 4], expected)


def test_the_conv_architecture_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="architecture must be one of"):
        VAE(architecture="resnet")
    with pytest.raises(ValueError, match="power of two >= 8"):
        VAE(image_shape=(1, 12, 12), architecture="conv")
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        VAE(architecture="conv", channels=0)
