"""The feed-forward style network: starts as the identity, learns toward its style, saves its style, applies to files."""

from __future__ import annotations

import pytest
import torch

from aigc_lab.contract import StepContext
from aigc_lab.models import build_model
from aigc_lab.models.style_net import StyleNet, TransformNet, load_style_image


def _photos(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).clamp(0.05, 0.95)


def test_registered_and_untrained_it_returns_its_input():
    model = build_model("style-net", image_shape=(3, 32, 32), style="oil", style_size=32)
    assert isinstance(model, StyleNet)
    photos = _photos()
    assert torch.allclose(model.restore(photos), photos, atol=2e-3)


def test_any_size_comes_back_at_its_size():
    net = StyleNet((3, 32, 32), style="pencil", style_size=32)
    for h, w in [(32, 32), (30, 45), (17, 64)]:
        assert net.restore(torch.rand(1, 3, h, w)).shape == (1, 3, h, w)


def test_every_parameter_learns_and_the_style_term_falls():
    torch.manual_seed(0)
    model = StyleNet((3, 32, 32), style="pencil", style_size=64, lr=2e-3)
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    photos = _photos()
    first = model.loss_terms(photos)["style"].item()
    # the last convolution starts at zero, so the layers before it see no gradient on the very first step; every
    # parameter must get one once it has moved
    ctx.optimize("style-net", model.loss_terms(photos)["style"])
    model.net.zero_grad()
    terms = model.loss_terms(photos)
    (terms["content"] + 10 * terms["style"]).backward()
    silent = [name for name, p in model.net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, silent
    for step in range(30):
        ctx.step = step
        model.training_step((photos, None), ctx)
    assert model.loss_terms(photos)["style"].item() < 0.7 * first


def test_the_style_is_saved_with_the_weights(tmp_path):
    style_file = tmp_path / "style.png"
    from aigc_lab.images import write_image_file

    write_image_file(style_file, torch.rand(3, 40, 40))
    model = StyleNet((3, 32, 32), style=str(style_file), style_size=32)
    model.loss_terms(_photos())  # computes the style's Gram matrices
    state = model.state_dict()
    style_file.unlink()  # a trained run loads without the style file
    again = StyleNet((3, 32, 32), style=str(style_file), style_size=32)
    again.load_state_dict(state)
    assert bool(again.style_ready) and torch.equal(again.style_gram_0, model.style_gram_0)
    assert torch.allclose(again.restore(_photos()), model.restore(_photos()))


def test_style_images_by_name_and_file(tmp_path):
    assert load_style_image("pencil", 32, 3).shape == (1, 3, 32, 32)
    assert load_style_image("oil", 32, 1).shape == (1, 1, 32, 32)
    with pytest.raises(FileNotFoundError):
        load_style_image(str(tmp_path / "missing.png"), 32, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_shape": (2, 32, 32)}, "1 or 3 channels"),
        ({"image_shape": (3, 30, 32)}, "multiples of 4"),
        ({"style": ""}, "style must be one of"),
        ({"style_weight": -1.0}, "must be >= 0"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StyleNet(**kwargs)


def test_transform_net_keeps_the_range():
    with torch.no_grad():
        out = TransformNet(3, width=8, residual_blocks=1)(torch.rand(2, 3, 16, 16))
    assert out.shape == (2, 3, 16, 16) and float(out.min()) >= 0 and float(out.max()) <= 1


@pytest.mark.parametrize("edge_kernel", [3, 9])
def test_the_edge_convolutions_take_the_kernel_given_and_keep_the_size(edge_kernel):
    net = TransformNet(1, width=4, residual_blocks=1, edge_kernel=edge_kernel)
    first, last = net.down[0][0], net.up[-1][0]
    assert first.kernel_size == last.kernel_size == (edge_kernel, edge_kernel)
    with torch.no_grad():
        photo = torch.rand(1, 1, 20, 24)
        assert torch.allclose(net(photo), photo.clamp(1e-3, 1 - 1e-3), atol=1e-6)  # the zero last layer: the photo back


@pytest.mark.parametrize("edge_kernel", [4, 0, 2.0, True])
def test_a_bad_edge_kernel_is_named(edge_kernel):
    with pytest.raises(ValueError, match="edge_kernel must be an odd positive integer"):
        TransformNet(1, edge_kernel=edge_kernel)


def test_train_and_apply_through_the_command_line(tmp_path, capsys):
    from aigc_lab.cli import main
    from aigc_lab.images import read_image_file, write_image_file

    run = tmp_path / "run"
    argv = ["train", "style-net", "--data", "photos", "--data-option", "patch_size=32", "--data-option", "n_patches=16",
            "--param", "style=pencil", "--param", "style_size=64", "--steps", "3", "--batch-size", "4", "--run-dir", str(run)]  # fmt: skip
    assert main(argv) == 0
    photo = tmp_path / "photo.png"
    write_image_file(photo, torch.rand(3, 21, 30))
    assert main(["apply", str(run), str(photo), "--out", str(tmp_path / "out")]) == 0
    assert read_image_file(tmp_path / "out" / "photo.png").shape == (3, 21, 30)
