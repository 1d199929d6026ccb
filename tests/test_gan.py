import pytest
import torch
from conftest import TinyImages

from aigc_lab.losses import gradient_penalty, nonsaturating_discriminator_loss, nonsaturating_generator_loss, wgan_critic_loss
from aigc_lab.data.shapes import COLOUR_NAMES, SHAPE_KINDS, class_attributes, shape_class
from aigc_lab.models import MODELS, build_model
from aigc_lab.models.conditioning import FactorisedEmbedding
from aigc_lab.models.gan import DCGAN, WGAN, ConvCritic, ConvGenerator, check_image_shape
from aigc_lab.train import StepContext, TrainConfig, fit
from aigc_lab.runs import load_run

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(image_shape=(1, 8, 8), z_dim=4, g_width=4, d_width=4)
K = 3
# (model class, extra settings): every loss/constraint with every way to condition.
VARIANTS = [
    (DCGAN, {}),
    (WGAN, {"constraint": "none"}),
    (WGAN, {"constraint": "clip"}),
    (WGAN, {"constraint": "gp"}),
] + [
    (cls, {**extra, "num_classes": K, "conditioning": c})
    for c in ("concat", "embedding", "projection")
    for cls, extra in ((DCGAN, {}), (WGAN, {"constraint": "gp"}))
]
IDS = [f"{cls.name}-{extra.get('constraint', '')}-{extra.get('conditioning', 'uncond')}" for cls, extra in VARIANTS]


def make(cls, extra, **more):
    torch.manual_seed(0)
    return cls(**{**TINY, **extra, **more})


def batch(n=8, k=K, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % k


def context(model):
    return StepContext(model.configure_optimizers(), None, torch.device("cpu"))


def test_both_models_are_registered():
    assert MODELS["dcgan"] is DCGAN and MODELS["wgan"] is WGAN
    assert isinstance(build_model("wgan", constraint="clip", **TINY), WGAN)
    assert DCGAN.default_steps == 3000 and WGAN.default_steps == 2000  # the command line's defaults
    assert build_model("wgan", constraint="none", **TINY).default_steps == WGAN.RECOMMENDED_STEPS["none"]


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16), (3, 32, 32)])
def test_shapes_for_every_supported_size(shape):
    model = WGAN(image_shape=shape, z_dim=4, g_width=2, d_width=2, num_classes=2, conditioning="concat")
    images = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, *shape) and images.min() >= 0 and images.max() <= 1
    assert model.critic(images * 2 - 1, torch.tensor([0, 1, 0])).shape == (3,)


@pytest.mark.parametrize(("cls", "extra"), VARIANTS, ids=IDS)
def test_every_parameter_gets_a_gradient(cls, extra):
    model = make(cls, extra)
    x, y = batch()
    x = x * 2 - 1
    labels = (y,) if model.num_classes else ()
    fake = model.generator(torch.randn(8, 4), *labels)
    critic_loss = wgan_critic_loss(model.critic(x, *labels), model.critic(fake.detach(), *labels))
    if extra.get("constraint") == "gp":
        critic_loss = critic_loss + gradient_penalty(model.critic, x, fake, *labels)
    critic_loss.backward()
    model.generator.zero_grad()
    (-model.critic(fake, *labels).mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"


def test_the_wgan_critic_loss_is_minus_the_source_objective():
    # Without a constraint the critic's whole loss is -L, L = E[D(x)] - E[D(G(z))] (logged as wasserstein).
    model = make(WGAN, {"constraint": "none", "n_critic": 1})
    metrics = model.training_step(batch(), context(model))
    assert metrics["critic"].item() == pytest.approx(-metrics["wasserstein"].item())
    assert "gradient_penalty" not in metrics
    model = make(WGAN, {"constraint": "gp", "n_critic": 1})
    metrics = model.training_step(batch(), context(model))
    assert metrics["critic"].item() == pytest.approx(-metrics["wasserstein"].item() + 10 * metrics["gradient_penalty"].item(), rel=1e-5)


@pytest.mark.parametrize(("cls", "extra"), VARIANTS, ids=IDS)
def test_training_steps_change_both_networks(cls, extra):
    model = make(cls, {**extra, "n_critic": 2} if cls is WGAN else extra)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = context(model)
    for step in range(2):
        ctx.step = step
        metrics = model.training_step(batch(seed=step), ctx)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in metrics.values())
    for prefix in ("generator.", "critic."):
        changed = [
            k for k, v in model.state_dict().items() if k.startswith(prefix) and v.is_floating_point() and not torch.equal(v, before[k])
        ]
        assert changed, f"no {prefix[:-1]} weight changed"


