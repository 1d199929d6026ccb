import pytest
import torch

from aigc_lab.models import MODELS, MLPCritic, MLPGenerator, MSEGenerator, WGANGP, build_model
from aigc_lab.train import StepContext


def _step(model, x, y, steps=1):
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    for ctx.step in range(steps):
        metrics = model.training_step((x, y), ctx)
    return metrics


@pytest.mark.parametrize("num_classes", [0, 3])
def test_every_parameter_receives_a_gradient(num_classes):
    torch.manual_seed(0)
    x, y = torch.rand(8, 1, 4, 4), torch.arange(8) % 3
    for cls in (MSEGenerator, WGANGP):
        model = cls(image_shape=(1, 4, 4), z_dim=4, hidden=8, num_classes=num_classes)
        seen = {}
        for name, p in model.named_parameters():
            p.register_hook(lambda g, name=name: seen.__setitem__(name, float(g.abs().sum())))
        _step(model, x, y)
        names = [n for n, _ in model.named_parameters()]
        assert sorted(seen) == sorted(names), f"{cls.__name__}: no gradient for {set(names) - set(seen)}"
        assert all(v > 0 for v in seen.values())


def test_mse_generator_learns_the_mean_image_whatever_the_noise():
    torch.manual_seed(0)
    x = torch.rand(256, 1, 4, 4)
    model = MSEGenerator(image_shape=(1, 4, 4), z_dim=4, hidden=32, lr=3e-3)
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    first = None
    for ctx.step in range(400):
        loss = model.training_step((x[torch.randint(0, 256, (64,))], torch.zeros(64, dtype=torch.long)), ctx)["mse"]
        first = first if first is not None else float(loss.detach())
    assert float(loss.detach()) < first
    samples = model.sample(100)
    assert (samples - x.mean(0)).abs().max() < 0.1, "the MSE optimum is the mean image"
    assert samples.std(0).mean() < 0.05, "...the same for every z"


def test_wgan_critic_lowers_its_loss_against_a_fixed_generator():
    torch.manual_seed(0)
    model = WGANGP(image_shape=(1, 4, 4), z_dim=4, hidden=32, n_critic=1, lr=1e-3)
    optimizers = model.configure_optimizers()
    optimizers["generator"].param_groups[0]["lr"] = 0.0  # hold G still so D's loss is comparable
    ctx = StepContext(optimizers, None, torch.device("cpu"))
    x = torch.rand(32, 1, 4, 4) * 0.2 + 0.8
    losses = []
    for ctx.step in range(30):
        m = model.training_step((x, torch.zeros(32, dtype=torch.long)), ctx)
        losses.append(float(-m["wasserstein"] + 10 * m["gradient_penalty"]))
    assert sum(losses[-5:]) < sum(losses[:5]), losses


def test_mse_generator_lowers_its_loss():
    torch.manual_seed(0)
    model = MSEGenerator(image_shape=(1, 4, 4), z_dim=4, hidden=16)
    x, y = torch.rand(32, 1, 4, 4), torch.zeros(32, dtype=torch.long)
    first = float(_step(model, x, y)["mse"])
    assert float(_step(model, x, y, steps=30)["mse"]) < first


def test_conditioning_is_wired_through():
    torch.manual_seed(0)
    g = MLPGenerator((1, 4, 4), z_dim=4, hidden=8, num_classes=3)
    z = torch.randn(2, 4)
    assert not torch.allclose(g(z, torch.tensor([0, 0])), g(z, torch.tensor([1, 1])))
    d = MLPCritic((1, 4, 4), hidden=8, num_classes=3)
    x = torch.rand(2, 1, 4, 4)
    assert not torch.allclose(d(x, torch.tensor([0, 0])), d(x, torch.tensor([2, 2])))


def test_samples_are_images_in_unit_range_and_repeat_with_a_generator():
    model = WGANGP(image_shape=(3, 4, 4), z_dim=4, hidden=8)
    a = model.sample(5, generator=torch.Generator().manual_seed(1))
    b = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (5, 3, 4, 4) and a.min() >= 0 and a.max() <= 1 and torch.equal(a, b)
    conditional = MSEGenerator(image_shape=(1, 4, 4), num_classes=3)
    assert conditional.sample(6).shape == (6, 1, 4, 4)


def test_bad_inputs_are_explained():
    g = MLPGenerator((1, 4, 4), z_dim=4, num_classes=3)
    with pytest.raises(ValueError, match=r"z must have shape \(N, 4\)"):
        g(torch.randn(2, 5))
    with pytest.raises(ValueError, match="pass labels"):
        g(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        g(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="unconditional"):
        MLPGenerator((1, 4, 4), z_dim=4)(torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="1 channel"):
        MLPCritic((1, 4, 4))(torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="image_shape must be"):
        MSEGenerator(image_shape=(4, 4))


def test_registry_builds_models_and_explains_unknown_names():
    assert set(MODELS) >= {"mse-generator", "wgan-gp-mlp"}
    assert isinstance(build_model("wgan-gp-mlp", image_shape=[1, 4, 4]), WGANGP)
    with pytest.raises(ValueError, match="did you mean 'wgan-gp-mlp'"):
        build_model("wgan-gp-mpl")
    with pytest.raises(ValueError, match="bad settings"):
        build_model("mse-generator", colour="red")
