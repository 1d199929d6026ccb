import json
import re
from pathlib import Path

import pytest
import torch

from aigc_lab.checkpoint import CheckpointError
from aigc_lab.models import MSEGenerator, WGANGP
from aigc_lab.train import TrainConfig, TrainingDivergedError, build_under_seed, fit
from aigc_lab.runs import load_run
from aigc_lab.viz import read_scalars
from conftest import TinyImages


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _wgan():
    torch.manual_seed(0)
    return WGANGP(image_shape=(1, 4, 4), z_dim=4, hidden=16, n_critic=2)


def test_fit_logs_scalars_images_config_and_checkpoint(tmp_path, tiny_images):
    history = fit(_wgan(), tiny_images, tmp_path, TrainConfig(steps=6, batch_size=16, log_every=2, checkpoint_every=3, image_every=3), device="cpu")
    assert history.steps == 6 and history.train_seconds > 0
    assert history.scalars["wasserstein"][0] == [2, 4, 6]
    scalars = read_scalars(tmp_path)
    assert list(scalars["train/wasserstein"][0]) == [2, 4, 6]
    assert scalars["train/wasserstein"][1][-1] == pytest.approx(history.last("wasserstein"), rel=1e-6)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [e.step for e in acc.Images("samples")] == [3, 6, 6]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == "wgan-gp-mlp" and config["train"]["steps"] == 6 and config["hparams"]["z_dim"] == 4
    assert (tmp_path / "checkpoint.pt").is_file()


class CrashOnce(WGANGP):
    """Raises in the middle of a run, like a killed process, after some checkpoints were written."""

    crash_at = 7

    def training_step(self, batch, ctx):
        if ctx.step == self.crash_at and not getattr(self, "crashed", False):
            self.crashed = True
            raise KeyboardInterrupt("simulated interruption")
        return super().training_step(batch, ctx)


def test_interrupted_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path, tiny_images):
    config = TrainConfig(steps=12, batch_size=16, checkpoint_every=5, log_every=1)
    straight = _wgan()
    fit(straight, tiny_images, tmp_path / "straight", config, device="cpu")

    torch.manual_seed(0)
    crashing = CrashOnce(image_shape=(1, 4, 4), z_dim=4, hidden=16, n_critic=2)
    with pytest.raises(KeyboardInterrupt):
        fit(crashing, tiny_images, tmp_path / "resumed", config, device="cpu")
    # A new process would build a fresh model with other weights; the checkpoint must win.
    torch.manual_seed(123)
    resumed = WGANGP(image_shape=(1, 4, 4), z_dim=4, hidden=16, n_critic=2)
    history = fit(resumed, tiny_images, tmp_path / "resumed", config, device="cpu")
    assert torch.equal(_params(resumed), _params(straight))
    assert history.scalars["wasserstein"][0][-1] == 12


def test_fit_again_with_more_steps_continues(tmp_path, tiny_images):
    model = _wgan()
    fit(model, tiny_images, tmp_path, TrainConfig(steps=4, batch_size=16), device="cpu")
    before = _params(model)
    again = fit(model, tiny_images, tmp_path, TrainConfig(steps=4, batch_size=16), device="cpu")
    assert again.steps == 4 and torch.equal(_params(model), before), "a finished run has nothing left to do"
    longer = fit(model, tiny_images, tmp_path, TrainConfig(steps=6, batch_size=16), device="cpu")
    assert longer.steps == 6 and not torch.equal(_params(model), before)


def test_resume_refuses_a_different_model(tmp_path, tiny_images):
    fit(_wgan(), tiny_images, tmp_path, TrainConfig(steps=2, batch_size=16), device="cpu")
    with pytest.raises(CheckpointError, match="holds a 'wgan-gp-mlp' model"):
        fit(MSEGenerator(image_shape=(1, 4, 4)), tiny_images, tmp_path, TrainConfig(steps=2, batch_size=16), device="cpu")
    with pytest.raises(CheckpointError, match="other settings .*hidden"):
        fit(WGANGP(image_shape=(1, 4, 4), z_dim=4, hidden=32), tiny_images, tmp_path, TrainConfig(steps=3, batch_size=16), device="cpu")


