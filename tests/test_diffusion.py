import math

import pytest
import torch
from conftest import TinyImages

from aigc_lab.models import build_model
from aigc_lab.models.diffusion import DDPM, beta_schedule
from aigc_lab.models.unet import UNet, timestep_embedding
from aigc_lab.train import StepContext, TrainConfig, fit, load_run

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"image_shape": (1, 8, 8), "base_channels": 8, "channel_mults": (1, 2), "timesteps": 50, "sample_steps": 10}


def _images(n: int, seed: int = 0) -> torch.Tensor:
    """Images in [0, 1] with structure a model can learn: a bright or a dark half."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 8, 8)
    top = torch.rand(n, generator=g) < 0.5
    x[top, :, :4] = 1.0
    x[~top, :, 4:] = 1.0
    return (x + 0.1 * torch.rand(n, 1, 8, 8, generator=g)).clamp(0, 1)


def _steps(model, x, y=None, steps=1):
    y = torch.zeros(len(x), dtype=torch.long) if y is None else y
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    losses = []
    for ctx.step in range(steps):
        losses.append(float(model.training_step((x, y), ctx)["loss"]))
    return losses


# ----- the forward process ---------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedules_are_monotone_and_inside_zero_one(schedule):
    for T in (10, 1000):
        betas = beta_schedule(schedule, T)
        abar = torch.cumprod(1 - betas, 0)
        assert betas.shape == (T,) and betas.dtype == torch.float64
        assert bool(((betas > 0) & (betas < 1)).all())
        assert bool((abar > 0).all() and (abar < 1).all())
        assert bool((abar[1:] < abar[:-1]).all()), "abar must decrease: each step adds noise"
    abar = torch.cumprod(1 - beta_schedule(schedule, 1000), 0)
    assert abar[0] > 0.99 and abar[-1] < 1e-3, "starts almost clean, ends almost pure noise"


def test_closed_form_mean_and_variance_solve_the_one_step_recursion():
    model = DDPM(**{**SMALL, "timesteps": 200})
    mean_coef, var = 1.0, 0.0  # x_t = m_t x_0 + noise of variance v_t
    for beta, abar in zip(model.betas.tolist(), model.alphas_cumprod.tolist()):
        mean_coef, var = mean_coef * math.sqrt(1 - beta), (1 - beta) * var + beta
        assert mean_coef == pytest.approx(math.sqrt(abar), rel=1e-9)
        assert var == pytest.approx(1 - abar, rel=1e-9)


@pytest.mark.parametrize("t", [0, 20, 99])
def test_closed_form_and_iterated_forward_process_agree_statistically(t):
    model = DDPM(**{**SMALL, "timesteps": 100, "schedule": "linear"})
    n = 4000
    x0 = torch.linspace(-1, 1, 64).view(1, 1, 8, 8).expand(n, -1, -1, -1)  # 64 different starting values
    g = torch.Generator().manual_seed(0)
    iterated = model.forward_iterate(x0, t, generator=g)
    closed = model.q_sample(x0, torch.full((n,), t), torch.randn(x0.shape, generator=g))
    abar = float(model.alphas_cumprod[t])
    # The standard error of a mean of 4000 draws is at most 1/63, of a variance about sqrt(2/4000) of it.
    for x in (iterated, closed):
        torch.testing.assert_close(x.mean(0), math.sqrt(abar) * x0[0], atol=0.07, rtol=0)
        torch.testing.assert_close(x.var(0), torch.full_like(x0[0], 1 - abar), atol=0.12 * (1 - abar), rtol=0)
    torch.testing.assert_close(iterated.mean(0), closed.mean(0), atol=0.08, rtol=0)


# ----- the network and the loss ----------------------------------------------------------


def test_timestep_embedding_is_sinusoidal():
    emb = timestep_embedding(torch.tensor([0, 3]), 8)
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    torch.testing.assert_close(emb[1, 0], torch.tensor(math.sin(3.0)))


class HalfInput(torch.nn.Module):
    """A stand-in network whose output is x_t / 2: any fixed function will do to check a loss."""

    def forward(self, x, t, labels=None):
        return x / 2


def _noised(model):
    """Five seeded images in [0, 1], steps t, noise, abar_t, x0 in [-1, 1] and x_t = q_sample."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 8, 8, generator=g)
    t = torch.tensor([0, 10, 20, 30, 49])
    noise = torch.randn(5, 1, 8, 8, generator=g)
    abar = model.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    x0 = 2 * x - 1
    return x, t, noise, abar, x0, abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def test_loss_is_the_simple_loss_formula():
    model = DDPM(**SMALL)
    model.net = HalfInput()  # eps_theta(x_t, t) = x_t / 2
    x, t, noise, _, _, x_t = _noised(model)
    expected = ((noise - x_t / 2) ** 2).mean()
    torch.testing.assert_close(model.loss(x, t=t, noise=noise), expected)


