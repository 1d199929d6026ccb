"""Chapter 6.1's experiment helpers: the damaged test cases, the one measuring loop, Set12 when present."""

import pytest
import torch

from aigc_lab import restoration_study as study
from aigc_lab.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_task_builds_its_registered_model_on_its_data(monkeypatch):
    monkeypatch.setenv("AIGC_LAB_QUICK", "1")
    for name, task in study.TASKS.items():
        data = study.task_data(name)
        assert data.images.shape[1] == task.data["channels"] and data.images.shape[-1] == task.data["patch_size"]
        model = build_model(task.model, image_shape=tuple(data.images.shape[1:]), **task.hparams)
        assert model.name == task.model
    with pytest.raises(ValueError, match="unknown task 'denoise'"):
        study.train_task("denoise", "runs")


def test_cases_are_seeded_and_of_the_stated_strength():
    clean = torch.rand(3, 1, 30, 31)
    a, b = study.noisy_cases(clean, [25.0], seed=4), study.noisy_cases(clean, [25.0], seed=4)
    assert torch.equal(a[25.0].input, b[25.0].input)
    assert (a[25.0].input - clean).std().item() * 255 == pytest.approx(25, rel=0.05)
    low = study.low_resolution_cases(clean, [2, 3])
    assert low[3.0].clean.shape[-2:] == (30, 30) and low[3.0].input.shape[-2:] == (10, 10) and low[3.0].border == 3
    assert low[2.0].clean.shape[-2:] == (30, 30) and low[2.0].input.shape[-2:] == (15, 15)
    masked = study.masked_cases(torch.rand(4, 3, 32, 32), ("strokes", "boxes"))
    for case in masked.values():
        assert torch.equal(case.input, case.clean * (1 - case.mask)) and 0 < case.mask.mean() <= 0.4
    dark = study.dark_cases(torch.rand(2, 3, 16, 16), seed=1)["dark"]
    assert dark.input.mean() < 0.5 * dark.clean.mean()


def test_measure_scores_every_method_on_every_case_and_honours_only():
    clean = torch.rand(2, 1, 24, 24)
    cases = study.noisy_cases(clean, [10.0, 50.0])
    methods = {"identity": lambda case: case.input.clamp(0, 1), "oracle": lambda case: case.clean}
    rows, outputs = study.measure(methods, cases, only={"oracle": [10.0]})
    assert [(r["method"], r["level"]) for r in rows] == [("identity", 10.0), ("identity", 50.0), ("oracle", 10.0)]
    assert study.value(rows, "oracle", 10.0) == float("inf")
    assert study.value(rows, "identity", 10.0) > study.value(rows, "identity", 50.0)
    assert set(outputs) == {("identity", 10.0), ("identity", 50.0), ("oracle", 10.0)}
    with pytest.raises(KeyError):
        study.value(rows, "oracle", 50.0)


def test_measure_leaves_out_the_border_and_scores_the_holes():
    clean = torch.full((1, 1, 20, 20), 0.5)
    bad_border = clean.clone()
    bad_border[..., :2, :] = 0
    case = study.Case(2.0, clean, clean, border=2)
    rows, _ = study.measure({"m": lambda c: bad_border}, {2.0: case})
    assert rows[0]["PSNR (dB)"] == float("inf")
    mask = torch.zeros(1, 1, 20, 20)
    mask[..., 5:10, 5:10] = 1
    filled = clean + 0.1 * mask
    assert study.hole_psnr(filled, clean, mask) == pytest.approx(20.0, abs=1e-4)


def test_measure_gives_ssim_only_where_its_window_fits():
    small, large = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 16, 16)
    identity = {"identity": lambda case: case.input.clamp(0, 1)}
    small_rows, _ = study.measure(identity, study.noisy_cases(small, [25.0]))
    large_rows, _ = study.measure(identity, study.noisy_cases(large, [25.0]))
    assert "SSIM" not in small_rows[0] and 0 < large_rows[0]["SSIM"] < 1


def test_set12_is_read_from_a_folder_and_absent_is_none(tmp_path):
    from PIL import Image
    import numpy as np

    assert study.set12(tmp_path / "none") is None
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    images = study.set12(tmp_path)
    assert images.shape == (3, 1, 8, 8) and images[2].max().item() == pytest.approx(80 / 255)


def test_region_masks_cover_what_their_names_say():
    masks = study.region_masks(8)
    assert masks["top half"][..., :4, :].eq(1).all() and masks["top half"][..., 4:, :].eq(0).all()
    assert masks["bottom half"].sum() == 32 and masks["centre square"].sum() == 16
    assert masks["centre square"][..., 2:6, 2:6].eq(1).all()
