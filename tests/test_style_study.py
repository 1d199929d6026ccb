"""Chapter 6.2's and section 4.6's study code: the tasks build, the trajectory and its reading, the recognition score."""

from __future__ import annotations

import pytest
import torch

from aigc_lab import style_study as study, style_transfer
from aigc_lab.data.shapes import COLOUR_NAMES
from aigc_lab.models import build_model


@pytest.mark.parametrize("name", list(study.TASKS))
def test_every_task_builds_its_model_on_its_data(name, monkeypatch):
    task = study.TASKS[name]
    shape = {"photos": (task.data.get("channels", 3), task.data.get("patch_size", 64), task.data.get("patch_size", 64))}.get(task.data["name"])
    if shape is None:  # pairs: input + target channels
        from aigc_lab.data.pairs import PAIR_TASKS

        n_in, n_out = PAIR_TASKS[task.data["task"]]
        shape = (n_in + n_out, task.data["size"], task.data["size"])
    model = build_model(task.model, image_shape=shape, **task.hparams)
    assert model.name == task.model and task.quick_steps < task.steps


def test_a_style_task_trains_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_LAB_QUICK", "1")
    monkeypatch.setitem(study.TASKS, "tiny", study.TASKS["style-net-oil"].__class__(
        model="style-net", hparams={"style": "oil", "style_size": 32, "width": 8, "residual_blocks": 1},
        data={"name": "photos", "channels": 3, "patch_size": 32, "n_patches": 16, "seed": 0}, steps=100, quick_steps=2, batch_size=4,
        quick_data={"n_patches": 16},
    ))  # fmt: skip
    model, history = study.train("tiny", tmp_path)
    assert history.steps == 2 and (tmp_path / "tiny").is_dir()
    again, _ = study.train("tiny", tmp_path)  # a finished run is loaded, not retrained
    assert torch.equal(again.style_gram_0, model.style_gram_0)


def test_steps_to_reach_reads_the_first_step_at_or_below():
    trajectory = [(0, 0.0, 3.0, 1.0), (5, 1.0, 2.0, 0.8), (10, 2.0, 0.5, 0.5), (15, 3.0, 0.4, 0.3)]
    assert study.steps_to_reach(trajectory, 2.0) == (5, 1.0)
    assert study.steps_to_reach(trajectory, 0.45) == (15, 3.0)
    assert study.steps_to_reach(trajectory, 0.1) is None


def test_steps_meeting_needs_both_the_distance_and_the_ssim():
    trajectory = [(0, 0.0, 3.0, 1.0), (5, 1.0, 2.0, 0.8), (10, 2.0, 0.5, 0.5), (15, 3.0, 0.4, 0.3)]
    assert study.steps_meeting(trajectory, max_distance=2.0, min_ssim=0.4) == [5, 10]
    assert study.steps_meeting(trajectory, max_distance=0.45, min_ssim=0.4) == []
    assert study.steps_meeting(trajectory, max_distance=3.0, min_ssim=0.0) == [0, 5, 10, 15]


def test_pencil_is_transferred_on_brightness_and_oil_in_colour():
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    gray = study.in_style_channels(images, "pencil")
    expected = 0.299 * images[:, 0:1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3]
    assert gray.shape == (2, 1, 8, 8) and torch.allclose(gray, expected, atol=1e-6)
    assert study.in_style_channels(images, "oil") is images
    with pytest.raises(ValueError, match="unknown style 'chalk'"):
        study.in_style_channels(images, "chalk")
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        study.in_style_channels(images[:, :1], "pencil")


