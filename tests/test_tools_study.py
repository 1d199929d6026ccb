"""Chapter 7's measuring functions (aigc_lab.tools_study), on a few steps of small models."""

import pytest
import torch

from aigc_lab import tools_study
from aigc_lab.models import build_model


def test_weight_difference_is_zero_for_the_same_bits_and_names_mismatches():
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert tools_study.weight_difference(a, b) == 0.0
    with torch.no_grad():
        b.bias[1] += 0.25
    assert tools_study.weight_difference(a, b) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="different parameters"):
        tools_study.weight_difference(a, torch.nn.Linear(3, 2, bias=False))
    with pytest.raises(ValueError, match="has shape"):
        tools_study.weight_difference(a, torch.nn.Linear(4, 2))


def test_reproducibility_rows_say_which_changes_keep_the_bits(tmp_path):
    rows = {row["change"].split(":")[0].split(" ")[0]: row for row in tools_study.reproducibility_rows("vae", tmp_path, steps=6)}
    assert rows["none"]["same bits"] and rows["none"]["largest weight difference"] == 0.0
    assert rows["stopped"]["same bits"]  # resumed = uninterrupted
    assert not rows["another"]["same bits"]  # another seed: other initial weights
    assert not rows["bfloat16"]["same bits"]


def test_precision_comparison_trains_both_precisions_from_the_same_start(tmp_path):
    rows, curves = tools_study.precision_comparison(["pixelcnn"], tmp_path, steps=10, batch_size=16, speed_steps=2, repeats=1)
    assert [(r["model"], r["precision"]) for r in rows] == [("pixelcnn", "float32"), ("pixelcnn", "bfloat16")]
    assert all(r["loss"] == "nll" and r["images per s"] > 0 for r in rows)
    steps32, values32 = curves[("pixelcnn", "float32")]
    steps16, values16 = curves[("pixelcnn", "bfloat16")]
    assert steps32 == steps16 == [10]
    assert values16[0] == pytest.approx(values32[0], rel=0.05) and values16[0] != values32[0]


def test_profile_training_step_ranks_operators_by_their_own_time():
    model = build_model("vae", image_shape=[1, 8, 8])
    batch = tools_study.digits_batch(16)
    rows, totals = tools_study.profile_training_step(model, batch, steps=2, warmup=1, top=5)
    assert 1 <= len(rows) <= 5
    times = [r["self ms per step"] for r in rows]
    assert times == sorted(times, reverse=True)
    assert sum(r["share %"] for r in rows) <= 100.0 + 1e-6
    assert totals["operator calls per step"] > 10 and totals["mean us per call"] > 0
    assert tools_study.images_per_second(model, batch, steps=2, warmup=1, repeats=1) > 0
    assert tools_study.images_per_second(model, batch, steps=2, warmup=1, repeats=1, precision="bfloat16") > 0
    with pytest.raises(ValueError, match="precision must be one of"):
        tools_study.images_per_second(model, batch, precision="float8")


def test_digits_batch_checks_its_size():
    x, y = tools_study.digits_batch(8, seed=3)
    assert x.shape[0] == y.shape[0] == 8
    with pytest.raises(ValueError, match="batch_size must be between 1 and"):
        tools_study.digits_batch(0)


def test_cli_train_reports_the_summary_and_a_failure_in_words(tmp_path):
    summary, wall = tools_study.cli_train(["pixelcnn", "--data", "digits", "--steps", "3", "--batch-size", "8", "--run-dir", str(tmp_path / "run")])
    assert summary["steps"] == 3 and summary["processes"] == 1 and wall > 0
    with pytest.raises(RuntimeError, match="failed with exit code 2"):
        tools_study.cli_train(["no-such-model", "--data", "digits", "--run-dir", str(tmp_path / "bad")])
    with pytest.raises(ValueError, match="processes must be at least 1"):
        tools_study.cli_train([], processes=0)