@pytest.mark.parametrize(
    ("cls", "extra", "key"),
    [(DCGAN, {}, "discriminator"), (WGAN, {"constraint": "gp"}, "critic"), (WGAN, {"constraint": "none"}, "critic")],
)
def test_a_few_steps_teach_the_critic_to_tell_real_from_fake(cls, extra, key):
    # Real images are a bright square; after a few steps the critic's loss falls and it scores them above the fakes.
    torch.manual_seed(0)
    model = cls(**{**TINY, **extra, "d_width": 8, "lr": 1e-3, **({"n_critic": 2} if cls is WGAN else {})})
    real = torch.zeros(16, 1, 8, 8)
    real[:, :, 2:6, 2:6] = 1
    ctx = context(model)
    losses = []
    for step in range(10):
        ctx.step = step
        losses.append(float(model.training_step((real, torch.zeros(16, dtype=torch.long)), ctx)[key]))
    assert sum(losses[-3:]) < sum(losses[:3])
    model.eval()
    with torch.no_grad():
        assert model.critic(real * 2 - 1).mean() > model.critic(model.generator(torch.randn(16, 4))).mean()


def test_clipping_keeps_every_critic_weight_in_range():
    model = make(WGAN, {"constraint": "clip", "clip_value": 0.02, "lr": 1e-2, "num_classes": K, "conditioning": "projection"})
    assert max(float(p.detach().abs().max()) for p in model.critic.parameters()) > 0.02  # the initial weights are not clipped
    ctx = context(model)
    model.training_step(batch(), ctx)
    assert all(float(p.detach().abs().max()) <= 0.02 for p in model.critic.parameters())
    assert model.hparams["optimizer"] == "rmsprop" and model.hparams["critic_norm"] == "none"


@pytest.mark.parametrize("conditioning", ["concat", "embedding", "projection"])
def test_the_label_changes_both_networks(conditioning):
    model = make(WGAN, {"num_classes": K, "conditioning": conditioning}).eval()
    z, x = torch.randn(4, 4), torch.rand(4, 1, 8, 8) * 2 - 1
    zeros, ones = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    with torch.no_grad():
        assert not torch.allclose(model.generator(z, zeros), model.generator(z, ones))
        assert not torch.allclose(model.critic(x, zeros), model.critic(x, ones))
    g = torch.Generator()
    default = model.sample(6, generator=g.manual_seed(1))
    assert torch.equal(default, model.sample(6, labels=torch.arange(6) % K, generator=g.manual_seed(1)))


def test_the_projection_critic_is_psi_plus_the_label_projection():
    critic = ConvCritic((1, 8, 8), width=4, num_classes=K, conditioning="projection")
    x, y = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 1, 0])
    phi = critic.phi(x)
    expected = critic.psi(phi)[:, 0] + (critic.embed(y) * phi).sum(1)  # Miyato & Koyama (2018)
    assert torch.allclose(critic(x, y), expected)


