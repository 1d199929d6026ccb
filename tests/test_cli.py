import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from aigc_lab.cli import main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "wgan"
    assert main(["train", "wgan-gp-mlp", "--data", "digits", "--steps", "6", "--batch-size", "32", "--param", "hidden=32", "--run-dir", str(run)]) == 0
    return run


def test_help_lists_the_subcommands():
    out = subprocess.run([sys.executable, "-m", "aigc_lab", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("train", "sample", "eval", "models", "datasets"):
        assert command in out


def test_train_prints_json_and_writes_a_run(trained_run, capsys):
    assert (trained_run / "checkpoint.pt").is_file() and (trained_run / "config.json").is_file()
    config = json.loads((trained_run / "config.json").read_text())
    assert config["data"] == {"name": "digits"} and config["hparams"]["image_shape"] == [1, 8, 8]


def test_sample_writes_the_documented_npz(trained_run, tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert main(["sample", str(trained_run), "--n", "1000", "--out", str(out)]) == 0
    data = np.load(out)
    assert data["images"].shape == (1000, 1, 8, 8) and data["images"].dtype == np.float32
    assert 0 <= data["images"].min() and data["images"].max() <= 1
    assert data["labels"].dtype == np.int64 and (data["labels"] == -1).all()
    again = tmp_path / "again.npz"
    main(["sample", str(trained_run), "--n", "1000", "--out", str(again)])
    assert np.array_equal(np.load(again)["images"], data["images"]), "same seed, same samples"


def test_eval_prints_measurements_as_json(trained_run, capsys):
    capsys.readouterr()
    assert main(["eval", str(trained_run), "--n", "200"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "wgan-gp-mlp" and result["steps"] == 6 and result["parameters"] > 0
    for key in ("pixel_diversity", "nn_distance_to_train", "real_test_pixel_diversity", "seconds_to_sample_200", "last_logged"):
        assert key in result
    # an (almost) untrained generator: far from the test digits, and its classes are counted
    assert result["frechet_distance_to_test"] > 20 and 1 <= result["classes_covered"] <= 10
    assert 0 <= result["class_entropy_nats"] <= result["max_class_entropy_nats"]


def test_eval_can_write_the_samples_it_measured(trained_run, tmp_path, capsys):
    out = tmp_path / "measured.npz"
    assert main(["eval", str(trained_run), "--n", "50", "--no-fd", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["samples_file"] == str(out)
    assert main(["sample", str(trained_run), "--n", "50", "--out", str(tmp_path / "sampled.npz")]) == 0
    assert np.array_equal(np.load(out)["images"], np.load(tmp_path / "sampled.npz")["images"]), "the same samples `sample` writes"


def test_conditional_training_and_sampling_a_label(tmp_path, capsys):
    run = tmp_path / "cond"
    assert main(["train", "mse-generator", "--data", "digits", "--conditional", "--steps", "3", "--run-dir", str(run)]) == 0
    out = tmp_path / "c.npz"
    assert main(["sample", str(run), "--n", "7", "--out", str(out), "--label", "3"]) == 0
    assert (np.load(out)["labels"] == 3).all()
    assert main(["sample", str(run), "--n", "7", "--out", str(out), "--label", "10"]) == 2
    assert "a label index must lie in [0, 9]" in capsys.readouterr().err
    assert main(["sample", str(run), "--n", "7", "--out", str(out), "--label", "seven"]) == 2
    assert "unknown label 'seven'; known classes: 0, 1, 2" in capsys.readouterr().err
    assert main(["eval", str(run), "--n", "100"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["conditional_accuracy"] <= 1 and "classes_covered" not in result
    assert set(result["frechet_distance_per_class"]) == {str(k) for k in range(10)} | {"mean"}
    assert result["within_class_diversity"] >= 0 and result["real_test_within_class_diversity"] > 0
    assert main(["sample", str(run), "--n", "7", "--out", str(out), "--guidance", "2"]) == 2
    assert "--guidance needs a conditional diffusion model" in capsys.readouterr().err


def test_guidance_reaches_a_conditional_diffusion_model(tmp_path, capsys):
    run = tmp_path / "cfg"
    train = ["train", "ddpm", "--data", "digits", "--conditional", "--steps", "2", "--run-dir", str(run)]
    assert main([*train, "--param", "base_channels=8", "--param", "sample_steps=3"]) == 0
    outs = {}
    for w in ("0", "3"):
        outs[w] = tmp_path / f"w{w}.npz"
        assert main(["sample", str(run), "--n", "4", "--out", str(outs[w]), "--label", "7", "--guidance", w]) == 0
    a, b = np.load(outs["0"])["images"], np.load(outs["3"])["images"]
    assert (np.load(outs["3"])["labels"] == 7).all()
    # two steps of training: the label has barely moved the network, but it must move the samples
    assert not np.array_equal(a, b), "the same seed with another guidance scale draws other images"


def test_default_steps_come_from_the_model(tmp_path, monkeypatch, capsys):
    from aigc_lab.models import MSEGenerator

    monkeypatch.setattr(MSEGenerator, "default_steps", 4)
    assert main(["train", "mse-generator", "--data", "digits", "--run-dir", str(tmp_path / "r")]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 4


@pytest.mark.parametrize(
    "label, classes, expected",
    [
        (3, ["0", "1", "2", "3"], 3),
        ("3", ["0", "1", "2", "3"], 3),
        ("red triangle", ["red circle", "red triangle"], 1),
        ("Red  Triangle", ["red circle", "red triangle"], 1),
        ("shape=triangle,colour=red", ["red circle", "red triangle", "blue triangle"], 1),
        ("colour=blue, shape=triangle", ["red circle", "red triangle", "blue triangle"], 2),
        ("1", ["cat", "dog"], 1),
    ],
)
def test_resolve_label_accepts_indices_names_and_attributes(label, classes, expected):
    from aigc_lab.models.conditioning import resolve_label

    assert resolve_label(label, classes) == expected


@pytest.mark.parametrize(
    "label, message",
    [
        ("green square", "unknown label 'green square'; known classes: red circle, red triangle"),
        ("shape=square,colour=red", "no class consists of exactly ['square', 'red']"),
        ("shape=,colour=red", "KEY=VALUE pairs"),
        (5, "must lie in [0, 1]"),
    ],
)
def test_resolve_label_names_what_it_accepts(label, message):
    from aigc_lab.models.conditioning import resolve_label

    with pytest.raises(ValueError) as info:
        resolve_label(label, ["red circle", "red triangle"])
    assert message in str(info.value)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "wgan-gp-mpl", "--data", "digits", "--steps", "1"], "did you mean 'wgan-gp-mlp'"),
        (["train", "wgan-gp-mlp", "--data", "digitz", "--steps", "1"], "did you mean 'digits'"),
        (["sample", "/nonexistent/run", "--n", "3", "--out", "x.npz"], "not a training run"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_label_for_an_unconditional_run_is_explained(trained_run, tmp_path, capsys):
    assert main(["sample", str(trained_run), "--n", "3", "--out", str(tmp_path / "x.npz"), "--label", "1"]) == 2
    assert "needs a conditional model" in capsys.readouterr().err


def test_online_dataset_without_network_is_one_sentence(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("AIGC_LAB_DATA", str(tmp_path / "data"))
    assert main(["train", "wgan-gp-mlp", "--data", "mnist", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "mnist" in err and "offline dataset" in err and len(err.strip().splitlines()) == 1


def test_listing_models_and_datasets(capsys):
    assert main(["models"]) == 0 and "wgan-gp-mlp" in capsys.readouterr().out
    assert main(["datasets"]) == 0 and "objects3d" in capsys.readouterr().out


def test_eval_reports_the_models_own_measurements(trained_run, monkeypatch, capsys):
    from aigc_lab.models import WGANGP

    seen = {}

    def evaluate(self, dataset):
        seen["split"] = dataset.split
        return {"test_metric": 1.5}

    monkeypatch.setattr(WGANGP, "evaluate", evaluate)
    capsys.readouterr()
    assert main(["eval", str(trained_run), "--n", "50"]) == 0
    assert json.loads(capsys.readouterr().out)["test_metric"] == 1.5 and seen["split"] == "test"


def test_best_of_reaches_a_gan_with_an_auxiliary_classifier(tmp_path, capsys):
    run = tmp_path / "ac"
    train = ["train", "wgan", "--data", "digits", "--conditional", "--steps", "2", "--run-dir", str(run)]
    assert main([*train, "--param", "aux_weight=1.0", "--param", "g_width=4", "--param", "d_width=4"]) == 0
    out = tmp_path / "best.npz"
    assert main(["sample", str(run), "--n", "6", "--out", str(out), "--label", "7", "--best-of", "4"]) == 0
    assert np.load(out)["images"].shape == (6, 1, 8, 8) and (np.load(out)["labels"] == 7).all()
    assert main(["sample", str(run), "--n", "6", "--out", str(out), "--best-of", "0"]) == 2
    assert "best_of must be an integer >= 1" in capsys.readouterr().err


# A seeded command that trains in about a second (its process spends most of its time importing
# torch, torchvision and scikit-learn), on one torch thread, so that the bits do not depend on how
# the work is split between threads.
SEEDED_STEPS, SEEDED_CHECKPOINT_EVERY = 100, 25
SEEDED_TRAIN = [
    *("train", "wgan-gp-mlp", "--data", "digits", "--batch-size", "32", "--param", "hidden=32", "--seed", "3", "--device", "cpu"),
    *("--steps", str(SEEDED_STEPS), "--checkpoint-every", str(SEEDED_CHECKPOINT_EVERY)),
]


def _start_training(run_dir) -> subprocess.Popen:
    env = {**os.environ, "AIGC_LAB_THREADS": "1", "AIGC_LAB_PROGRESS": "0"}
    command = [sys.executable, "-m", "aigc_lab", *SEEDED_TRAIN, "--run-dir", str(run_dir)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err


def _assert_same_bits(a, b, where="checkpoint"):
    """Every tensor, number and string of two checkpoints is the same, bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            _assert_same_bits(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_bits(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _final_state(run_dir) -> dict:
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["step"] == SEEDED_STEPS
    del state["train_seconds"]  # the one thing that may differ: wall-clock time
    return state


@pytest.fixture(scope="module")
def seeded_runs(tmp_path_factory):
    """The seeded command, four times in two waves of two processes (each spends most of its
    time importing, so the waves keep both tests short):

    1. ``first`` runs to the end, while ``killed`` is killed with SIGKILL as soon as its first
       checkpoint exists;
    2. ``second`` runs to the end, while ``killed`` is started again with the same command.

    Returns the three run directories, the step of the checkpoint the killed process left, and
    the process id of its second start.
    """
    root = tmp_path_factory.mktemp("seeded")
    first, second, killed = root / "first", root / "second", root / "killed"
    processes = [_start_training(first)]
    victim = _start_training(killed)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoint.pt").exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    victim.send_signal(signal.SIGKILL)  # a no-op when it has already exited
    _, err = victim.communicate()
    assert victim.returncode == -signal.SIGKILL, f"the run was not killed mid-way (exit code {victim.returncode}): {err}"
    killed_at = torch.load(killed / "checkpoint.pt", weights_only=True)["step"]
    resumed = _start_training(killed)
    processes += [_start_training(second), resumed]
    for process in processes:
        _finish(process)
    return SimpleNamespace(first=first, second=second, killed=killed, killed_at=killed_at, resumed_pid=resumed.pid)


def test_two_identical_commands_give_the_same_bits(seeded_runs):
    first, second = _final_state(seeded_runs.first), _final_state(seeded_runs.second)
    _assert_same_bits(first["model"], second["model"], "model")
    _assert_same_bits(first, second)  # optimizers, random number generators and logged losses too


def test_a_run_killed_mid_way_resumes_to_the_same_bits(seeded_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    killed_at = seeded_runs.killed_at
    assert SEEDED_CHECKPOINT_EVERY <= killed_at < SEEDED_STEPS, "the kill must come between the first checkpoint and the end"
    _assert_same_bits(_final_state(seeded_runs.first), _final_state(seeded_runs.killed))
    # It resumed rather than starting over: the second process's events file logs only the steps after the checkpoint.
    (events,) = seeded_runs.killed.glob(f"events.out.tfevents.*.{seeded_runs.resumed_pid}.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    logged = [event.step for event in accumulator.Scalars("train/wasserstein")]
    assert logged and min(logged) > killed_at, (logged, killed_at)


def test_a_damaged_config_json_is_one_line_with_exit_code_2(trained_run, tmp_path, capsys):
    run = tmp_path / "damaged"
    shutil.copytree(trained_run, run)
    (run / "config.json").write_text('{"model": "wgan-gp-mlp", "data": {"name": "digi')
    capsys.readouterr()
    for argv in (["sample", str(run), "--n", "3", "--out", str(tmp_path / "x.npz")], ["eval", str(run), "--n", "10"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {run / 'config.json'} is not valid JSON (Unterminated string starting at: line 1, column 43): the run directory is damaged")
        assert "Traceback" not in err and len(err.splitlines()) == 1
    # what the message advises: the same training command resumes from the checkpoint and rewrites the file
    train = ["train", "wgan-gp-mlp", "--data", "digits", "--steps", "6", "--batch-size", "32", "--param", "hidden=32", "--run-dir", str(run)]
    assert main(train) == 0
    assert main(["sample", str(run), "--n", "3", "--out", str(tmp_path / "x.npz")]) == 0


def test_a_full_disk_during_training_is_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys):
    run = tmp_path / "full"
    train = ["train", "mse-generator", "--data", "digits", "--run-dir", str(run), "--steps"]
    assert main([*train, "2"]) == 0
    before = torch.load(run / "checkpoint.pt", weights_only=True)

    def full_disk(obj, f):
        f.write(b"PK half a zip file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    assert main([*train, "4"]) == 2  # resumes at step 2; the save at step 4 finds the disk full
    err = capsys.readouterr().err.strip()
    assert err == f"error: could not write checkpoint {run / 'checkpoint.pt'}: the disk is full (No space left on device); the previous checkpoint is kept"
    monkeypatch.undo()
    _assert_same_bits(torch.load(run / "checkpoint.pt", weights_only=True), before)
    assert not list(run.glob(".*.tmp"))


def test_train_a_recipe_of_the_book(tmp_path, capsys):
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "shapes-cfg" in listing and "dcgan" in listing and "conditional" in listing
    assert main(["train", "--recipe", "digits-cgan-projection", "--runs-dir", str(tmp_path), "--steps", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["run_dir"] == str(tmp_path / "digits-cgan-projection") and result["steps"] == 2
    config = json.loads((tmp_path / "digits-cgan-projection" / "config.json").read_text())
    assert config["model"] == "wgan" and config["hparams"]["conditioning"] == "projection" and config["hparams"]["num_classes"] == 10
    assert main(["train", "--recipe", "dcgan", "--runs-dir", str(tmp_path), "--steps", "1"]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "dcgan" / "config.json").read_text())["hparams"].get("num_classes", 0) == 0  # chapter 3's: unconditional


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--recipe", "no-such-recipe"], "unknown recipe 'no-such-recipe'; known recipes: vae, row-rnn"),
        (["train", "--recipe", "dcgan", "--data", "digits"], "--recipe fixes the model, data and settings; drop --data"),
        (["train", "--recipe", "dcgan", "--seed", "3"], "--recipe trains with the book's batch size, seed and checkpoints"),
        (["train", "dcgan"], "train needs a MODEL and --data DATASET"),
    ],
)
def test_train_recipe_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
