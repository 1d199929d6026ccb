"""Chapter 6.3's face experiments: the data as the models see it, and the memorisation measurement."""

import pytest
import torch

from aigc_lab import face_study


def test_face_data_is_the_faces_at_32_pixels_on_256_levels():
    train, test, only = (face_study.face_data(split) for split in ("train", "test", "train-only"))
    assert train.images.shape == (160, 1, 32, 32) and test.images.shape == (20, 1, 32, 32) and len(only) == 80
    for data in (train, test, only):
        levels = data.images * 255
        assert data.levels == 256 and torch.equal(levels, levels.round())
        assert data.images.min() >= 0 and data.images.max() <= 1
    # the mirrors: resizing commutes with the flip up to float rounding, which may move a level by one
    assert torch.allclose(train.images[80:], train.images[:80].flip(-1), atol=1 / 255 + 1e-6)
    assert torch.equal(train.images[:80], only.images)
    with pytest.raises(ValueError, match="split must be 'train', 'test' or 'train-only', got 'val'"):
        face_study.face_data("val")


def test_copies_of_training_faces_are_flagged_and_held_out_faces_are_not():
    train, test = face_study.face_data("train").images, face_study.face_data("test").images
    copies = face_study.memorisation(train[:40])
    assert copies["samples_median"] == 0 and copies["closer_than_any_test"] == 1
    held_out = face_study.memorisation(test)
    assert held_out["closer_than_any_test"] == 0  # none is nearer than the nearest of them
    assert held_out["test_median"] == copies["test_median"] > 0.05
    # a blurred face is near every face: the measurement alone cannot tell blur from copying
    blurred = torch.nn.functional.avg_pool2d(test, 5, stride=1, padding=2, count_include_pad=False)
    assert face_study.memorisation(blurred)["samples_median"] < held_out["test_median"]


def test_frechet_draws_needs_a_full_set():
    class Features:  # a stand-in judge: the mean and spread of each image's pixels
        def features(self, images, **_):
            flat = images.flatten(1)
            return torch.stack([flat.mean(1), flat.std(1)], 1)

    train = face_study.face_data("train").images
    draws = face_study.frechet_draws(train, judge=Features())
    assert len(draws) == 2 and all(d >= 0 for d in draws)  # 160 images: two sets of 80
    # each draw is the distance of one block of 80 to the held-out faces
    from aigc_lab import metrics

    assert draws[1] == pytest.approx(metrics.frechet_distance(train[80:], face_study.face_data("test").images, classifier=Features()))
    with pytest.raises(ValueError, match="need at least 80 samples"):
        face_study.frechet_draws(torch.rand(10, 1, 32, 32), judge=Features())


def test_unknown_model_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown face model 'faces-gan'; expected one of faces-dcgan, faces-vae"):
        face_study.train("faces-gan", tmp_path)
