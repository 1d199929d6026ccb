"""``make data-needs``: its file is current and complete, its subsets are nested and mirrored, a quick run measures."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch

from aigc_lab import data_needs, face_study, provenance
from aigc_lab.trends_study import memorisation


def test_the_committed_file_was_measured_with_the_code_on_this_branch() -> None:
    data = data_needs.load()
    stale = data_needs.stale_files(data)
    assert not stale, f"book/data_needs.json is stale (changed since it was measured: {', '.join(stale)}); run make data-needs"
    assert data["provenance"]["mode"] == "full"
    for name in ("aigc_lab/data_needs.py", "aigc_lab/face_study.py", "aigc_lab/data/faces.py", "aigc_lab/models/gan.py", "aigc_lab/models/vae.py"):
        assert name in data["provenance"]["package_code"], name


def test_the_committed_file_has_every_family_and_size_with_every_seed() -> None:
    data = data_needs.load()
    seeds = data["provenance"]["seeds"]
    assert seeds >= 3
    expected = {(f, n, False) for f in face_study.MODELS for n in data_needs.SIZES}
    expected |= {(f, max(data_needs.SIZES), True) for f in data_needs.EQUAL_EPOCHS}
    assert {(row["family"], row["n_faces"], row["control"]) for row in data["rows"]} == expected
    for row in data["rows"]:
        assert row["seeds"] == len(row["per_seed"]) == seeds
        full_steps = face_study.MODELS[row["family"]].steps
        if row["control"]:  # as many epochs as the smallest set's run
            assert data_needs.epochs(row["mean"]["steps"], row["n_faces"]) == data_needs.epochs(full_steps, min(data_needs.SIZES))
        else:
            assert row["mean"]["steps"] == full_steps
        keys = ("fd", "ratio", "samples_median", "held_out_median", "nearer_than_any_held_out", "train_side_share", "equal_sets_ratio", "train_s")
        for key in keys:
            assert math.isfinite(row["mean"][key]) and row["sd"][key] is not None, (row["family"], row["n_faces"], key)


def test_load_records_the_file_and_names_the_command_when_it_cannot_read_it(tmp_path, monkeypatch) -> None:
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(provenance.LOG_ENV, str(log))
    data_needs.load()
    assert provenance.read_log(log)[-1]["files"] == {"book/data_needs.json": provenance.file_hash(data_needs.DATA_NEEDS_FILE)}
    with pytest.raises(FileNotFoundError, match="make data-needs"):
        data_needs.load(tmp_path / "none.json")
    quick = tmp_path / "quick.json"
    quick.write_text(json.dumps({"provenance": {"mode": "quick"}, "rows": []}))
    with pytest.raises(ValueError, match="quick"):
        data_needs.load(quick)
    assert data_needs.load(quick, allow_quick=True)["rows"] == []
    other = tmp_path / "other.json"
    other.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="not a data-needs file"):
        data_needs.load(other)


def test_every_subset_holds_the_smaller_ones_and_the_mirror_of_each_face() -> None:
    small, large = data_needs.face_subset(20), data_needs.face_subset(40)
    assert small.images.shape == (40, 1, face_study.SIZE, face_study.SIZE) and large.images.shape[0] == 80
    assert torch.equal(small.images[:20], large.images[:20])  # the first 20 faces of the same shuffle
    assert torch.equal(small.images[20:], small.images[:20].flip(-1))  # then their mirror images
    everything = face_study.face_data("train-only").images
    assert all(any(torch.equal(face, other) for other in everything) for face in large.images[:40])
    for bad in (0, 81, 2.5, True):
        with pytest.raises(ValueError, match="between 1 and the 80 train faces"):
            data_needs.face_subset(bad)


def test_a_row_holds_each_seeds_numbers_with_their_mean_and_sample_sd() -> None:
    per_seed = [{"fd": 10.0, "ratio": 1.0}, {"fd": 14.0, "ratio": 0.5}, {"fd": 12.0, "ratio": 0.75}]
    row = data_needs.summarise("faces-dcgan", 20, per_seed)
    assert row["mean"]["fd"] == 12.0 and row["sd"]["fd"] == pytest.approx(statistics.stdev([10.0, 14.0, 12.0]))
    assert row["label"] == "DCGAN" and row["n_faces"] == 20 and row["per_seed"] == per_seed
    assert data_needs.summarise("faces-vae", 20, per_seed[:1])["sd"]["fd"] is None


def test_bad_settings_and_unknown_families_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="seeds"):
        data_needs.run(seeds=0, runs_dir=tmp_path, out=None)
    with pytest.raises(ValueError, match="workers"):
        data_needs.run(workers=0, runs_dir=tmp_path, out=None)
    with pytest.raises(ValueError, match="unknown face model"):
        data_needs.measure_run("faces-gpt", 20, 0, tmp_path)


def test_a_quick_run_measures_distance_and_memorisation(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AIGC_LAB_QUICK", "1")
    row = data_needs.measure_run("faces-vae", 20, 0, tmp_path)
    assert row["steps"] == face_study.MODELS["faces-vae"].quick_steps
    assert row["fd"] > 0 and row["train_s"] > 0
    assert row["ratio"] == pytest.approx(row["samples_median"] / row["held_out_median"])
    assert 0 <= row["nearer_than_any_held_out"] <= 1


def test_the_nearest_side_check_counts_copies_and_is_not_fooled_by_an_average_image() -> None:
    generator = torch.Generator().manual_seed(0)
    train, held_out, new = (torch.rand(n, 1, 8, 8, generator=generator) for n in (40, 40, 400))
    fresh = data_needs.nearest_side(new, train, held_out)  # new draws of the same distribution: either side
    assert 0.4 < fresh["train_side_share"] < 0.6 and 0.9 < fresh["equal_sets_ratio"] < 1.1
    copies = (train.repeat(10, 1, 1, 1) + 0.02 * torch.randn(400, 1, 8, 8, generator=generator)).clamp(0, 1)
    copied = data_needs.nearest_side(copies, train, held_out)
    assert copied["train_side_share"] == 1.0 and copied["equal_sets_ratio"] < 0.5
    # The average training image copies nothing but sits nearer the training set than new images
    # do, so the first check calls it a copy; the nearest-side check does not.
    average = train.mean(0, keepdim=True)
    assert memorisation(average, train, held_out)["ratio"] < 0.8
    assert data_needs.nearest_side(average, train, held_out)["equal_sets_ratio"] > 0.9
    with pytest.raises(ValueError, match="equal-sized"):
        data_needs.nearest_side(new, train, held_out[:20])


def test_the_equal_sets_are_the_held_out_faces_and_as_many_training_faces_of_every_subset() -> None:
    train, held_out = data_needs.equal_sets()
    assert train.shape == held_out.shape == (40, 1, face_study.SIZE, face_study.SIZE)
    assert torch.equal(train, data_needs.face_subset(min(data_needs.SIZES)).images)
    assert torch.equal(held_out[20:], held_out[:20].flip(-1))


def test_the_control_runs_as_many_epochs_on_the_largest_set_as_the_smallest_set_run(monkeypatch) -> None:
    monkeypatch.delenv("AIGC_LAB_QUICK", raising=False)
    small, large = min(data_needs.SIZES), max(data_needs.SIZES)
    for family in face_study.MODELS:
        steps = data_needs.equal_epoch_steps(family)
        assert data_needs.epochs(steps, large) == data_needs.epochs(face_study.MODELS[family].steps, small)
    assert data_needs.epochs(400, 20) == 400  # 40 images, batches of 40: one epoch a step
    assert data_needs.epochs(400, 80) == 160  # 160 images, batches of 64
