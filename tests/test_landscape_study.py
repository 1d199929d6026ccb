"""Chapter 6.3's landscapes: the data as the painters and the segmenter see them, and the agreement measure."""

import pytest
import torch

from aigc_lab import landscape_study as study
from aigc_lab.data.landscapes import LAYOUT_CLASSES


class Oracle:
    """A stand-in segmenter whose answer is a given layout, as one-hot channels."""

    def __init__(self, layout):
        self.layout = layout

    def restore(self, images):
        return torch.nn.functional.one_hot(self.layout, len(LAYOUT_CLASSES)).permute(0, 3, 1, 2).float()


def test_segmenter_data_swaps_scene_and_layout():
    plain, swapped = study.scenes("train"), study.segmenter_data()
    assert swapped.images.shape == plain.images.shape == (2000, 7, 64, 64)
    assert torch.equal(swapped.images[:, :3], plain.images[:, 4:]) and torch.equal(swapped.images[:, 3:], plain.images[:, :4])


def test_layout_agreement_counts_pixels_and_classes():
    data = study.scenes("test", n=4)
    _, scene, layout = study.layouts(data)
    perfect = study.layout_agreement(Oracle(layout), scene, layout)
    assert perfect["all"] == 1 and all(perfect[c] == 1 or perfect[c] != perfect[c] for c in LAYOUT_CLASSES)
    wrong = layout.clone()
    wrong[layout == 0] = 1  # every sky pixel read as mountain
    result = study.layout_agreement(Oracle(wrong), scene, layout)
    assert result["sky"] == 0 and result["mountain"] == 1
    assert result["all"] == pytest.approx(1 - float((layout == 0).float().mean()))
    with pytest.raises(ValueError, match="layout must be N x H x W"):
        study.layout_agreement(Oracle(layout), scene, layout[:, :10])


def test_class_mean_painting_paints_each_region_one_colour():
    data = study.scenes("test", n=3)
    _, scene, layout = study.layouts(data)
    painting = study.class_mean_painting(layout, data)
    assert painting.shape == scene.shape
    for k in range(len(LAYOUT_CLASSES)):
        region = painting.permute(1, 0, 2, 3)[:, layout == k]
        if region.numel():
            assert torch.allclose(region, region[:, :1].expand_as(region))
            assert torch.allclose(region[:, 0], scene.permute(1, 0, 2, 3)[:, layout == k].mean(1), atol=1e-5)


def test_unknown_painter_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown painter 'landscape-gan'; expected one of landscape-l1, landscape-l1-cgan"):
        study.train_painter("landscape-gan", tmp_path)
