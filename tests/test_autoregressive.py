import itertools
import math

import pytest
import torch

from aigc_lab.data import load_dataset
from aigc_lab.models import MODELS, build_model
from aigc_lab.models.autoregressive import MaskedConv2d, PixelCNN, RowRNN, images_to_levels
from aigc_lab.train import StepContext, TrainConfig, fit
from aigc_lab.runs import load_run

SMALL = {PixelCNN: dict(channels=8, n_layers=2), RowRNN: dict(hidden=8, inner=8)}


def _small(cls, **kwargs):
    torch.manual_seed(0)
    return cls(**{**SMALL[cls], **kwargs})


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train")


def test_mask_patterns_for_a_3x3_kernel():
    a = MaskedConv2d("A", 1, 1, 3).mask[0, 0]
    b = MaskedConv2d("B", 1, 1, 3).mask[0, 0]
    assert torch.equal(a, torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]]))
    assert torch.equal(b, torch.tensor([[1.0, 1, 1], [1, 1, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="mask_type"):
        MaskedConv2d("C", 1, 1, 3)
    with pytest.raises(ValueError, match="odd"):
        MaskedConv2d("A", 1, 1, 4)


def _input_jacobian(model, x):
    """d logits(pixel i) / d input(pixel j), summed over levels and input channels: (D, D)."""
    model.eval()
    leaf = {}
    if isinstance(model, PixelCNN):
        def grab(module, args):  # the first layer's input (value and border channels) as a leaf
            leaf["x"] = args[0].detach().requires_grad_()
            return (leaf["x"],)
        model.first.register_forward_pre_hook(grab)
    else:
        def values(x_levels):  # the pixel values both GRUs read, as a leaf
            leaf["x"] = (x_levels[:, 0].float() / 8 - 1).requires_grad_()
            return leaf["x"]
        model._values = values
    logits = model.logits(x)  # (1, levels, 1, H, W)
    d = x[0].numel()
    rows = []
    for i in range(d):
        (grad,) = torch.autograd.grad(logits.flatten(2)[0, :, i].sum(), leaf["x"], retain_graph=True)
        rows.append(grad.abs().reshape(-1, d).sum(0))  # sum over the input channels
    return torch.stack(rows)  # (D, D)


@pytest.mark.parametrize("cls", [PixelCNN, RowRNN])
def test_each_output_depends_on_every_earlier_pixel_and_no_later_one(cls):
    torch.manual_seed(1)
    model = _small(cls)
    jac = _input_jacobian(model, torch.randint(0, 17, (1, 1, 8, 8)))
    upper = torch.triu(torch.ones(64, 64, dtype=torch.bool))  # j >= i, including the pixel itself
    assert jac[upper].max() == 0, "an output sees its own pixel or a later one"
    assert (jac[~upper] > 0).all(), "an earlier pixel is never seen (a blind spot)"


def test_sampling_shortcuts_give_the_training_logits():
    torch.manual_seed(0)
    x = torch.randint(0, 17, (3, 1, 8, 8))
    pixelcnn = _small(PixelCNN).eval()
    full = pixelcnn.logits(x)
    for i in range(8):  # PixelCNN samples row i from rows 0..i alone
        assert torch.allclose(pixelcnn.logits(x[:, :, : i + 1])[:, :, :, i], full[:, :, :, i], atol=1e-5)
    rnn = _small(RowRNN, num_classes=3).eval()
    labels = torch.tensor([0, 2, 1])
    assert torch.allclose(rnn._walk(x.clone(), labels, draw=False), rnn.logits(x, labels), atol=1e-5)


@pytest.mark.parametrize("cls", [PixelCNN, RowRNN])
def test_nll_is_the_summed_cross_entropy(cls):
    model = _small(cls).eval()
    x = torch.randint(0, 17, (4, 1, 8, 8))
    log_p = model.logits(x).log_softmax(dim=1)  # (N, levels, 1, H, W)
    manual = -log_p.gather(1, x[:, None]).flatten(1).sum(1)
    assert torch.allclose(model.nll_nats(x), manual, atol=1e-4)
    assert model.nll_nats(x).shape == (4,)


@pytest.mark.parametrize("cls", [PixelCNN, RowRNN])
def test_probabilities_of_all_images_of_a_toy_sum_to_one(cls):
    # every 1 x 2 image over 17 levels: sum_x p(x1) p(x2 | x1) = 1 if the chain rule is wired right
    model = _small(cls, image_shape=(1, 1, 2)).eval()
    x = torch.tensor(list(itertools.product(range(17), repeat=2))).view(-1, 1, 1, 2)  # (289, 1, 1, 2)
    with torch.no_grad():
        total = torch.exp(-model.nll_nats(x).double()).sum()
    assert abs(float(total) - 1) < 1e-5


@pytest.mark.parametrize("cls", [PixelCNN, RowRNN])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_every_parameter_receives_a_gradient(cls, num_classes, digits):
    model = _small(cls, num_classes=num_classes)
    seen = {}
    for name, p in model.named_parameters():
        p.register_hook(lambda g, name=name: seen.__setitem__(name, float(g.abs().sum())))
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    model.training_step((digits.images[:16], digits.labels[:16] % 3), ctx)
    names = [n for n, _ in model.named_parameters()]
    assert sorted(seen) == sorted(names), f"no gradient for {set(names) - set(seen)}"
    assert all(v > 0 for v in seen.values()), [n for n, v in seen.items() if v == 0]


@pytest.mark.parametrize("cls", [PixelCNN, RowRNN])
def test_a_few_steps_lower_the_nll(cls, digits):
    model = _small(cls, lr=1e-2)
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    batch = (digits.images[:64], digits.labels[:64])
    losses = [float(model.training_step(batch, ctx)["nll"]) for ctx.step in range(25)]
    assert losses[-1] < losses[0] - 20, losses


@pytest.mark.parametrize("cls", [PixelCNN, RowRNN])
def test_samples_are_gray_levels_and_repeat_with_a_generator(cls):
    model = _small(cls)
    a = model.sample(5, generator=torch.Generator().manual_seed(3))
    b = model.sample(5, generator=torch.Generator().manual_seed(3))
    assert a.shape == (5, 1, 8, 8) and a.dtype == torch.float32 and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and torch.equal(a * 16, (a * 16).round())
    assert model.training, "sampling switches to eval mode and back"
    conditional = _small(cls, num_classes=3)
    assert conditional.sample(4, labels=torch.tensor([0, 1, 2, 0])).shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match="pass labels"):
        conditional.nll_nats(torch.zeros(2, 1, 8, 8, dtype=torch.long))


@pytest.mark.parametrize("cls", [PixelCNN, RowRNN])
def test_fit_evaluate_and_rebuild_from_the_registry(cls, digits, tmp_path):
    assert MODELS[cls.name] is cls
    model = _small(cls)
    fit(model, digits, tmp_path, TrainConfig(steps=3, batch_size=32, log_every=1), device="cpu")
    test = load_dataset("digits", "test")
    result = model.evaluate(test)
    assert set(result) == {"nll_nats", "bits_per_dim"}
    assert result["bits_per_dim"] == pytest.approx(result["nll_nats"] / (64 * math.log(2)))
    rebuilt = build_model(cls.name, **model.hparams)
    assert rebuilt.hparams == model.hparams
    loaded, config = load_run(tmp_path, device="cpu")
    assert config["model"] == cls.name and loaded.evaluate(test) == pytest.approx(result)


def test_only_exact_gray_levels_are_accepted(digits):
    assert torch.equal(images_to_levels(digits.images, 17), digits.to_levels())
    with pytest.raises(ValueError, match="exactly k/16"):
        images_to_levels(torch.full((1, 1, 8, 8), 0.5 / 16), 17)
    model = _small(PixelCNN)
    resized = load_dataset("digits", "train", size=10)
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    with pytest.raises(ValueError, match="exactly k/16"):
        model.training_step((resized.images[:4, :, :8, :8], resized.labels[:4]), ctx)
    with pytest.raises(ValueError, match="resized"):
        model.evaluate(resized)
    with pytest.raises(ValueError, match=r"x_levels must lie in \[0, 16\]"):
        model.nll_nats(torch.full((1, 1, 8, 8), 17))
    with pytest.raises(ValueError, match="one channel"):
        PixelCNN(image_shape=(3, 8, 8))
