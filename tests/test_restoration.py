"""The restoration model (DnCNN with a chosen loss) and the PatchGAN discriminator."""

import pytest
import torch

from aigc_lab.data import load_dataset
from aigc_lab.models.patchgan import PatchDiscriminator
from aigc_lab.models.restoration import DnCNN, Restorer, ms_ssim_scales_for
from aigc_lab.train import TrainConfig, fit


def test_patch_discriminator_gives_one_logit_per_patch():
    d = PatchDiscriminator(1, width=8, layers=2)
    assert d(torch.rand(3, 1, 48, 48)).shape == (3, 1, 11, 11)
    assert d.receptive_field() == 22  # 4 -> (4-1)*2+4 = 10 -> (10-1)*2+4 = 22
    assert PatchDiscriminator(3, layers=3).receptive_field() == 46
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        d(torch.rand(1, 3, 48, 48))


def test_dncnn_returns_its_input_minus_the_predicted_noise():
    net = DnCNN(1, width=8, depth=3)
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net(x), x - net.body(x - 0.5))


def test_ms_ssim_scales_fit_the_patch():
    assert ms_ssim_scales_for(48) == 3
    assert ms_ssim_scales_for(161) == 5
    assert ms_ssim_scales_for(11) == 1
    with pytest.raises(ValueError, match="too small"):
        ms_ssim_scales_for(10)


def test_restorer_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown pixel loss"):
        Restorer(loss="psnr")
    with pytest.raises(ValueError, match="objective"):
        Restorer(adversarial_weight=0.1, objective="wasserstein")
    with pytest.raises(ValueError, match="at least 11 pixels"):
        Restorer((1, 8, 8))
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        Restorer()(torch.rand(1, 3, 48, 48))


@pytest.mark.parametrize(
    "settings",
    [
        {"loss": "mse"},
        {"loss": "mixed"},
        {"loss": "ssim", "feature_weight": 0.5, "style_weight": 100.0},
        {"loss": "l1", "adversarial_weight": 0.01, "objective": "hinge"},
    ],
)
def test_restorer_trains_resumes_and_evaluates(tmp_path, settings):
    data = load_dataset("photos", "train", patch_size=48, n_patches=64, channels=1)
    torch.manual_seed(0)
    model = Restorer(width=8, depth=3, **settings)
    config = TrainConfig(steps=4, batch_size=8, checkpoint_every=2)
    history = fit(model, data, tmp_path / "run", config, device="cpu")
    assert history.steps == 4
    assert "loss/pixel" in history.scalars
    if settings.get("style_weight"):
        assert "loss/style" in history.scalars and "loss/feature" in history.scalars
    if settings.get("adversarial_weight"):
        assert "loss/discriminator" in history.scalars and "loss/adversarial" in history.scalars
    # a second fit of the finished run loads it instead of training again
    again = Restorer(width=8, depth=3, **settings)
    fit(again, data, tmp_path / "run", config, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    test = load_dataset("photos", "test", patch_size=48, n_patches=4, channels=1)
    results = again.evaluate(test)
    assert set(results) == {"psnr", "ssim"}  # 48 pixels: too small for five-scale MS-SSIM
    restored = again.restore(again.degrade(test.images, generator=torch.Generator().manual_seed(0)))
    assert restored.min() >= 0 and restored.max() <= 1
