"""The Kuwahara-structured imitator of chapter 6.2.3: it can express the filter exactly, and it learns it."""

import pytest
import torch

from aigc_lab.models import build_model
import numpy as np

from aigc_lab.models.kuwahara_net import KuwaharaNet
from aigc_lab.styles import kuwahara, quadrant_means

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("radius", "size"), [(1, (13, 17)), (2, (13, 17)), (4, (13, 17)), (3, (2, 3))])
def test_quadrant_means_are_the_window_means_computed_by_hand(radius, size):
    images = torch.rand(2, 3, *size, dtype=torch.float64)
    ours = quadrant_means(images, radius)  # N x 4 x C x H x W
    assert ours.shape == (2, 4, 3, *size)
    # numpy's "reflect" is OpenCV's reflect-101 (dcb|abcd|cba), repeated for pads longer than the side
    padded = np.pad(images.numpy(), ((0, 0), (0, 0), (radius, radius), (radius, radius)), mode="reflect")
    h, w = size
    for k, (dy, dx) in enumerate(((1, 1), (0, 1), (1, 0), (0, 0))):  # below right, above right, below left, above left
        for y in range(h):
            for x in range(w):
                top, left = y + dy * radius, x + dx * radius  # in padded coordinates, the pixel is at (y + r, x + r)
                window = padded[:, :, top : top + radius + 1, left : left + radius + 1]
                np.testing.assert_allclose(ours[:, k, :, y, x].numpy(), window.mean(axis=(2, 3)), rtol=1e-12, atol=1e-12)


def test_with_the_least_variance_choice_the_network_is_the_kuwahara_filter():
    torch.manual_seed(0)
    model = KuwaharaNet((6, 24, 24), radius=3).double()
    images = torch.rand(2, 3, 24, 24, dtype=torch.float64)
    brightness = (images * torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)).sum(1, keepdim=True)
    variance = quadrant_means(brightness**2, 3) - quadrant_means(brightness, 3) ** 2  # N x 4 x 1 x H x W
    one_hot = torch.nn.functional.one_hot(variance[:, :, 0].argmin(1), 4).permute(0, 3, 1, 2).double()
    model.weights = lambda x: one_hot  # the filter's hard choice in place of the learned one
    torch.testing.assert_close(model(images), kuwahara(images, 3))


def test_one_step_reaches_every_parameter_and_training_learns_the_filter():
    torch.manual_seed(0)
    photos = torch.rand(64, 3, 16, 16)
    pairs = torch.cat([photos, kuwahara(photos, 2)], 1)
    model = build_model("kuwahara-net", image_shape=(6, 16, 16), radius=2, width=8, lr=1e-2)
    optimizer = model.configure_optimizers()["model"]

    class Context:
        def optimize(self, name, loss):
            optimizer.zero_grad()
            loss.backward()
            for label, p in model.named_parameters():
                assert p.grad is not None and p.grad.abs().max() > 0, label
            optimizer.step()

    first = model.training_step((pairs,), Context())["loss/l1"]
    for _ in range(60):
        last = model.training_step((pairs,), Context())["loss/l1"]
    assert last < 0.7 * first


def test_restore_takes_any_size_and_bad_input_is_named():
    model = KuwaharaNet((6, 16, 16), radius=2, width=4)
    assert model.receptive_field == 13 and model.channels == 3 and model.output_channels == 3
    out = model.restore(torch.rand(2, 3, 21, 30))
    assert out.shape == (2, 3, 21, 30) and 0 <= out.min() and out.max() <= 1
    photos, renderings = model.split(torch.rand(2, 6, 16, 16))
    assert photos.shape == renderings.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        model.restore(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="longer than radius"):
        model(torch.rand(1, 3, 2, 8))
    with pytest.raises(ValueError, match="6 x H x W"):
        model.split(torch.rand(2, 4, 16, 16))
    with pytest.raises(ValueError, match="C must be 2"):
        KuwaharaNet((4, 16, 16))
    with pytest.raises(ValueError, match="radius must be an int"):
        KuwaharaNet((6, 16, 16), radius=0)


def test_train_on_the_oil_pairs_and_apply_through_the_command_line(tmp_path):
    from aigc_lab.cli import main
    from aigc_lab.images import read_image_file, write_image_file

    run = tmp_path / "run"
    argv = ["train", "kuwahara-net", "--data", "pairs", "--data-option", "task=oil", "--data-option", "size=32",
            "--data-option", "n=8", "--param", "width=4", "--steps", "2", "--batch-size", "4", "--run-dir", str(run)]  # fmt: skip
    assert main(argv) == 0
    photo = tmp_path / "photo.png"
    write_image_file(photo, torch.rand(3, 21, 30))
    assert main(["apply", str(run), str(photo), "--out", str(tmp_path / "out")]) == 0
    assert read_image_file(tmp_path / "out" / "photo.png").shape == (3, 21, 30)
