import pytest
import torch

from aigc_lab.losses import gradient_penalty, wgan_critic_loss, wgan_generator_loss


def test_wgan_losses_follow_the_source_objective():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.5, -0.5, 1.0])
    objective = real.mean() - fake.mean()  # L = E[D(x)] - E[D(G(z))] = 2 - 1/3
    assert wgan_critic_loss(real, fake) == pytest.approx(-objective.item())  # the critic maximises L
    assert wgan_generator_loss(fake) == pytest.approx(-fake.mean().item())  # the generator minimises L
    assert wgan_critic_loss(real[:, None], fake[:, None]) == pytest.approx(-objective.item())


def test_wgan_losses_reject_bad_scores():
    with pytest.raises(ValueError, match=r"\(N,\) or \(N, 1\)"):
        wgan_generator_loss(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="float tensor"):
        wgan_critic_loss(torch.tensor([1, 2]), torch.tensor([0.0]))


def test_gradient_penalty_of_a_linear_critic_is_known_in_closed_form():
    # D(x) = <w, x> has gradient w everywhere, so the penalty is (|w| - 1)^2 exactly.
    w = torch.tensor([3.0, 4.0])
    critic = lambda x: (x.flatten(1) * w).sum(1)  # noqa: E731
    real, fake = torch.randn(5, 1, 1, 2), torch.randn(5, 1, 1, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx((5.0 - 1.0) ** 2)


def test_gradient_penalty_matches_a_hand_computed_nonlinear_case():
    # D(x) = sum(x^2): gradient 2 x_hat, with x_hat = eps x + (1 - eps) x_tilde.
    critic = lambda x: (x**2).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    g = torch.Generator().manual_seed(0)
    penalty = gradient_penalty(critic, real, fake, generator=g)
    eps = torch.rand(4, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    x_hat = eps * real + (1 - eps) * fake
    expected = (((2 * x_hat).flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_penalty_trains_the_critic_and_passes_labels():
    critic = torch.nn.Linear(4, 1)
    seen = {}

    def labelled(x, labels):
        seen["labels"] = labels
        return critic(x.flatten(1))[:, 0]

    labels = torch.tensor([0, 1])
    penalty = gradient_penalty(labelled, torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2), labels)
    penalty.backward()
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0
    assert seen["labels"] is labels
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(labelled, torch.randn(2, 1, 2, 2), torch.randn(3, 1, 2, 2))


def test_nonsaturating_losses_follow_their_formulas():
    from aigc_lab.losses import nonsaturating_discriminator_loss, nonsaturating_generator_loss

    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0, 1.0])
    sigmoid = lambda t: 1 / (1 + torch.exp(-t))  # noqa: E731
    # D: BCE with real labelled 1 and fake 0, -E[log s(D(x))] - E[log(1 - s(D(G(z))))]
    expected_d = -torch.log(sigmoid(real)).mean() - torch.log(1 - sigmoid(fake)).mean()
    assert nonsaturating_discriminator_loss(real, fake).item() == pytest.approx(expected_d.item(), rel=1e-6)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert nonsaturating_discriminator_loss(real, fake).item() == pytest.approx(
        (bce(real, torch.ones(2)) + bce(fake, torch.zeros(3))).item(), rel=1e-6
    )
    # G: -E[log s(D(G(z)))], not the saturating E[log(1 - s(D(G(z))))]
    assert nonsaturating_generator_loss(fake).item() == pytest.approx(-torch.log(sigmoid(fake)).mean().item(), rel=1e-6)
    assert nonsaturating_generator_loss(fake[:, None]).item() == pytest.approx(nonsaturating_generator_loss(fake).item())


def test_nonsaturating_losses_are_stable_and_do_not_saturate():
    from aigc_lab.losses import nonsaturating_discriminator_loss, nonsaturating_generator_loss

    # A confident discriminator (fake logit -100): log(1 - s) would give a vanishing gradient and log s
    # computed naively would be -inf; the softplus form gives the exact 100 and a gradient of -1/N.
    fake = torch.tensor([-100.0, -100.0], requires_grad=True)
    loss = nonsaturating_generator_loss(fake)
    loss.backward()
    assert loss.item() == pytest.approx(100.0) and torch.allclose(fake.grad, torch.tensor([-0.5, -0.5]))
    assert torch.isfinite(nonsaturating_discriminator_loss(torch.tensor([200.0]), torch.tensor([-200.0])))
    with pytest.raises(ValueError, match="real_logits"):
        nonsaturating_discriminator_loss(torch.zeros(2, 2), torch.zeros(2))
