"""Perceptual losses: the Gram matrix, fixed random features, and VGG only when asked for."""

import pytest
import torch

from aigc_lab import perceptual


def test_gram_matrix_of_a_known_feature_map():
    # two channels over 2 x 1 positions: [1, 2] and [3, 4]
    features = torch.tensor([[[[1.0], [2.0]], [[3.0], [4.0]]]])
    expected = torch.tensor([[[1 + 4, 3 + 8], [3 + 8, 9 + 16]]]) / (2 * 2 * 1)
    assert torch.allclose(perceptual.gram_matrix(features), expected)
    with pytest.raises(ValueError, match="N x C x H x W"):
        perceptual.gram_matrix(features[0])


def test_random_features_are_fixed_by_the_seed_and_untrained():
    a, b, c = (perceptual.RandomFeatures(1, seed=s) for s in (0, 0, 1))
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(fa, fb) for fa, fb in zip(a(x), b(x)))
    assert not torch.equal(a(x)[0], c(x)[0])
    assert not any(p.requires_grad for p in a.parameters())
    assert [f.shape[1] for f in a(x)] == [32, 64, 128]
    state = torch.random.get_rng_state()
    perceptual.RandomFeatures(1, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())  # building it leaves the global generator alone
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        a(torch.rand(1, 3, 8, 8))


def test_feature_and_style_losses_are_zero_for_identical_images_and_have_gradients():
    net = perceptual.RandomFeatures(1)
    target = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    assert perceptual.feature_loss(net, target, target).item() == 0
    assert perceptual.style_loss(net, target, target).item() == 0
    output = (target + 0.1).requires_grad_(True)
    loss = perceptual.feature_loss(net, output, target) + perceptual.style_loss(net, output, target)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0
    # the style loss ignores where things are: a circular shift changes features but barely the Gram matrices
    shifted = torch.roll(target, shifts=(0, 16), dims=(2, 3))
    assert perceptual.style_loss(net, shifted, target).item() < 0.1 * perceptual.feature_loss(net, shifted, target).item()
    assert perceptual.feature_distance(net, output.detach(), target).shape == (2,)


def test_vgg_never_downloads_unless_asked(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        perceptual.vgg16_features()
    with pytest.raises(FileNotFoundError, match="no VGG-16 weights file"):
        perceptual.vgg16_features(tmp_path / "missing.pt")


def test_vgg_features_from_a_local_file(tmp_path):
    from torchvision.models import vgg16

    path = tmp_path / "vgg16.pt"
    torch.save(vgg16().state_dict(), path)  # random weights stand in for ImageNet's: the loading path is what is tested
    features = perceptual.vgg16_features(path)
    out = features(torch.rand(1, 1, 32, 32))
    assert [f.shape[1] for f in out] == [64, 128, 256, 512]


def test_gram_distance_ignores_layout_and_sees_blur():
    net = perceptual.RandomFeatures(1)
    image = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    shifted = torch.roll(image, shifts=(0, 16), dims=(2, 3))
    blurred = torch.nn.functional.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)
    assert perceptual.gram_distance(net, image, image).item() == 0
    assert perceptual.gram_distance(net, shifted, image).item() < 0.1 * perceptual.gram_distance(net, blurred, image).item()
