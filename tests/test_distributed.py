"""Data-parallel training under torchrun (aigc_lab.distributed), and the precision the loop chooses.

The torchrun tests start real process groups: 2 CPU processes talking over gloo on localhost,
offline. Tolerances: two processes each sum half the batch and the all-reduce adds the halves,
so the gradients round differently from a single process's; after 30 steps of a PixelCNN the
weights differ by well under 1e-4 (seen: 7e-7). A resumed run repeats the same operations in
the same order, so it ends with bit-identical weights.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aigc_lab import distributed, runtime
from aigc_lab.checkpoint import load_checkpoint
from aigc_lab.models import build_model
from aigc_lab.train import TrainConfig, build_under_seed, fit
from conftest import TinyImages

# A deterministic model (no dropout, no sampling noise in training): any difference between the
# runs comes from the distributed arithmetic, not from different random draws.
TRAIN = ["pixelcnn", "--data", "digits", "--batch-size", "32", "--checkpoint-every", "10", "--param", "dropout=0"]


def _cli(run_dir: Path, steps: int, processes: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIGC_LAB_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    env.pop("AIGC_LAB_PROVENANCE_LOG", None)
    args = [*TRAIN, "--steps", str(steps), "--run-dir", str(run_dir)]
    if processes == 1:
        command = [sys.executable, "-m", "aigc_lab", "train", *args]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command = [*launcher, "-m", "aigc_lab", "train", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def _summary(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, f"only rank 0 prints its summary; got {result.stdout!r}"
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp") / "two"
    return run_dir, _summary(_cli(run_dir, 30, 2))


def test_torchrun_with_two_processes_matches_one_process_with_the_same_global_batch(two_process_run, tmp_path):
    run_dir, summary = two_process_run
    single = _summary(_cli(tmp_path / "one", 30, 1))
    assert summary["processes"] == 2 and single["processes"] == 1
    two, one = _weights(run_dir), _weights(tmp_path / "one")
    assert two.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-4, rtol=0, msg=lambda m, name=name: f"{name}: {m}")
    # The logged loss is the mean over both shards: the global batch's mean.
    assert summary["last"]["nll"] == pytest.approx(single["last"]["nll"], rel=1e-4)
    # Rank 0 alone wrote the run: one event file, a config that says two processes.
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert json.loads((run_dir / "config.json").read_text())["runtime"]["processes"] == "2"


def test_a_stopped_torchrun_run_resumes_to_the_uninterrupted_weights(two_process_run, tmp_path):
    run_dir, _ = two_process_run
    resumed = tmp_path / "resumed"
    _summary(_cli(resumed, 20, 2))  # stopped after 20 steps
    state = load_checkpoint(resumed / "checkpoint.pt")
    assert state["step"] == 20 and state["world_size"] == 2 and len(state["rng_by_rank"]) == 2
    _summary(_cli(resumed, 30, 2))  # continued to 30
    uninterrupted, again = _weights(run_dir), _weights(resumed)
    assert all(torch.equal(uninterrupted[k], again[k]) for k in uninterrupted)


def test_resuming_with_another_number_of_processes_is_refused_in_one_sentence(two_process_run, tmp_path):
    run_dir, _ = two_process_run
    result = _cli(run_dir, 40, 1)
    assert result.returncode == 2
    assert "written by a run of 2 process(es) and this one has 1" in result.stderr
    assert "--nproc_per_node=2" in result.stderr


def test_a_single_process_is_not_distributed(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    group, device = distributed.setup(torch.device("cpu"))
    assert group == distributed.SINGLE and not group.is_distributed and group.is_main
    assert device == torch.device("cpu")
    assert distributed.gather({"a": 1}, group) == [{"a": 1}]
    assert distributed.mean_over_processes({"loss": 2.5}, group) == {"loss": 2.5}


def test_the_environment_torchrun_sets_is_read_and_checked(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.from_environment() == distributed.Group(rank=3, world_size=4, local_rank=1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="0 <= RANK < WORLD_SIZE"):
        distributed.from_environment()
    monkeypatch.setenv("RANK", "two")
    with pytest.raises(ValueError, match="RANK must be an integer"):
        distributed.from_environment()


def test_each_process_takes_its_own_contiguous_slice_of_the_global_batch():
    batch = torch.arange(8)
    parts = [distributed.shard(batch, distributed.Group(rank=r, world_size=4)) for r in range(4)]
    assert [p.tolist() for p in parts] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert torch.equal(distributed.shard(batch, distributed.SINGLE), batch)
    with pytest.raises(ValueError, match="multiple of 3"):
        distributed.shard(batch, distributed.Group(rank=0, world_size=3))


def test_the_precision_choice(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert runtime.autocast_dtype("auto", cpu) is None
    assert runtime.autocast_dtype("auto", cuda) == torch.float16
    assert runtime.autocast_dtype("float32", cuda) is None
    assert runtime.autocast_dtype("bfloat16", cpu) == torch.bfloat16
    assert runtime.autocast_dtype("float16", cuda) == torch.float16
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        runtime.autocast_dtype("float16", cpu)
    with pytest.raises(ValueError, match="one of auto, float32, float16, bfloat16"):
        runtime.autocast_dtype("half", cpu)
    with pytest.raises(ValueError, match="TrainConfig.precision"):
        TrainConfig(steps=1, precision="fp8")
    assert isinstance(runtime.bfloat16_native(), bool)


def test_bfloat16_training_on_the_cpu_runs_and_stays_near_float32(tmp_path):
    data = TinyImages(64)
    data.images = (data.images * 16).round() / 16  # the VAE models 17 gray levels, as in digits
    losses = {}
    for precision in ("float32", "bfloat16"):
        model = build_under_seed(0, build_model, "vae", image_shape=(1, 4, 4), latent_dim=4, hidden=32)
        config = TrainConfig(steps=40, batch_size=16, log_every=40, precision=precision)
        history = fit(model, data, tmp_path / precision, config, device="cpu")
        losses[precision] = history.last("nelbo")
        assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps float32 weights
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.05)
    assert losses["bfloat16"] != losses["float32"]  # the products really ran in bfloat16