def test_distance_trajectory_judges_every_few_steps_and_falls():
    g = torch.Generator().manual_seed(0)
    content = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear", align_corners=False)
    style = ((torch.arange(32) // 2) % 2).float().view(1, 1, 1, 32).expand(1, 3, 32, 32).clone()
    result, trajectory = study.distance_trajectory(content, style, steps=20, every=5, lr=0.05)
    assert [step for step, *_ in trajectory] == [0, 5, 10, 15, 20]
    seconds = [s for _, s, *_ in trajectory]
    assert seconds == sorted(seconds) and seconds[-1] > 0
    assert trajectory[-1][2] < trajectory[0][2]  # the judged style distance fell
    assert trajectory[0][3] == pytest.approx(1.0, abs=1e-4) and trajectory[-1][3] < 1.0  # the content SSIM starts at the content's own
    assert result.image.shape == content.shape


def test_distance_trajectory_keeps_the_image_of_every_judged_step_when_asked():
    g = torch.Generator().manual_seed(0)
    content = torch.rand(1, 1, 24, 24, generator=g)
    style = ((torch.arange(24) // 3) % 2).float().view(1, 1, 1, 24).expand(1, 1, 24, 24).clone()
    snapshots = {}
    result, trajectory = study.distance_trajectory(content, style, steps=10, every=5, lr=0.05, snapshots=snapshots)
    assert sorted(snapshots) == [5, 10] == [step for step, *_ in trajectory[1:]]
    assert torch.equal(snapshots[10], result.image)  # the last judged image is the result
    shorter = style_transfer.gatys_transfer(content, style, steps=5, lr=0.05)  # Adam's path does not depend on the steps asked for
    assert torch.allclose(snapshots[5], shorter.image, atol=1e-6)
    assert not torch.equal(snapshots[5], snapshots[10])


class _StubJudge:
    """Predicts fixed classes and uses the pixels as features: enough to check the bookkeeping."""

    def __init__(self, predicted):
        self.predicted = torch.tensor(predicted)

    def predict(self, images, **_):
        return self.predicted[: len(images)]

    def features(self, images, **_):
        return images.flatten(1)[:, :8]


def test_recognition_scores_compare_shapes_not_colours():
    n_colours = len(COLOUR_NAMES)
    kinds = torch.tensor([0, 1, 2, 3])
    # predicted classes: right shape (any colour), wrong shape, right shape, wrong shape
    predicted = [0 * n_colours + 3, 2 * n_colours, 2 * n_colours + 1, 0]
    targets = torch.zeros(4, 3, 8, 8)
    targets[:, 0, 2:6, 2:6] = 1.0  # a red square on black
    gray = targets.amax(1, keepdim=True).expand(-1, 3, -1, -1) * 0.5
    scores = study.recognition_scores(gray, kinds, targets, judge=_StubJudge(predicted))
    assert scores["shape_accuracy"] == pytest.approx(0.5)
    assert scores["saturation"] == pytest.approx(0.0)  # gray outputs: no spread between the channels
    assert study.recognition_scores(targets, kinds, targets, judge=_StubJudge(predicted))["saturation"] == pytest.approx(1.0)


def test_an_imitator_takes_the_photos_and_the_texture_one_also_the_filters_texture():
    from aigc_lab.styles import pencil_texture, tone_map

    photos = torch.rand(2, 3, 20, 24)
    assert study.imitator_inputs("imitate-oil-kuwahara", photos) is photos
    assert study.imitator_inputs("imitate-pencil", photos) is photos
    given = study.imitator_inputs("imitate-pencil-texture", photos)
    assert given.shape == (2, 4, 20, 24) and torch.equal(given[:, :3], photos)
    assert torch.equal(given[1, 3], pencil_texture((20, 24), 0)[0, 0])
    toned = study.imitator_inputs("imitate-pencil-tone", photos)
    assert toned.shape == (2, 5, 20, 24) and torch.equal(toned[:, :4], given)
    torch.testing.assert_close(toned[:, 4:], tone_map(photos).float())
    with pytest.raises(ValueError, match="unknown imitator"):
        study.imitator_inputs("style-net-oil", photos)
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        study.imitator_inputs("imitate-pencil", photos[:, :1])