def test_resume_refuses_the_same_model_with_other_settings(tmp_path, tiny_images):
    fit(_wgan(), tiny_images, tmp_path, TrainConfig(steps=2, batch_size=16), device="cpu")
    changed = _wgan()
    changed.hparams["lr"] = 123.0  # same weights' shapes, another optimiser setting
    with pytest.raises(CheckpointError, match=r"other settings \(lr: .* there, 123.0 here\)"):
        fit(changed, tiny_images, tmp_path, TrainConfig(steps=3, batch_size=16), device="cpu")
    # the unchanged model resumes (a finished run: nothing to do)
    assert fit(_wgan(), tiny_images, tmp_path, TrainConfig(steps=2, batch_size=16), device="cpu").steps == 2


def test_corrupt_checkpoint_is_reported(tmp_path, tiny_images):
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        fit(_wgan(), tiny_images, tmp_path, TrainConfig(steps=2, batch_size=16), device="cpu")


def test_nan_guard_stops_with_a_clear_message(tmp_path, tiny_images):
    model = MSEGenerator(image_shape=(1, 4, 4), lr=1e30)
    with pytest.raises(TrainingDivergedError, match=r"loss became (nan|inf) at step \d+: training diverged"):
        fit(model, tiny_images, tmp_path, TrainConfig(steps=50, batch_size=16), device="cpu")


def test_dataset_without_in_memory_images_works(tmp_path):
    class ItemsOnly(torch.utils.data.Dataset):
        def __len__(self):
            return 32

        def __getitem__(self, i):
            return torch.full((1, 4, 4), i / 32), i % 2

    history = fit(MSEGenerator(image_shape=(1, 4, 4)), ItemsOnly(), tmp_path, TrainConfig(steps=3, batch_size=8), device="cpu")
    assert history.steps == 3


def test_bad_arguments_are_explained(tmp_path, tiny_images):
    with pytest.raises(ValueError, match="positive integer"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="larger than the dataset"):
        fit(_wgan(), TinyImages(n=8), tmp_path, TrainConfig(steps=1, batch_size=16), device="cpu")
    with pytest.raises(ValueError, match="TrainableModel"):
        fit(torch.nn.Linear(2, 2), tiny_images, tmp_path, TrainConfig(steps=1), device="cpu")


def test_load_run_rebuilds_the_trained_model(tmp_path, tiny_images):
    model = _wgan()
    fit(model, tiny_images, tmp_path, TrainConfig(steps=3, batch_size=16), device="cpu")
    loaded, config = load_run(tmp_path, device="cpu")
    assert torch.equal(_params(loaded), _params(model.cpu()))
    assert config["step"] == 3 and config["model"] == "wgan-gp-mlp"
    with pytest.raises(FileNotFoundError, match="not a training run"):
        load_run(tmp_path / "missing")


def test_run_is_complete_only_for_a_finished_current_run(tmp_path, tiny_images):
    from aigc_lab import provenance
    from aigc_lab.runs import run_is_complete

    assert not run_is_complete(tmp_path / "missing")
    done, stopped = tmp_path / "done", tmp_path / "stopped"
    fit(_wgan(), tiny_images, done, TrainConfig(steps=2, batch_size=16), device="cpu")
    assert run_is_complete(done)
    fit(_wgan(), tiny_images, stopped, TrainConfig(steps=2, batch_size=16), device="cpu")
    config = json.loads((stopped / "config.json").read_text())
    config["train"]["steps"] = 4  # as if the run had been interrupted halfway
    (stopped / "config.json").write_text(json.dumps(config))
    assert not run_is_complete(stopped)
    record = json.loads((done / provenance.RUN_FILE).read_text())
    record["code"]["aigc_lab/train.py"] = "sha256:" + "0" * 64  # trained by other code
    (done / provenance.RUN_FILE).write_text(json.dumps(record))
    assert not run_is_complete(done)


