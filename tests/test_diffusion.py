import math

import pytest
import torch
from conftest import TinyImages

from aigc_lab.models import build_model
from aigc_lab.models.diffusion import DDPM, beta_schedule
from aigc_lab.models.unet import UNet, timestep_embedding
from aigc_lab.train import StepContext, TrainConfig, fit
from aigc_lab.runs import load_run

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


@pytest.mark.parametrize("channels", [8, 16, 32, 64, 128, 256])
def test_groupnorm_keeps_the_time_embedding(channels):
    """Every group holds >= 4 channels (32 groups from 128 up), so the per-channel embedding survives the norm."""
    from aigc_lab.models.unet import ResBlock, _groups

    groups = _groups(channels)
    assert channels % groups == 0 and channels // groups >= 4 and groups == min(32, channels // 4)
    torch.manual_seed(0)
    block = ResBlock(channels, channels, emb_dim=16).eval()
    x = torch.randn(2, channels, 4, 4)
    emb_a, emb_b = torch.randn(2, 16), torch.randn(2, 16)
    with torch.no_grad():
        moved = (block(x, emb_a) - block(x, emb_b)).abs().mean()
    assert moved > 1e-3, f"the embedding changes the block's output by only {moved:.2e}: the norm cancels it"


def test_guidance_formula_and_label_effect():
    # Checked on a freshly initialised U-Net's raw outputs, not on clipped samples after training:
    # there the clipped x0 saturated, so whether the label changed anything came down to one CPU's
    # rounding (before unet._groups kept 4 channels a group, SMALL's U-Net ignored its labels).
    torch.manual_seed(0)
    model = DDPM(**{**SMALL, "base_channels": 64, "channel_mults": (1,)}, num_classes=3)
    g = torch.Generator().manual_seed(0)
    x, t, y = (torch.randn(4, 1, 8, 8, generator=g), torch.tensor([1, 5, 9, 49]), torch.tensor([0, 1, 2, 0]))
    null, other = torch.full_like(y, 3), (y + 1) % 3
    per_image = lambda a: a.abs().flatten(1).mean(1)  # (N,) mean absolute value
    with torch.no_grad():
        cond, uncond = model.ema(x, t, y), model.ema(x, t, null)
        scale = per_image(cond)  # about 0.3
        # The label (and the null label) move the raw output by about 0.15 per pixel; rounding would be 1e-7.
        assert bool((per_image(model.ema(x, t, other) - cond) > 0.1 * scale).all())
        assert bool((per_image(uncond - cond) > 0.1 * scale).all())

        # (1 + w) eps(x, y) - w eps(x, null), up to float32 rounding (the guided call batches [y, null] in one pass)
        guided = model.guided_eps(x, t, y, 2.0)
        torch.testing.assert_close(guided, 3.0 * cond - 2.0 * uncond, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.guided_eps(x, t, y, 0.0), cond, atol=0, rtol=0)
        torch.testing.assert_close(model.guided_eps(x, t, y, None), cond, atol=0, rtol=0)
        torch.testing.assert_close(model.guided_eps(x, t, y, -1.0), uncond, atol=1e-5, rtol=1e-5)
        assert bool((per_image(guided - cond) > 0.2 * scale).all()), "guidance moves eps by 2 (cond - uncond)"
        assert bool((per_image(model.guided_eps(x, t, other, 2.0) - guided) > 0.1 * scale).all()), "and the label still matters"

    # The sampler asks the network for [y, null] in one batch when guided, for y alone when not.
    seen = []
    model.ema.register_forward_hook(lambda module, args, out: seen.append(args[2].tolist()))
    noise = torch.randn(4, 1, 8, 8, generator=g)
    plain = model.sample(4, labels=y, method="ddim", steps=3, noise=noise)
    assert seen == [[0, 1, 2, 0]] * 3
    seen.clear()
    torch.testing.assert_close(model.sample(4, labels=y, method="ddim", steps=3, noise=noise, guidance=0.0), plain, atol=0, rtol=0)
    assert seen == [[0, 1, 2, 0]] * 3, "w = 0 is the plain conditional model: no unconditional call"
    seen.clear()
    model.sample(4, labels=y, method="ddim", steps=3, noise=noise, guidance=3.0)
    assert seen == [[0, 1, 2, 0, 3, 3, 3, 3]] * 3


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


