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
