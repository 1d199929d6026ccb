"""pix2pix (chapter 4.6): a U-Net generator and a conditional PatchGAN trained on stacked pairs."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from aigc_lab.cli import main
from aigc_lab.contract import StepContext
from aigc_lab.data import load_dataset
from aigc_lab.models import build_model, describe_models
from aigc_lab.models.pix2pix import Pix2Pix, evaluate_pairs, high_frequency_energy
from aigc_lab.train import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"width": 8, "discriminator_width": 8}


def _step(model, pairs):
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    return model.training_step((pairs, None), ctx)


def test_pix2pix_is_registered_with_the_papers_defaults():
    model = build_model("pix2pix", image_shape=(4, 32, 32), **TINY)
    assert isinstance(model, Pix2Pix) and describe_models()["pix2pix"].default_steps == Pix2Pix.default_steps
    h = Pix2Pix().hparams
    assert (h["l1_weight"], h["adversarial_weight"], h["lr"], h["betas"]) == (100.0, 1.0, 2e-4, [0.5, 0.999])
    assert Pix2Pix.train_data_options == {}  # whole pairs: the pairs dataset crops them itself


def test_the_generator_keeps_the_size_and_refuses_what_the_unet_cannot_take():
    model = Pix2Pix((4, 32, 32), **TINY)  # levels=3: sides are halved three times
    for h, w in ((32, 32), (48, 48), (40, 44)):  # 40 x 44 is padded to 40 x 48 and cropped back
        assert model.restore(torch.rand(2, 1, h, w)).shape == (2, 3, h, w)
    with pytest.raises(ValueError, match=r"sides of at least 2\*\*levels = 8 pixels"):
        model.restore(torch.rand(1, 1, 4, 16))
    with pytest.raises(ValueError, match=r"multiples of 2\*\*levels = 8"):
        Pix2Pix((4, 36, 36))
    with pytest.raises(ValueError, match=r"at least 16 pixels for a PatchGAN of 3 layers"):
        Pix2Pix((4, 8, 8), levels=1, discriminator_layers=3)
    with pytest.raises(ValueError, match="input_channels .* must leave at least one target channel"):
        Pix2Pix((4, 32, 32), input_channels=4)


def test_the_patchgan_judges_patches_of_its_documented_receptive_field():
    model = Pix2Pix((4, 64, 64), **TINY)
    assert model.discriminator.receptive_field() == 22  # two stride-2 layers, as the module says
    assert model.discriminator(torch.rand(1, 4, 64, 64)).shape == (1, 1, 15, 15)
    # One layer has no normalisation, whose statistics would link every pixel: the field shows in the gradient.
    one = Pix2Pix((4, 32, 32), discriminator_layers=1, **TINY).discriminator
    image = torch.rand(1, 4, 32, 32, requires_grad=True)
    one(image)[0, 0, 7, 7].backward()
    rows, cols = torch.nonzero(image.grad.abs().sum((0, 1)), as_tuple=True)
    assert one.receptive_field() == 10 == rows.max() - rows.min() + 1 == cols.max() - cols.min() + 1


def test_one_step_reaches_every_parameter_of_both_networks():
    torch.manual_seed(0)
    model = Pix2Pix((4, 32, 32), **TINY)
    logs = _step(model, load_dataset("pairs", task="colour", size=32, n=4).images)
    assert set(logs) == {"loss/discriminator", "real_prob", "fake_prob", "loss/l1", "loss/adversarial", "loss/generator"}
    assert 0 < logs["real_prob"] < 1 and 0 < logs["fake_prob"] < 1
    # A convolution's bias just before a normalisation of each channel on its own (instance norm; group
    # norm with one channel a group, as at width 8) has a zero gradient up to rounding: the norm subtracts it again.
    norms = (torch.nn.InstanceNorm2d, torch.nn.GroupNorm)
    removed = {
        id(a.bias)
        for seq in model.modules() if isinstance(seq, torch.nn.Sequential)
        for a, b in zip(seq, list(seq)[1:]) if isinstance(a, torch.nn.Conv2d) and isinstance(b, norms)
    }  # fmt: skip
    for net in (model.generator, model.discriminator):
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            if id(p) not in removed:
                assert p.grad.abs().max() > 1e-6, f"{type(net).__name__}.{name} got no gradient"


def test_the_ablation_is_two_weights():
    pairs = torch.rand(2, 4, 32, 32)
    l1_alone = Pix2Pix((4, 32, 32), adversarial_weight=0, **TINY)
    assert l1_alone.discriminator is None and set(l1_alone.configure_optimizers()) == {"generator"}
    logs = _step(l1_alone, pairs)
    assert set(logs) == {"loss/l1", "loss/generator"} and logs["loss/generator"] == pytest.approx(100 * logs["loss/l1"])
    cgan_alone = Pix2Pix((4, 32, 32), l1_weight=0, **TINY)
    logs = _step(cgan_alone, pairs)
    assert logs["loss/generator"] == pytest.approx(logs["loss/adversarial"])  # L1 is logged, not trained on
    with pytest.raises(ValueError, match="not both 0"):
        Pix2Pix(l1_weight=0, adversarial_weight=0)


def test_restore_translates_input_only_images_and_explains_wrong_ones():
    model = Pix2Pix((4, 32, 32), **TINY)
    images = torch.rand(3, 1, 24, 16)
    out = model.restore(images)
    assert out.shape == (3, 3, 24, 16) and 0 <= out.min() and out.max() <= 1
    assert torch.allclose(out, model.restore(images, batch_size=2), atol=1e-6)  # no dropout noise, no batch statistics
    assert model.training  # restore leaves the training mode as it found it
    pairs = torch.rand(2, 4, 32, 32)
    assert torch.equal(model.damage(pairs)[0], pairs[:, :1]) and model.damage(pairs)[1] is None
    with pytest.raises(ValueError, match=r"pix2pix restores N x 1 x H x W images"):
        model.restore(torch.rand(1, 3, 32, 32))  # a colour image is not this model's input
    with pytest.raises(ValueError, match=r"pairs must be N x 4 x H x W \(1 input channels, then 3 target channels\)"):
        model.damage(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="takes no mask"):
        model.restore(torch.rand(1, 1, 32, 32), torch.zeros(1, 1, 32, 32))


def test_high_frequency_energy_measures_sharpness():
    sharp = torch.rand(2, 3, 16, 16)
    blurred = torch.nn.functional.avg_pool2d(sharp, 3, stride=1, padding=1)
    assert (high_frequency_energy(blurred) < high_frequency_energy(sharp)).all()
    ramp = torch.linspace(0, 1, 16).expand(1, 1, 16, 16)
    assert high_frequency_energy(ramp).abs().max() < 1e-10  # a smooth gradient has none


def test_a_short_training_lowers_the_held_out_l1(tmp_path):
    train = load_dataset("pairs", "train", task="hillshade", size=32, n=64)
    test = load_dataset("pairs", "test", task="hillshade", size=32, n=16)
    torch.manual_seed(0)
    model = Pix2Pix((4, 32, 32), lr=1e-3, **TINY)  # five times the paper's rate: a visible gain in 30 steps
    before = evaluate_pairs(model, test.images)
    fit(model, train, tmp_path / "run", TrainConfig(steps=30, batch_size=8, checkpoint_every=30), device="cpu")
    after = model.evaluate(test)
    assert set(after) == {"psnr", "ssim", "l1", "hf_energy", "target_hf_energy"}
    assert after["l1"] < 0.85 * before["l1"], f"held-out L1 {before['l1']:.4f} -> {after['l1']:.4f}"  # 0.254 -> 0.191 when written
    assert after["psnr"] > before["psnr"]


def test_the_command_line_trains_and_applies_pix2pix(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "pix2pix", "--data", "pairs", "--data-option", "task=colour", "--data-option", "size=32",
            "--data-option", "n=32", "--steps", "5", "--batch-size", "8", "--param", "width=8", "--run-dir", str(run)]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"] == {"name": "pairs", "task": "colour", "size": 32, "n": 32}  # no patch options added
    assert config["hparams"]["image_shape"] == [4, 32, 32] and config["hparams"]["input_channels"] == 1
    gray = tmp_path / "gray.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 28), dtype=np.uint8)).save(gray)
    capsys.readouterr()
    assert main(["apply", str(run), str(gray), "--out", str(tmp_path / "out")]) == 0
    assert "wrote 1 restored image" in capsys.readouterr().out
    with Image.open(tmp_path / "out" / "gray.png") as image:
        assert image.mode == "RGB" and image.size == (28, 20)  # gray in, colour out, same size


def test_eval_and_apply_of_a_translation_run(tmp_path, capsys):
    """`eval` measures against the pairs' targets; `apply` gives a colour file's luma to a gray-input model."""
    import json

    import numpy as np
    from PIL import Image

    from aigc_lab.cli import main

    run = tmp_path / "run"
    assert main(["train", "pix2pix", "--data", "pairs", "--data-option", "task=colour", "--data-option", "size=32", "--steps", "2", "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--n", "8"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 < result["psnr"] < 100 and "input_psnr" not in result  # gray input is no estimate of a colour target
    colour = tmp_path / "in" / "photo.png"
    colour.parent.mkdir()
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    Image.fromarray(rgb).save(colour)
    assert main(["apply", str(run), str(colour), "--out", str(tmp_path / "out")]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    assert out.shape == (32, 32, 3)  # colour out, the image's size, in one pass (not three gray passes)