def test_bad_inputs_raise_clear_errors():
    for shape, match in [
        ((1, 8, 6), "H == W"),
        ((1, 12, 12), "power of two"),
        ((1, 4, 4), ">= 8"),
        ((8, 8), r"\(C, H, W\)"),
        (None, r"\(C, H, W\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            WGAN(image_shape=shape)
    with pytest.raises(ValueError, match="constraint must be one of 'none', 'clip', 'gp'"):
        WGAN(constraint="lipschitz")
    with pytest.raises(ValueError, match="conditioning must be one of"):
        DCGAN(num_classes=3, conditioning="film")
    with pytest.raises(ValueError, match="norm must be one of"):
        DCGAN(critic_norm="instance")
    with pytest.raises(ValueError, match="batch norm mixes"):
        WGAN(constraint="gp", critic_norm="batch")
    with pytest.raises(ValueError, match="n_critic"):
        WGAN(n_critic=0)
    with pytest.raises(ValueError, match="num_classes"):
        DCGAN(num_classes=-1)
    model = make(WGAN, {"num_classes": K})
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        model.sample(2, labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        model.sample(2, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="critic input must be 8 x 8"):
        model.critic(torch.zeros(2, 1, 16, 16), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="z must have shape"):
        model.generator(torch.zeros(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unconditional"):
        make(DCGAN, {}).sample(2, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):  # images in [-1, 1] given as training data
        make(DCGAN, {}).training_step((torch.full((4, 1, 8, 8), -1.0), torch.zeros(4, dtype=torch.long)), context(make(DCGAN, {})))
    assert check_image_shape([3, 16, 16]) == (3, 16, 16)
    assert isinstance(ConvGenerator((1, 8, 8)), torch.nn.Module)


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("dcgan", {}),
        ("wgan", {"constraint": "clip", "num_classes": 2, "conditioning": "concat"}),
        ("wgan", {"num_classes": 4, "label_factors": (2, 2), "aux_weight": 1.0, "d_full_res": 1, "critic_lr": 1e-3}),
    ],
)
def test_save_and_load_round_trip(tmp_path, name, extra):
    torch.manual_seed(0)
    model = build_model(name, **TINY, **extra)
    data = TinyImages(n=16, shape=(1, 8, 8), num_classes=extra.get("num_classes", 2))
    fit(model, data, tmp_path, TrainConfig(steps=2, batch_size=8, log_every=1), device="cpu")
    loaded, config = load_run(tmp_path, device="cpu")
    assert type(loaded) is type(model) and loaded.hparams == model.hparams and config["step"] == 2
    model.eval()
    g = torch.Generator()
    assert torch.equal(loaded.sample(4, generator=g.manual_seed(3)), model.sample(4, generator=g.manual_seed(3)))


def test_nonsaturating_losses_are_what_the_models_minimise():
    # The DCGAN's logged losses are the non-saturating losses of its critic's logits on the batch.
    model = make(DCGAN, {})
    x, y = batch()
    torch.manual_seed(1)
    metrics = model.training_step((x, y), context(model))
    assert metrics["discriminator"] > 0 and metrics["generator"] > 0
    assert 0 < metrics["real_prob"] < 1 and 0 < metrics["fake_prob"] < 1
    logits = torch.tensor([0.0])
    assert nonsaturating_discriminator_loss(logits, logits).item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())
    assert nonsaturating_generator_loss(logits).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


@pytest.mark.parametrize("conditioning", ["concat", "embedding", "projection"])
def test_the_conditional_critic_estimates_the_source_l_cgan(conditioning):
    # L_cGAN = E[D(x, y)] - E[D(G(z, y), y)]: real images scored with their own labels, generated
    # ones with the labels they were generated for (the same labels, paired).
    model = make(WGAN, {"constraint": "none", "n_critic": 1, "num_classes": K, "conditioning": conditioning})
    x, y = batch()
    torch.manual_seed(5)
    with torch.no_grad():
        fake = model.generator(torch.randn(len(y), model.generator.z_dim), y)
        expected = model.critic(x * 2 - 1, y).mean() - model.critic(fake, y).mean()
        # scoring the generated images with other labels gives another number: the pairing matters
        mispaired = model.critic(x * 2 - 1, y).mean() - model.critic(fake, (y + 1) % K).mean()
    assert mispaired.item() != pytest.approx(expected.item(), rel=1e-4)
    torch.manual_seed(5)  # the step draws the same noise
    metrics = model.training_step((x, y), context(model))
    assert metrics["wasserstein"].item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)


def test_the_auxiliary_classifier_terms_are_cross_entropies_of_the_critic_logits():
    # AC-GAN (Odena et al., 2017): the critic adds CE(C(phi(x)), y) on real images, the generator
    # CE(C(phi(G(z, y))), y) on its own; both logged, and the source's estimate is unchanged.
    model = make(WGAN, {"constraint": "none", "n_critic": 1, "num_classes": K, "conditioning": "projection", "aux_weight": 0.5})
    x, y = batch()
    torch.manual_seed(5)
    with torch.no_grad():
        fake = model.generator(torch.randn(len(y), model.generator.z_dim), y)
        real_scores, real_logits = model.critic.score_and_logits(x * 2 - 1, y)
        expected_distance = real_scores.mean() - model.critic(fake, y).mean()
        expected_aux = torch.nn.functional.cross_entropy(real_logits, y)
        # the classifier reads phi(x), which has not seen the label: its logits do not depend on y
        assert torch.equal(model.critic.score_and_logits(x * 2 - 1, (y + 1) % K)[1], real_logits)
    torch.manual_seed(5)
    metrics = model.training_step((x, y), context(model))
    assert metrics["wasserstein"].item() == pytest.approx(expected_distance.item(), rel=1e-5, abs=1e-6)
    assert metrics["aux_real"].item() == pytest.approx(expected_aux.item(), rel=1e-5)
    assert metrics["critic"].item() == pytest.approx((-expected_distance + 0.5 * expected_aux).item(), rel=1e-5, abs=1e-6)
    assert metrics["aux_fake"].item() > 0


def test_the_shapes_options_change_the_networks_and_are_stored_only_when_used():
    plain = make(WGAN, {"num_classes": K})
    for key in ("aux_weight", "g_full_res", "d_full_res", "critic_lr", "label_factors"):
        assert key not in plain.hparams  # runs saved before these options existed load unchanged
    model = make(WGAN, {"num_classes": K, "aux_weight": 1.0, "g_full_res": 1, "d_full_res": 1, "critic_lr": 1e-3})
    assert model.hparams["aux_weight"] == 1.0 and model.hparams["critic_lr"] == 1e-3
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in plain.parameters())
    optimizers = model.configure_optimizers()
    assert optimizers["critic"].param_groups[0]["lr"] == 1e-3
    assert optimizers["generator"].param_groups[0]["lr"] == model.hparams["lr"]
    full_res = [m for m in model.critic.phi if isinstance(m, torch.nn.Conv2d) and m.stride == (1, 1) and m.kernel_size == (3, 3)]
    assert len(full_res) == 2  # the new full-resolution layer and the existing one at 4 x 4
    with pytest.raises(ValueError, match="aux_weight must be a number >= 0"):
        WGAN(num_classes=K, aux_weight=-1.0)
    with pytest.raises(ValueError, match="needs labels"):
        WGAN(aux_weight=1.0)
    with pytest.raises(ValueError, match="conditioning='concat'"):
        WGAN(num_classes=K, conditioning="concat", aux_weight=1.0)
    with pytest.raises(ValueError, match="g_full_res must be an integer >= 0"):
        WGAN(g_full_res=-1)
    with pytest.raises(ValueError, match="critic_lr must be a positive number"):
        WGAN(critic_lr=0.0)


