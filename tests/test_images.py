import pytest
import torch

from aigc_lab.images import check_images, to_model_range, to_unit_range


def test_accepts_valid_images_unchanged():
    x = torch.rand(2, 3, 8, 8)
    assert check_images(x, channels=(1, 3), size=(8, 8)) is x


@pytest.mark.parametrize(
    "images, match",
    [
        ([[0.0]], "torch.Tensor"),
        (torch.rand(3, 8, 8), r"N x C x H x W"),
        (torch.randint(0, 255, (2, 1, 8, 8), dtype=torch.uint8), "floating-point.*255"),
        (torch.rand(2, 1, 8, 8) * 2 - 1, r"\[0, 1\].*to_unit_range"),
        (torch.full((2, 1, 8, 8), float("nan")), "NaN"),
    ],
)
def test_rejects_bad_images_with_a_clear_message(images, match):
    with pytest.raises(ValueError, match=match):
        check_images(images)


def test_checks_channels_and_size():
    with pytest.raises(ValueError, match="1 or 3 channel"):
        check_images(torch.rand(1, 2, 4, 4), channels=(1, 3))
    with pytest.raises(ValueError, match="8 x 8 pixels, got 4 x 4"):
        check_images(torch.rand(1, 1, 4, 4), size=(8, 8))


def test_range_conversions_are_inverse():
    x = torch.rand(4, 1, 5, 5)
    y = to_model_range(x)
    assert y.min() >= -1 and y.max() <= 1
    assert torch.allclose(to_unit_range(y), x, atol=1e-6)
    assert torch.equal(to_model_range(torch.zeros(1, 1, 2, 2)), -torch.ones(1, 1, 2, 2))
