"""Chapter 6.1's image-to-image pipeline: augmentation, the blind denoiser, image files, and `apply` on a reader's files."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from aigc_lab.cli import main
from aigc_lab.contract import ImageToImageModel, StepContext
from aigc_lab.data import load_dataset
from aigc_lab.degradations import augment
from aigc_lab.images import read_image_file, write_image_file
from aigc_lab.models import MODELS, build_model
from aigc_lab.models.denoising import Denoiser
from aigc_lab.restore import apply_to_files, evaluate_restoration, restore_image
from aigc_lab.similarity import psnr

pytestmark = pytest.mark.usefixtures("one_thread")


def _dihedral(image):
    """The eight orientations of a square image."""
    turns = [torch.rot90(image, k, dims=(-2, -1)) for k in range(4)]
    return turns + [t.flip(-1) for t in turns]


def test_augment_gives_each_image_one_of_its_eight_orientations_reproducibly():
    images = torch.rand(64, 1, 6, 6)
    out = augment(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, augment(images, generator=torch.Generator().manual_seed(3)))
    seen = set()
    for image, result in zip(images, out):
        matches = [k for k, candidate in enumerate(_dihedral(image)) if torch.equal(candidate, result)]
        assert matches, "an augmented image is not an orientation of its input"
        seen.add(matches[0])
    assert len(seen) == 8, f"64 images used only orientations {sorted(seen)}"
    wide = augment(torch.rand(16, 3, 4, 7), generator=torch.Generator().manual_seed(0))
    assert wide.shape == (16, 3, 4, 7)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        augment(torch.full((1, 1, 4, 4), 2.0))


def test_every_image_to_image_model_is_registered_and_named_as_the_command_line_says():
    for name in ("denoiser", "super-resolution", "inpainter", "low-light", "low-light-paired"):
        assert issubclass(MODELS[name], ImageToImageModel) and MODELS[name].name == name


@pytest.mark.parametrize("channels", [1, 3])
def test_the_denoiser_trains_every_parameter_and_a_few_steps_lower_the_error(channels):
    torch.manual_seed(0)
    train = load_dataset("photos", "train", patch_size=32, n_patches=256, seed=0, channels=channels).images
    test = load_dataset("photos", "test", patch_size=32, n_patches=32, seed=0, channels=channels).images
    model = Denoiser((channels, 32, 32), width=8)
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    model.training_step((train[:16], None), ctx)
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without a gradient: {missing}"
    before = evaluate_restoration(model, test, seed=1)
    for step in range(60):
        ctx.step = step
        logs = model.training_step((train[torch.randint(256, (16,))], None), ctx)
    assert set(logs) == {"loss/mse"}
    after = evaluate_restoration(model, test, seed=1)
    assert after["input_psnr"] == pytest.approx(before["input_psnr"]), "the same seed must give the same noise"
    assert after["psnr"] > before["psnr"] + 3, (before, after)


def test_the_denoisers_learning_rate_is_constant_or_a_cosine_to_zero():
    constant = Denoiser((1, 16, 16), width=8, lr=2e-3)
    assert constant.learning_rate(0) == constant.learning_rate(10_000) == 2e-3
    decayed = Denoiser((1, 16, 16), width=8, lr=2e-3, decay_steps=100)
    assert decayed.learning_rate(0) == pytest.approx(2e-3)
    assert decayed.learning_rate(50) == pytest.approx(1e-3)
    assert decayed.learning_rate(100) == decayed.learning_rate(500) == pytest.approx(0.0)
    ctx = StepContext(decayed.configure_optimizers(), None, torch.device("cpu"))
    ctx.step = 50  # a resumed run: the rate follows the step, not the number of calls
    decayed.training_step((torch.rand(2, 1, 16, 16), None), ctx)
    assert ctx.optimizers["denoiser"].param_groups[0]["lr"] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="decay_steps must be a non-negative integer"):
        Denoiser(decay_steps=-1)


def test_the_denoiser_is_blind_over_its_range_and_checks_its_settings():
    model = Denoiser((1, 16, 16), width=8, sigma_range=(10, 20))
    clean = torch.full((200, 1, 32, 32), 0.5)
    noisy, mask = model.damage(clean, torch.Generator().manual_seed(0))
    sigmas = (noisy - clean).flatten(1).std(1) * 255
    assert mask is None and 9 < sigmas.min() and sigmas.max() < 21 and sigmas.std() > 2  # 1024 pixels: each level within 5%
    with pytest.raises(ValueError, match="0-255"):
        Denoiser(sigma_range=(-5, 10))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        Denoiser((2, 16, 16))
    with pytest.raises(ValueError, match="takes no mask"):
        model.restore(clean[:1], torch.zeros(1, 1, 32, 32))


def test_image_files_round_trip_in_gray_colour_and_16_bit(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (13, 7), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    read = read_image_file(tmp_path / "g.png")
    assert read.shape == (1, 13, 7) and torch.equal((read * 255).round().byte()[0], torch.from_numpy(gray))
    rgba = rng.integers(0, 256, (5, 9, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "c.png")
    assert read_image_file(tmp_path / "c.png").shape == (3, 5, 9)
    deep = rng.integers(0, 65536, (6, 4), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    assert torch.allclose(read_image_file(tmp_path / "d.png")[0], torch.from_numpy(deep / 65535).float())
    written = write_image_file(tmp_path / "sub" / "w.png", read)
    assert torch.equal(read_image_file(written), read)
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match="could not read image .*bad.png"):
        read_image_file(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError, match="no image file"):
        read_image_file(tmp_path / "none.png")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_image_file(tmp_path / "x.png", read * 2)


@pytest.mark.parametrize(
    ("name", "hparams", "scale"),
    [
        ("denoiser", {"width": 8}, 1),
        ("super-resolution", {"scale": 3, "width": 8}, 3),
        ("low-light", {"width": 8}, 1),
        ("low-light-paired", {"width": 8, "levels": 2}, 1),
        ("inpainter", {"width": 8, "levels": 2}, 1),
    ],
)
@pytest.mark.parametrize("model_channels", [1, 3])
def test_restore_image_keeps_gray_gray_and_colour_colour_at_any_size(name, hparams, scale, model_channels):
    torch.manual_seed(0)
    model = build_model(name, image_shape=(model_channels, 48, 48), **hparams).eval()
    for channels in (1, 3):
        image = torch.rand(channels, 23, 17)
        mask = torch.zeros(1, 23, 17) if model.needs_mask else None
        if mask is not None:
            mask[:, 5:9, 3:12] = 1
        out = restore_image(model, image, mask)
        assert out.shape == (channels, 23 * scale, 17 * scale)
        assert 0 <= out.min() and out.max() <= 1
        if mask is not None:  # the inpainter keeps the known pixels
            keep = mask.expand_as(image) == 0
            assert torch.allclose(out[keep], image[keep])


@pytest.fixture(scope="module")
def denoiser_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("apply") / "denoiser"
    argv = ["train", "denoiser", "--data", "photos", "--data-option", "channels=1", "--steps", "3", "--batch-size", "4", "--param", "width=8", "--run-dir", str(run)]
    assert main(argv) == 0
    return run


def _write(path, shape):
    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_train_defaults_an_image_to_image_model_to_patches_and_eval_measures_it(denoiser_run, capsys):
    config = json.loads((denoiser_run / "config.json").read_text())
    assert config["data"] == {"name": "photos", "channels": 1, "patch_size": 48, "n_patches": 4000}
    capsys.readouterr()
    assert main(["eval", str(denoiser_run), "--n", "8"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "denoiser" and result["n_test_images"] == 8
    assert {"psnr", "ssim", "input_psnr"} <= set(result)


def test_apply_writes_one_image_per_input_with_its_name_mode_and_size(denoiser_run, tmp_path, capsys):
    gray = _write(tmp_path / "gray.png", (31, 45))
    colour = _write(tmp_path / "colour photo.jpg", (27, 19, 3))
    out = tmp_path / "restored"
    assert main(["apply", str(denoiser_run), str(gray), str(colour), "--out", str(out)]) == 0
    assert "wrote 2 restored images" in capsys.readouterr().out
    with Image.open(out / "gray.png") as image:
        assert image.mode == "L" and image.size == (45, 31)
    with Image.open(out / "colour photo.jpg") as image:
        assert image.mode == "RGB" and image.size == (19, 27)


def test_apply_super_resolution_multiplies_the_size(tmp_path):
    model = build_model("super-resolution", image_shape=(3, 48, 48), scale=2, width=8)
    written = apply_to_files(model, [_write(tmp_path / "a.png", (11, 14, 3))], tmp_path / "out")
    with Image.open(written[0]) as image:
        assert image.size == (28, 22) and image.mode == "RGB"


def test_apply_inpaints_with_a_mask_file_and_keeps_the_known_pixels(tmp_path):
    torch.manual_seed(0)
    model = build_model("inpainter", image_shape=(1, 32, 32), width=8, levels=2)
    image = _write(tmp_path / "photo.png", (20, 26))
    mask = np.zeros((20, 26), dtype=np.uint8)
    mask[4:10, 6:15] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    (written,) = apply_to_files(model, [image], tmp_path / "out", mask=tmp_path / "mask.png")
    before, after = np.asarray(Image.open(image)), np.asarray(Image.open(written))
    assert np.array_equal(before[mask == 0], after[mask == 0])
    with pytest.raises(ValueError, match="needs --mask"):
        apply_to_files(model, [image], tmp_path / "out")
    Image.fromarray(mask[:10]).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="a mask must have the image's size"):
        apply_to_files(model, [image], tmp_path / "out", mask=tmp_path / "small.png")


@pytest.mark.parametrize(
    ("make_argv", "message"),
    [
        (lambda run, d: ["apply", str(run), str(d / "bad.png"), "--out", str(d / "o")], "could not read image"),
        (lambda run, d: ["apply", str(run), str(d / "none.png"), "--out", str(d / "o")], "no image file"),
        (lambda run, d: ["apply", str(run), str(d / "ok.png"), "--mask", str(d / "ok.png"), "--out", str(d / "o")], "--mask is for an inpainter"),
        (lambda run, d: ["apply", str(run), str(d / "ok.png"), "--out", str(d)], "would overwrite the input"),
        (lambda run, d: ["apply", str(run), str(d / "ok.png"), str(d / "x" / "ok.png"), "--out", str(d / "o")], "two inputs are named"),
        (lambda run, d: ["apply", str(d), str(d / "ok.png"), "--out", str(d / "o")], "is not a training run"),
    ],
)
def test_apply_bad_input_is_one_line_and_exit_code_2(denoiser_run, tmp_path, capsys, make_argv, message):
    (tmp_path / "bad.png").write_text("not an image")
    _write(tmp_path / "ok.png", (12, 12))
    (tmp_path / "x").mkdir()
    _write(tmp_path / "x" / "ok.png", (12, 12))
    assert main(make_argv(denoiser_run, tmp_path)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists(), "a failed apply must write nothing"


def test_apply_refuses_a_run_that_is_not_image_to_image(tmp_path, capsys):
    run = tmp_path / "vae"
    assert main(["train", "vae", "--data", "digits", "--steps", "2", "--batch-size", "8", "--run-dir", str(run)]) == 0
    _write(tmp_path / "ok.png", (12, 12))
    capsys.readouterr()
    assert main(["apply", str(run), str(tmp_path / "ok.png"), "--out", str(tmp_path / "o")]) == 2
    assert "is a 'vae' run; apply needs an image-to-image model" in capsys.readouterr().err


def test_a_trained_denoiser_beats_the_noise_on_held_out_photos_by_a_margin():
    """Sanity of the whole pipeline at a small scale: fit, patches, augmentation, blind noise."""
    from aigc_lab.train import TrainConfig, fit

    torch.manual_seed(0)
    data = load_dataset("photos", "train", patch_size=32, n_patches=512, seed=0, channels=1)
    model = Denoiser((1, 32, 32), width=8)
    fit(model, data, _tmp_run(), TrainConfig(steps=300, batch_size=16, seed=0, checkpoint_every=1000), device="cpu")
    test = load_dataset("photos", "test", patch_size=32, n_patches=32, seed=0, channels=1).images
    noisy = test + torch.randn(test.shape, generator=torch.Generator().manual_seed(2)) * 25 / 255
    gain = psnr(model.restore(noisy), test).mean() - psnr(noisy.clamp(0, 1), test).mean()
    assert gain > 3, f"only {gain:.2f} dB above the noisy input at sigma 25"


def _tmp_run():
    import tempfile

    return tempfile.mkdtemp(prefix="denoiser-fit-")