def test_factorised_label_embeddings_are_one_sum_of_attribute_embeddings_in_both_networks():
    # shapes' 30 classes are 5 shapes x 6 colours; with label_factors=(5, 6) class k is embedded as
    # e_shape(k // 6) + e_colour(k % 6) in the generator's input and in the critic's projection.
    model = make(WGAN, {"image_shape": (3, 8, 8), "num_classes": 30, "label_factors": [5, 6]})
    assert model.hparams["label_factors"] == [5, 6]
    for embed in (model.generator.embed, model.critic.embed):
        assert isinstance(embed, FactorisedEmbedding) and embed.num_embeddings == 30
        assert sum(p.numel() for p in embed.parameters()) == (5 + 6) * embed.tables[0].embedding_dim
        labels = torch.arange(30)
        shape, colour = embed.attributes(labels)
        assert [(SHAPE_KINDS[s], COLOUR_NAMES[c]) for s, c in zip(shape.tolist(), colour.tolist())] == [class_attributes(k) for k in range(30)]
        e = embed(labels)
        assert torch.allclose(e, embed.tables[0].weight[labels // 6] + embed.tables[1].weight[labels % 6])
        # additive: swapping the colour moves every shape's embedding by the same vector
        red, blue = COLOUR_NAMES.index("red"), COLOUR_NAMES.index("blue")
        moves = torch.stack([e[shape_class(s, blue)] - e[shape_class(s, red)] for s in SHAPE_KINDS])
        assert torch.allclose(moves, moves[0].expand_as(moves), atol=1e-6)
    # three attributes: mixed radix, the last one fastest
    three = FactorisedEmbedding((2, 3, 4), 5)
    assert [a.tolist() for a in three.attributes(torch.tensor([0, 1, 4, 23]))] == [[0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 0, 3]]
    # the labels still change the samples, and a training step runs
    g = torch.Generator()
    assert not torch.equal(model.sample(2, labels=torch.tensor([0, 0]), generator=g.manual_seed(0)), model.sample(2, labels=torch.tensor([0, 29]), generator=g.manual_seed(0)))


def test_label_factors_reject_bad_values():
    with pytest.raises(ValueError, match=r"must multiply to num_classes=30.*their product is 25"):
        WGAN(num_classes=30, label_factors=(5, 5))
    with pytest.raises(ValueError, match="at least two integers >= 2"):
        WGAN(num_classes=30, label_factors=(30,))
    with pytest.raises(ValueError, match="at least two integers >= 2"):
        WGAN(num_classes=30, label_factors=(5, 6.0))
    with pytest.raises(ValueError, match="sequence of integers"):
        WGAN(num_classes=30, label_factors=30)
    with pytest.raises(ValueError, match="needs a conditional model"):
        WGAN(label_factors=(5, 6))
    with pytest.raises(ValueError, match="conditioning='concat'"):
        WGAN(num_classes=30, conditioning="concat", label_factors=(5, 6))


def test_best_of_keeps_the_candidate_the_critics_classifier_finds_most_likely():
    model = make(WGAN, {"num_classes": K, "aux_weight": 1.0}).eval()
    labels = torch.tensor([0, 1, 2, 2, 1])
    g = torch.Generator()
    assert torch.equal(model.sample(5, labels=labels, generator=g.manual_seed(0), best_of=1), model.sample(5, labels=labels, generator=g.manual_seed(0)))
    chosen = model.sample(5, labels=labels, generator=g.manual_seed(0), best_of=3)
    # the same three candidates by hand: the noise is drawn candidate after candidate
    g.manual_seed(0)
    candidates = torch.stack([model.generator(torch.randn(5, TINY["z_dim"], generator=g), labels) for _ in range(3)])  # (3, 5, C, H, W)
    with torch.no_grad():
        log_p = torch.stack([model.critic.score_and_logits(c, labels)[1].log_softmax(1)[torch.arange(5), labels] for c in candidates])
    expected = (candidates[log_p.argmax(0), torch.arange(5)] + 1) / 2
    torch.testing.assert_close(chosen, expected)
    assert not torch.equal(chosen, (candidates[0] + 1) / 2)  # some image was replaced
    with pytest.raises(ValueError, match="best_of must be an integer >= 1"):
        model.sample(2, labels=labels[:2], best_of=0)
    with pytest.raises(ValueError, match="train the model with aux_weight > 0"):
        make(WGAN, {"num_classes": K}).sample(2, labels=labels[:2], best_of=2)