@pytest.mark.parametrize("options", [{}, {"num_classes": 3, "attention": True, "channel_mults": (1, 2, 2)}])
def test_every_unet_parameter_receives_a_gradient(options):
    torch.manual_seed(0)
    model = DDPM(**{**SMALL, **options})
    labels = torch.arange(8) % 3 if options else None
    loss = model.loss(_images(8), None if labels is None else model.drop_labels(labels))
    loss.backward()
    params = dict(model.net.named_parameters())
    missing = [name for name, p in params.items() if p.grad is None or float(p.grad.abs().sum()) == 0]
    assert not missing, f"no gradient for {missing}"
    assert len(params) > 20
    assert all(not p.requires_grad for p in model.ema.parameters()), "the EMA copy is not trained directly"


def test_unet_shapes_for_larger_colour_images():
    net = UNet((3, 16, 16), base_channels=8, channel_mults=(1, 2, 2), num_classes=4, attention=True)
    out = net(torch.randn(2, 3, 16, 16), torch.tensor([0, 5]), torch.tensor([1, 4]))  # 4 is the null label
    assert out.shape == (2, 3, 16, 16)


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = DDPM(**SMALL, lr=3e-3)
    x = _images(32)
    losses = _steps(model, x, steps=20)
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses


def test_ema_follows_the_weights_and_is_in_the_state_dict():
    torch.manual_seed(0)
    model = DDPM(**SMALL, ema_decay=0.9)
    before = [p.clone() for p in model.ema.parameters()]
    _steps(model, _images(8), steps=3)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.ema.parameters()))
    assert any(k.startswith("ema.") for k in model.state_dict())
    assert DDPM(**SMALL, ema_decay=0).ema is None


# ----- sampling ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_sample_shapes_and_range(method):
    model = DDPM(**SMALL)
    images = model.sample(6, generator=torch.Generator().manual_seed(0), method=method, steps=5)
    assert images.shape == (6, 1, 8, 8) and images.dtype == torch.float32
    assert float(images.min()) >= 0 and float(images.max()) <= 1


def test_steps_argument_sets_the_number_of_network_calls():
    model = DDPM(**SMALL)
    calls = []
    model.ema.register_forward_hook(lambda module, args, out: calls.append(int(args[1][0])))
    for method, steps in (("ddpm", 7), ("ddim", 3), ("ddpm", 50), ("ddim", 1)):
        calls.clear()
        model.sample(2, method=method, steps=steps)
        assert len(calls) == steps
        assert calls == sorted(calls, reverse=True) and calls[0] == 49, "from t = T-1 down"
    calls.clear()
    model.sample(2)
    assert len(calls) == SMALL["sample_steps"]
    assert model.timestep_sequence(50) == list(range(50))