def test_v_prediction_reads_x0_off_v_without_dividing_by_sqrt_abar():
    # At t = T with the cosine schedule abar_T is about 2.4e-9. x0 = sqrt(abar) x_t - sqrt(1 - abar) v
    # loses nothing in float32; going through eps = sqrt(abar) v + sqrt(1 - abar) x_t and then
    # x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) divides eps's rounding (~1e-7) by sqrt(abar) ~ 5e-5.
    model = DDPM(**{**SMALL, "timesteps": 1000}, prediction="v", ema_decay=0)
    abar = float(model.alphas_cumprod[-1])
    assert 1e-9 < abar < 1e-8
    g = torch.Generator().manual_seed(0)
    x0 = 1.8 * torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64) - 0.9  # inside [-1, 1]: clipping keeps it
    x_T = torch.randn(4, 1, 8, 8, generator=g)  # the sampler's float32 start
    # The v, worked out in float64, whose exact x0 = sqrt(abar) x_T - sqrt(1 - abar) v is x0 above.
    v = ((math.sqrt(abar) * x_T.double() - x0) / math.sqrt(1 - abar)).float()
    eps = (x_T.double() - math.sqrt(abar) * x0) / math.sqrt(1 - abar)

    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(()))  # sample() finds the device from it

        def forward(self, x, t, labels=None):
            return v

    model.net = Oracle()
    seen = []
    model.sample(4, steps=1, noise=x_T, callback=lambda t, x, x0_hat: seen.append((t, x0_hat)))
    assert seen[0][0] == 999
    new_error = float((seen[0][1].double() - x0).abs().max())
    guided_eps = model.guided_eps(x_T, torch.full((4,), 999), None, None)
    old_error = float(((x_T - math.sqrt(1 - abar) * guided_eps) / math.sqrt(abar)).double().sub(x0).abs().max())
    assert new_error < 1e-6, new_error  # measured 5e-8: float32 rounding of v
    assert old_error > 1e-4, old_error  # measured 2e-3: the former route, through eps
    torch.testing.assert_close(guided_eps.double(), eps, atol=1e-6, rtol=0)  # eps read off v directly: 1e-7


# ----- agreement with diffusers' schedulers ---------------------------------------------------


class StandInNet(torch.nn.Module):
    """A small fixed conditional "network" for comparing samplers: elementwise maths and shifts, no
    learned weights (the same numbers on any CPU and for any batch), which depends on x, on t and on
    the label, and whose estimates of x0 are clipped at some steps and not at others."""

    def __init__(self, timesteps: int):
        super().__init__()
        self.timesteps = timesteps
        self.mix = torch.nn.Parameter(torch.tensor([0.9, 0.3, -0.2]))
        self.label_shift = torch.nn.Parameter(torch.tensor([0.4, -0.3, 0.1, 0.0]))  # the last is the null label

    def forward(self, x, t, labels):
        s = (t.float() / self.timesteps).view(-1, 1, 1, 1)
        h = self.mix[0] * x + self.mix[1] * x.roll(1, -1) + self.mix[2] * x.roll(1, -2)
        return torch.tanh(h) * (0.5 + s) + self.label_shift[labels].view(-1, 1, 1, 1) * (1 - s)


