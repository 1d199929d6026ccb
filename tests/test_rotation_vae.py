import math

import pytest
import torch

from aigc_lab.models import build_model
from aigc_lab.models.rotation_vae import RotationVAE
from aigc_lab.runs import load_run
from aigc_lab.train import TrainConfig, fit

SMALL = dict(image_shape=(3, 8, 8), content_dim=1, hidden=16, template=8, rotations=4, levels=5, num_classes=6, label_factors=[2, 3])


def _images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Coloured squares on black at exact gray levels k / 4, with their labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 3, 8, 8)
    labels = torch.randint(0, 6, (n,), generator=g)
    for i in range(n):
        top, left = torch.randint(0, 4, (2,), generator=g).tolist()
        x[i, labels[i] % 3, top : top + 4, left : left + 4] = 1.0
    return x, labels


def _decoder_inputs(model: RotationVAE) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(1, model.latent_dim), torch.tensor([4])


def test_an_unturned_unmoved_code_draws_the_template_itself():
    torch.manual_seed(0)
    model = RotationVAE(**SMALL)
    z, label = _decoder_inputs(model)
    template = model.decoder.templates(z, label)  # (1, C*P, 8, 8)
    drawn = model.decoder.render(z, label, torch.zeros(1, 1))[0, 0]  # (C*H*W, P)
    p = model.decoder.per_pixel
    expected = template.view(3, p, 8, 8).permute(0, 2, 3, 1).reshape(-1, p)
    torch.testing.assert_close(drawn, expected, atol=1e-5, rtol=0)


def test_a_quarter_turn_is_torch_rot90_clockwise_on_screen():
    torch.manual_seed(0)
    model = RotationVAE(**SMALL)
    z, label = _decoder_inputs(model)
    p = model.decoder.per_pixel
    template = model.decoder.templates(z, label).view(3, p, 8, 8)
    drawn = model.decoder.render(z, label, torch.full((1, 1), math.pi / 2))[0, 0]
    clockwise = torch.rot90(template, -1, dims=(2, 3)).permute(0, 2, 3, 1).reshape(-1, p)  # rot90's k=1 turns counter-clockwise
    torch.testing.assert_close(drawn, clockwise, atol=1e-5, rtol=0)


def test_the_likelihood_sums_every_angle_out_exactly():
    torch.manual_seed(0)
    model = RotationVAE(**SMALL).eval()
    x, labels = _images(4)
    levels = model.to_levels(x)
    z = torch.randn(4, model.latent_dim)
    per_angle = torch.stack(
        [model.decoder.log_prob(model.decoder.render(z, labels, torch.full((4, 1), float(a)))[:, 0], levels) for a in model.angles], dim=1
    )
    # log (1/K) sum_k p(x | z, theta_k), each angle rendered on its own
    expected = torch.logsumexp(per_angle.double(), dim=1) - math.log(len(model.angles))
    torch.testing.assert_close(model._marginal_log_likelihood(z, labels, levels).double(), expected, atol=1e-3, rtol=1e-5)


def test_one_angle_is_the_plain_likelihood_of_the_unturned_template():
    torch.manual_seed(0)
    model = RotationVAE(**{**SMALL, "rotations": 1}).eval()
    x, labels = _images(3)
    levels = model.to_levels(x)
    z = torch.randn(3, model.latent_dim)
    plain = model.decoder.log_prob(model.decoder.render(z, labels, torch.zeros(3, 1))[:, 0], levels)
    torch.testing.assert_close(model._marginal_log_likelihood(z, labels, levels), plain)


def test_training_lowers_the_bound_and_the_run_reloads(tmp_path):
    torch.manual_seed(0)
    x, labels = _images(64)

    class Squares(torch.utils.data.Dataset):
        images, name, split, transform = x, "squares", "train", None

        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return x[i], labels[i]

        @property
        def labels(self):
            return labels

    model = RotationVAE(**SMALL)
    history = fit(model, Squares(), tmp_path, TrainConfig(steps=40, batch_size=16, log_every=1), device="cpu")
    steps, values = history.scalars["nelbo"]
    assert sum(values[-5:]) / 5 < sum(values[:5]) / 5
    rebuilt = build_model("rotation-vae", **model.hparams)
    assert rebuilt.hparams == model.hparams
    loaded, config = load_run(tmp_path, device="cpu")
    assert config["model"] == "rotation-vae"
    model.eval()
    g = lambda: torch.Generator().manual_seed(3)
    torch.testing.assert_close(loaded.sample(6, generator=g()), model.sample(6, generator=g()))
    result = loaded.evaluate(Squares(), k=8)
    assert result["iw_nll_nats"] <= result["nelbo_nats"] + 1e-3


def test_samples_reconstructions_and_decodes_are_images_of_the_asked_shape():
    torch.manual_seed(0)
    model = RotationVAE(**SMALL).eval()
    x, labels = _images(5)
    samples = model.sample(5, labels=labels, generator=torch.Generator().manual_seed(0))
    again = model.sample(5, labels=labels, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 3, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    torch.testing.assert_close(samples, again)
    assert model.reconstruct(x, labels).shape == (5, 3, 8, 8)
    z = torch.zeros(2, model.latent_dim)
    turned = model.decode(z, labels[:2], angle=torch.tensor([0.0, math.pi / 2]), mode="sample", generator=torch.Generator().manual_seed(1))
    assert turned.shape == (2, 3, 8, 8)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"rotations": 0}, "rotations must be an integer >= 1"),
        ({"template": 1}, "template must be an integer >= 2"),
        ({"shift_scale": 0.0}, "shift_scale must be a positive number"),
        ({"image_shape": (3, 8, 4)}, "H == W"),
        ({"label_factors": [2, 2]}, "multiply to num_classes=6"),
        ({"likelihood": "gaussian"}, "likelihood must be one of"),
    ],
)
def test_bad_settings_are_refused_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        RotationVAE(**{**SMALL, **change})


def test_bad_codes_and_angles_are_refused_by_name():
    model = RotationVAE(**SMALL)
    with pytest.raises(ValueError, match=r"z must have shape \(N, 4\)"):
        model.decode(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="one angle per code"):
        model.decode(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), angle=torch.zeros(3))