def test_ddim_eta0_is_deterministic_given_the_starting_noise():
    torch.manual_seed(0)
    model = DDPM(**SMALL)
    noise = torch.randn(4, 1, 8, 8)
    a = model.sample(4, method="ddim", steps=8, noise=noise, generator=torch.Generator().manual_seed(1))
    b = model.sample(4, method="ddim", steps=8, noise=noise, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = model.sample(4, method="ddim", steps=8, eta=1.0, noise=noise, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(a, c), "eta > 0 adds noise"
    d = model.sample(4, method="ddpm", steps=8, noise=noise, generator=torch.Generator().manual_seed(1))
    e = model.sample(4, method="ddpm", steps=8, noise=noise, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(d, e), "ancestral sampling is stochastic"


def test_ddim_with_eta1_is_ddpm():
    torch.manual_seed(0)
    model = DDPM(**SMALL)
    noise = torch.randn(4, 1, 8, 8)
    ddpm = model.sample(4, method="ddpm", steps=6, noise=noise, generator=torch.Generator().manual_seed(3))
    ddim = model.sample(4, method="ddim", eta=1.0, steps=6, noise=noise, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ddpm, ddim, atol=1e-5, rtol=0)


def test_same_seed_same_samples():
    model = DDPM(**SMALL)
    a = model.sample(3, generator=torch.Generator().manual_seed(5))
    b = model.sample(3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# ----- classifier-free guidance ----------------------------------------------------------


def test_label_dropout_uses_the_null_class():
    model = DDPM(**SMALL, num_classes=3, p_uncond=1.0)
    seen = []
    model.net.register_forward_hook(lambda module, args, out: seen.append(args[2].clone()))
    _steps(model, _images(6), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert seen[-1].tolist() == [3] * 6, "p_uncond=1 sends every label to the null class K"
    model = DDPM(**SMALL, num_classes=3, p_uncond=0.3)
    dropped = model.drop_labels(torch.zeros(10000, dtype=torch.long), generator=torch.Generator().manual_seed(0))
    assert set(dropped.tolist()) == {0, 3}
    assert float((dropped == 3).float().mean()) == pytest.approx(0.3, abs=0.02)
    assert torch.equal(
        DDPM(**SMALL, num_classes=3, p_uncond=0.0).drop_labels(torch.ones(5, dtype=torch.long)), torch.ones(5, dtype=torch.long)
    )


def test_guidance_formula_and_label_effect():
    torch.manual_seed(0)
    model = DDPM(**SMALL, num_classes=3)
    _steps(model, _images(8), torch.arange(8) % 3, steps=2)  # label embeddings move away from their shared init
    noise = torch.randn(4, 1, 8, 8)

    def draw(labels, guidance):
        return model.sample(4, labels=torch.tensor(labels), method="ddim", steps=5, noise=noise, guidance=guidance)

    plain = draw([0, 1, 2, 0], None)
    torch.testing.assert_close(draw([0, 1, 2, 0], 0.0), plain, rtol=0, atol=0)
    assert not torch.allclose(draw([1, 1, 2, 0], None)[0], plain[0]), "the label changes the output"
    assert not torch.allclose(draw([0, 1, 2, 0], 3.0), plain), "guidance changes the output"

    x, t, y = (torch.randn(4, 1, 8, 8), torch.tensor([1, 5, 9, 49]), torch.tensor([0, 1, 2, 0]))
    with torch.no_grad():
        cond, uncond = model.ema(x, t, y), model.ema(x, t, torch.full_like(y, 3))
        torch.testing.assert_close(model.guided_eps(x, t, y, 2.0), 3.0 * cond - 2.0 * uncond, atol=1e-5, rtol=0)
        torch.testing.assert_close(model.guided_eps(x, t, y, 0.0), cond)
        torch.testing.assert_close(model.guided_eps(x, t, y, -1.0), uncond, atol=1e-5, rtol=0)


# ----- errors and the run directory -------------------------------------------------------


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="power of two"):
        DDPM(image_shape=(1, 12, 12))
    with pytest.raises(ValueError, match="power of two"):
        DDPM(image_shape=(1, 4, 4))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        DDPM(image_shape=(8, 8))
    with pytest.raises(ValueError, match="schedule must be one of"):
        DDPM(**SMALL, schedule="quadratic")
    with pytest.raises(ValueError, match="channel_mults"):
        DDPM(**{**SMALL, "channel_mults": (1, 2, 2, 2, 2)})
    model = DDPM(**SMALL)
    with pytest.raises(ValueError, match="steps must be an integer between 1 and .*T=50"):
        model.sample(2, steps=51)
    with pytest.raises(ValueError, match="method must be one of"):
        model.sample(2, method="euler")
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="conditional model"):
        model.sample(2, guidance=1.0)
    with pytest.raises(ValueError, match="eta"):
        model.sample(2, eta=0.5)
    with pytest.raises(ValueError, match=r"t must be an integer step in \[0, 49\]"):
        model.forward_iterate(torch.zeros(1, 1, 8, 8), 50)
    with pytest.raises(ValueError, match=r"time steps must lie in \[0, 49\]"):
        model.q_sample(torch.zeros(1, 1, 8, 8), torch.tensor([50]), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        model.loss(torch.full((2, 1, 8, 8), 2.0))
    conditional = DDPM(**SMALL, num_classes=3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        conditional.sample(2, labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="p_uncond=0"):
        DDPM(**SMALL, num_classes=3, p_uncond=0.0).sample(2, guidance=1.0)


def test_fit_and_load_run_round_trip(tmp_path):
    data = TinyImages(n=16, shape=(1, 8, 8), num_classes=2)  # the U-Net needs 8 x 8 at least
    model = build_model("ddpm", **{**SMALL, "num_classes": 2})
    history = fit(model, data, tmp_path / "run", TrainConfig(steps=3, batch_size=8), device="cpu")
    assert history.steps == 3 and "loss" in history.scalars
    loaded, config = load_run(tmp_path / "run", device="cpu")
    assert isinstance(loaded, DDPM) and config["step"] == 3 and loaded.hparams == model.hparams
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    g = lambda: torch.Generator().manual_seed(0)
    torch.testing.assert_close(model.sample(4, generator=g()), loaded.sample(4, generator=g()))
    assert set(loaded.evaluate(data)) == {"loss"}


def test_sample_callback_sees_every_step_from_noise_to_image():
    torch.manual_seed(0)
    model = DDPM(image_shape=(1, 8, 8), base_channels=8, timesteps=50, sample_steps=5)
    seen = []
    images = model.sample(3, generator=torch.Generator().manual_seed(0), callback=lambda t, x, x0: seen.append((t, x.clone(), x0.clone())))
    assert [t for t, _, _ in seen] == sorted(model.timestep_sequence(5), reverse=True)
    assert all(x.shape == (3, 1, 8, 8) and x0.abs().max() <= 1 for _, x, x0 in seen)
    again = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, again)  # watching does not change the result


# ----- v-prediction ----------------------------------------------------------------------


def test_v_prediction_loss_and_its_conversion_to_eps():
    model = DDPM(**SMALL, num_classes=3, prediction="v")
    assert model.hparams["prediction"] == "v" and "prediction" not in DDPM(**SMALL).hparams

    model.net = HalfInput()  # v_theta(x_t, t) = x_t / 2
    x, t, noise, abar, x0, x_t = _noised(model)
    v = abar.sqrt() * noise - (1 - abar).sqrt() * x0
    labels = torch.tensor([0, 1, 2, 0, 1])
    torch.testing.assert_close(model.loss(x, labels, t=t, noise=noise), ((v - x_t / 2) ** 2).mean())

    class Oracle(torch.nn.Module):  # the true v of these images: the converted output must be the true eps
        def forward(self, x, t, labels=None):
            return v.repeat(len(x) // len(v), 1, 1, 1)  # guidance calls it on [x_t, x_t]

    model.net = Oracle()
    torch.testing.assert_close(model.guided_eps(x_t, t, None, None, use_ema=False), noise, rtol=1e-4, atol=1e-4)
    # guidance combines v's; as eps is affine in v for fixed x_t, it equals guiding the eps's
    torch.testing.assert_close(model.guided_eps(x_t, t, labels, 2.0, use_ema=False), noise, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="prediction must be one of"):
        DDPM(**SMALL, prediction="x0")


def test_v_prediction_trains_and_samples(tmp_path):
    torch.manual_seed(0)
    model = DDPM(**SMALL, lr=3e-3, prediction="v")
    losses = _steps(model, _images(32), steps=20)
    assert sum(losses[-5:]) < sum(losses[:5]), losses
    x = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1