@pytest.mark.parametrize(
    "content, what",
    [
        (b'{"model": ', r"is not valid JSON \(Expecting value: line 1, column 11\): the run directory is damaged"),
        (b"{'model': 'vae'}", r"is not valid JSON \(.*: line 1, column 2\)"),
        (b"", r"is not valid JSON \(Expecting value: line 1, column 1\)"),
        (b"\xff\xfe\x00", "is not a text file: the run directory is damaged"),
        (b"[1, 2]", r"is JSON but not a run's configuration \(it lacks 'model', 'data'\)"),
    ],
    ids=["truncated", "python-quotes", "empty", "binary", "not-an-object"],
)
def test_a_damaged_config_is_one_sentence_naming_the_file(tmp_path, content, what):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_run(tmp_path, device="cpu")
    message = str(info.value)
    assert message.startswith(f"{path} ") and re.search(what, message) and len(message.splitlines()) == 1, message
    if "damaged" in message:
        assert message.endswith("training it again with the same command resumes from its checkpoint and rewrites the file")


def test_an_unreadable_config_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(CheckpointError, match=f"^could not read {re.escape(str(tmp_path / 'config.json'))}: Permission denied$"):
        load_run(tmp_path, device="cpu")


def test_build_under_seed_fixes_the_initial_weights():
    def build(seed):
        return build_under_seed(seed, WGANGP, image_shape=(1, 4, 4), z_dim=4, hidden=16, n_critic=2)

    first = build(0)
    torch.rand(10)  # whatever ran before does not matter
    assert torch.equal(_params(build(0)), _params(first))
    assert not torch.equal(_params(build(1)), _params(first))
    # the same weights as torch.manual_seed before building (the notebooks' way)
    assert torch.equal(_params(_wgan()), _params(first))


def test_step_context_explains_misuse():
    from aigc_lab.train import StepContext

    model = MSEGenerator(image_shape=(1, 4, 4))
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    loss = model.generator(torch.randn(3, 16)).mean(dim=(1, 2, 3))
    with pytest.raises(ValueError, match="must be a scalar"):
        ctx.optimize("generator", loss)
    with pytest.raises(KeyError, match="no optimizer named 'critic'"):
        ctx.optimize("critic", loss.mean())
    with pytest.raises(TrainingDivergedError, match="generator loss became inf"):
        ctx.optimize("generator", torch.tensor(float("inf"), requires_grad=True))


def test_history_last_names_what_was_logged(tmp_path, tiny_images):
    history = fit(MSEGenerator(image_shape=(1, 4, 4)), tiny_images, tmp_path, TrainConfig(steps=2, batch_size=16, log_every=1), device="cpu")
    assert history.last("mse") == history.scalars["mse"][1][-1]
    with pytest.raises(KeyError, match=r"logged: \['mse'\]"):
        history.last("loss")


def test_eval_fn_is_logged_and_does_not_change_the_run(tmp_path, tiny_images):
    config = TrainConfig(steps=6, batch_size=16, log_every=2, eval_every=2)
    plain = _wgan()
    fit(plain, tiny_images, tmp_path / "plain", config, device="cpu")

    calls = []

    def eval_fn(model):
        calls.append(model.training)
        torch.rand(100)  # consumes random numbers: fit must restore the generators
        return {"mean_sample": float(model.sample(8).mean())}

    evaluated = _wgan()
    history = fit(evaluated, tiny_images, tmp_path / "evaluated", config, device="cpu", eval_fn=eval_fn)
    assert calls == [False, False, False]  # called in eval mode at steps 2, 4, 6
    assert history.scalars["eval/mean_sample"][0] == [2, 4, 6]
    assert list(read_scalars(tmp_path / "evaluated")["eval/mean_sample"][0]) == [2, 4, 6]
    assert torch.equal(_params(evaluated), _params(plain))


def test_eval_fn_must_return_a_dict(tmp_path, tiny_images):
    with pytest.raises(ValueError, match="eval_fn must return a dict"):
        fit(_wgan(), tiny_images, tmp_path, TrainConfig(steps=2, batch_size=16), device="cpu", eval_fn=lambda m: 1.0)