def test_schedules_match_diffusers():
    diffusers = pytest.importorskip("diffusers")
    for ours, theirs in (("linear", {"beta_schedule": "linear"}), ("cosine", {"beta_schedule": "squaredcos_cap_v2"})):
        betas = beta_schedule(ours, 1000)
        scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, **theirs)
        torch.testing.assert_close(scheduler.betas.double(), betas, atol=0, rtol=3e-7)  # float32 rounding of the same numbers


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize(("method", "steps", "eta"), [("ddpm", 10, 0.0), ("ddim", 50, 0.0), ("ddim", 10, 0.0), ("ddim", 10, 1.0)])
def test_samplers_match_diffusers(method, steps, eta, prediction, schedule):
    """DDPM.sample against diffusers' DDPMScheduler / DDIMScheduler, step by step.

    Configuration that matches the package: the package's betas (``trained_betas``); x0 clipped to
    [-1, 1] (``clip_sample``); DDPM's posterior variance tilde beta (``variance_type="fixed_small"``)
    and its timesteps (the package's evenly spaced sequence, given as custom timesteps; diffusers'
    ``timestep_spacing="linspace"`` makes the same); DDIM's eps re-derived from the clipped x0
    (``use_clipped_model_output=True``) and x_{-1} = x0 (``set_alpha_to_one=True``). Guidance
    (w = 2) is applied to the network's output (eps or v) before the scheduler's step, as
    diffusers' pipelines do. Same x_T, same seed for the per-step noise.

    Respaced DDIM: diffusers' DDIMScheduler steps from t to t - T // steps, which is not the
    previous element of the package's (rounded) evenly spaced sequence; it is checked instead as
    the package's docstring describes respacing, a DDIMScheduler over `steps` steps whose betas are
    1 - abar_{tau_i} / abar_{tau_{i-1}}, with the network called at tau_i.

    Tolerance 2e-5 on x_t and the images: diffusers keeps betas in float32 and takes abar as a
    float32 cumulative product (relative error up to ~1e-5 at t = T for the cosine schedule, against
    the package's float64), and both evaluate the step in float32 in a different order. Measured
    at most 2.2e-6 (with diffusers given the package's float64 abar: 0). Any real difference
    (variance type, final alpha, clipping, an off-by-one step) is 3e-2 or more. x0 = (x_t -
    sqrt(1 - abar) eps) / sqrt(abar) of an eps-network divides those differences by sqrt(abar_t),
    so its tolerance is 2e-5 / sqrt(abar_t).
    """
    diffusers = pytest.importorskip("diffusers")
    T, n, w, K = 50, 4, 2.0, 3
    model = DDPM(**{**SMALL, "timesteps": T, "schedule": schedule}, num_classes=K, prediction=prediction, ema_decay=0)
    model.net = net = StandInNet(T)
    g = torch.Generator().manual_seed(0)
    x_T, labels = torch.randn(n, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 0])
    ours = []
    images = model.sample(
        n, labels=labels, steps=steps, method=method, eta=eta, guidance=w, noise=x_T,
        generator=torch.Generator().manual_seed(1), callback=lambda t, x, x0: ours.append((t, x, x0)),
    )  # fmt: skip

    ts = model.timestep_sequence(steps)  # ascending
    common = {"clip_sample": True, "clip_sample_range": 1.0, "prediction_type": {"eps": "epsilon", "v": "v_prediction"}[prediction]}
    if method == "ddpm":
        scheduler = diffusers.DDPMScheduler(num_train_timesteps=T, trained_betas=model.betas.numpy(), variance_type="fixed_small", **common)
        scheduler.set_timesteps(timesteps=ts[::-1])
        network_step, options = (lambda s: s), {}
    elif steps == T:
        scheduler = diffusers.DDIMScheduler(num_train_timesteps=T, trained_betas=model.betas.numpy(), set_alpha_to_one=True, timestep_spacing="linspace", **common)
        scheduler.set_timesteps(steps)
        network_step, options = (lambda s: s), {"eta": eta, "use_clipped_model_output": True}
    else:  # respaced: a scheduler over the `steps` visited steps
        abar = model.alphas_cumprod[ts]
        betas = 1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
        scheduler = diffusers.DDIMScheduler(num_train_timesteps=steps, trained_betas=betas.numpy(), set_alpha_to_one=True, timestep_spacing="linspace", **common)
        scheduler.set_timesteps(steps)
        network_step, options = (lambda s: ts[s]), {"eta": eta, "use_clipped_model_output": True}

    theirs, x, generator = [], x_T.clone(), torch.Generator().manual_seed(1)
    null = torch.full_like(labels, K)
    for s in scheduler.timesteps:
        t = network_step(int(s))
        t_batch = torch.full((n,), t)
        with torch.no_grad():  # the network called as DDPM.guided_eps calls it: one batch of [y, null]
            conditional, unconditional = net(torch.cat([x, x]), torch.cat([t_batch, t_batch]), torch.cat([labels, null])).chunk(2)
        output = (1 + w) * conditional - w * unconditional
        step = scheduler.step(output, s, x, generator=generator, **options)
        theirs.append((t, x, step.pred_original_sample))
        x = step.prev_sample

    assert [t for t, _, _ in ours] == [t for t, _, _ in theirs] == ts[::-1]
    clipped = sum(float((x0.abs() == 1).float().mean()) for _, _, x0 in ours) / len(ours)
    assert 0.02 < clipped < 0.9, "both the clipped and the unclipped path are exercised"
    for (t, x_ours, x0_ours), (_, x_theirs, x0_theirs) in zip(ours, theirs):
        torch.testing.assert_close(x_ours, x_theirs, atol=2e-5, rtol=0, msg=f"x_t at t={t}")
        sqrt_abar = math.sqrt(float(model.alphas_cumprod[t]))
        torch.testing.assert_close(x0_ours, x0_theirs, atol=2e-5 / (sqrt_abar if prediction == "eps" else 1.0), rtol=0, msg=f"x0 at t={t}")
    torch.testing.assert_close(images, ((x + 1) / 2).clamp(0, 1), atol=2e-5, rtol=0)
    assert float(images.std()) > 0.1, "not a trivial (constant) image"
