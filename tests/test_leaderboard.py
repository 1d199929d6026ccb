"""The leaderboard (``make leaderboard``): its file is current, its rows hold what chapter 8 reads, its counts are right."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch

from aigc_lab import leaderboard, provenance
from aigc_lab.recipes import RECIPES


def test_the_committed_leaderboard_was_measured_with_the_code_on_this_branch() -> None:
    data = leaderboard.load(leaderboard.LEADERBOARD_FILE)
    stale = leaderboard.stale_files(data)
    assert not stale, f"book/leaderboard.json is stale (changed since it was measured: {', '.join(stale)}); run make leaderboard"
    assert data["provenance"]["mode"] == "full"


def test_the_committed_leaderboard_has_every_recipe_with_every_seed() -> None:
    data = leaderboard.load(leaderboard.LEADERBOARD_FILE)
    seeds = data["provenance"]["seeds"]
    assert seeds >= 3
    by_recipe = {row["recipe"]: row for row in data["rows"] if row["recipe"]}
    assert set(by_recipe) == set(RECIPES)
    for name, row in by_recipe.items():
        assert row["seeds"] == seeds and len(row["per_seed"]) == seeds, name
        quality = ("accuracy", "fd_per_class") if RECIPES[name].conditional else ("fd",)
        for key in (*quality, "parameters", "train_flops", "train_s", "sample_s_per_1000"):
            assert math.isfinite(row["mean"][key]) and row["sd"][key] is not None, (name, key)
    baselines = {(row["label"], row["data"], row["conditional"]) for row in data["rows"] if row["family"] == "baseline"}
    assert baselines == {
        ("single Gaussian", "digits", False),
        ("mixture of class Gaussians", "digits", False),
        ("Gaussian per class", "digits", True),
        ("Gaussian per class", "shapes", True),
    }
    for row in data["rows"]:
        if row["family"] == "baseline":
            assert row["seeds"] == seeds and len(row["per_seed"]) == seeds, row["label"]
    assert {row["data"] for row in data["rows"] if row["family"] == "real data"} == {"digits", "shapes"}


def test_load_records_the_file_in_the_executing_notebooks_provenance(tmp_path, monkeypatch) -> None:
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(provenance.LOG_ENV, str(log))
    leaderboard.load(leaderboard.LEADERBOARD_FILE)
    entries = provenance.read_log(log)
    assert entries[-1]["kind"] == "imports"
    assert entries[-1]["files"] == {"book/leaderboard.json": provenance.file_hash(leaderboard.LEADERBOARD_FILE)}


def test_load_names_the_command_when_the_file_is_missing_quick_or_not_a_leaderboard(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="make leaderboard"):
        leaderboard.load(tmp_path / "none.json")
    quick = tmp_path / "quick.json"
    quick.write_text(json.dumps({"provenance": {"mode": "quick"}, "rows": []}))
    with pytest.raises(ValueError, match="'quick' mode"):
        leaderboard.load(quick)
    assert leaderboard.load(quick, allow_quick=True)["rows"] == []
    other = tmp_path / "other.json"
    other.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="not a leaderboard"):
        leaderboard.load(other)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        leaderboard.load(broken)


def test_summary_is_the_mean_and_sample_standard_deviation_of_the_seeds() -> None:
    per_seed = [{"fd": 3.0, "train_s": 1.0}, {"fd": 5.0, "train_s": 2.0}, {"fd": 10.0, "train_s": 4.0}]
    row = leaderboard._summary("x", "vae", "digits", False, per_seed, recipe="vae")
    assert row["mean"]["fd"] == pytest.approx(6.0)
    assert row["sd"]["fd"] == pytest.approx(statistics.stdev([3.0, 5.0, 10.0]))
    assert leaderboard._summary("x", "vae", "digits", False, per_seed[:1])["sd"]["fd"] is None


def test_training_flops_count_forward_and_backward_of_every_layer() -> None:
    # The VAE of chapter 3 is made of linear layers, each used once per step: forward 2 * batch *
    # in * out FLOPs each; backward twice that (gradients of the input and of the weights), except
    # the input gradient of the first layer of the encoder and of the decoder's.
    from aigc_lab.recipes import build_recipe_model

    model = build_recipe_model("vae")
    batch = RECIPES["vae"].batch_size
    forward = sum(2 * batch * m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    counted = leaderboard.recipe_training_flops_per_step("vae")
    assert 2.5 * forward < counted <= 3 * forward


def test_unknown_recipes_and_bad_settings_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown recipe"):
        leaderboard.run(["no-such-model"], runs_dir=tmp_path, out=None)
    with pytest.raises(ValueError, match="seeds"):
        leaderboard.run(["vae"], seeds=0, runs_dir=tmp_path, out=None)


def test_a_quick_row_measures_an_unconditional_model(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AIGC_LAB_QUICK", "1")
    row = leaderboard.measure_run("vae", 0, tmp_path)
    assert row["steps"] == RECIPES["vae"].quick_steps
    assert row["parameters"] > 0 and row["train_flops"] > 0 and row["sample_flops_per_image"] > 0
    assert row["fd"] > 0 and 1 <= row["classes_covered"] <= 10
    assert row["nll_bound_nats"] > 0


def test_the_counter_counts_what_pytorchs_counts_and_works_under_a_gradient_penalty() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from aigc_lab.recipes import build_recipe_model, recipe_data

    model, data = build_recipe_model("vae"), recipe_data("vae")
    with FlopCounterMode(display=False) as reference:
        model.elbo_terms(data.images[:32])
    with leaderboard.flop_counter() as ours:
        model.elbo_terms(data.images[:32])
    assert ours.get_total_flops() == reference.get_total_flops() > 0
    # The WGAN-GP's step differentiates a gradient (autograd.grad with create_graph): PyTorch's
    # module tracker fails there; the leaderboard's counter must not.
    assert leaderboard.recipe_training_flops_per_step("wgan-gp") > 0


def test_the_recorded_code_covers_the_leaderboard_the_models_and_the_metrics() -> None:
    data = leaderboard.load(leaderboard.LEADERBOARD_FILE)
    files = data["provenance"]["package_code"]
    for name in ("aigc_lab/leaderboard.py", "aigc_lab/recipes.py", "aigc_lab/metrics.py", "aigc_lab/train.py", "aigc_lab/models/gan.py"):
        assert name in files, name
