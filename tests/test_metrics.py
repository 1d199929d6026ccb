import pytest
import torch

from aigc_lab.metrics import nearest_neighbor_distance, nearest_neighbors, pixel_diversity


def test_pixel_diversity_by_hand():
    same = torch.full((5, 1, 2, 2), 0.3)
    assert pixel_diversity(same) == pytest.approx(0.0)
    two = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    assert pixel_diversity(two) == pytest.approx(torch.tensor([0.0, 1.0]).std().item())
    with pytest.raises(ValueError, match="at least 2"):
        pixel_diversity(same[:1])


def test_nearest_neighbor_distance_by_hand():
    reference = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    images = torch.stack([torch.full((1, 2, 2), 0.25), torch.ones(1, 2, 2)])
    d = nearest_neighbor_distance(images, reference, batch_size=1)
    assert d.tolist() == pytest.approx([0.25, 0.0])
    _, index = nearest_neighbors(images, reference)
    assert index.tolist() == [0, 1]


def test_nearest_neighbor_distance_checks_shapes():
    with pytest.raises(ValueError, match="same C x H x W"):
        nearest_neighbor_distance(torch.rand(2, 1, 2, 2), torch.rand(2, 1, 3, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nearest_neighbor_distance(torch.rand(2, 1, 2, 2) - 1, torch.rand(2, 1, 2, 2))
