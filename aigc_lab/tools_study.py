"""Chapter 7's measurements on the book's own models: precision, reproducibility, profiling, torchrun.

Each function trains with the book's loop (:func:`aigc_lab.train.fit`) on the digits, so what
chapter 7 measures is what the other chapters run:

* :func:`precision_comparison`: the same model trained in float32 and under bfloat16 autocast,
  time per step and the loss curve of each;
* :func:`reproducibility_rows`: which changes leave the trained weights bit for bit the same
  (the seed, a resume) and which do not (another seed, another thread count, another precision);
* :func:`profile_training_step`: where one training step's time goes, by operator
  (``torch.profiler``), and :func:`images_per_second` to measure a change it suggests;
* :func:`cli_train`: the command line, in one process or several under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aigc_lab import runtime
from aigc_lab.contract import StepContext, TrainableModel
from aigc_lab.data import load_dataset
from aigc_lab.models import build_model
from aigc_lab.train import History, TrainConfig, build_under_seed, fit

#: the number each model's loss curve is read from (what its training step logs first)
MAIN_METRIC = {"vae": "nelbo", "dcgan": "generator", "wgan": "critic", "ddpm": "loss", "pixelcnn": "nll", "row-rnn": "nll"}


def train_digits(
    name: str,
    run_dir: str | os.PathLike,
    *,
    steps: int,
    seed: int = 0,
    precision: str = "float32",
    batch_size: int = 64,
    fresh: bool = True,
    **hparams: Any,
) -> tuple[TrainableModel, History]:
    """Train model ``name`` (its defaults, the weights built under ``seed``) on the digits, on the CPU.

    ``fresh=True`` deletes ``run_dir`` first, so the run is trained, not resumed from an earlier one.
    """
    run_dir = Path(run_dir)
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    data = load_dataset("digits", "train")
    model = build_under_seed(seed, build_model, name, image_shape=list(data.images.shape[1:]), **hparams)
    config = TrainConfig(steps=steps, batch_size=batch_size, seed=seed, precision=precision, log_every=10, checkpoint_every=max(steps, 1))
    history = fit(model, data, run_dir, config, device="cpu")
    return model, history


def precision_comparison(
    names: Sequence[str], run_root: str | os.PathLike, *, steps: int, batch_size: int = 64, speed_steps: int = 20, repeats: int = 3
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], tuple[list[int], list[float]]]]:
    """Train each model in float32 and under bfloat16 autocast, from the same weights and batches.

    Returns ``(rows, curves)``: a row per model and precision with its training speed (images
    per second, :func:`images_per_second`: the best of ``repeats`` timings of ``speed_steps``
    steps, so that a busy moment of the machine does not count) and the last logged value of
    :data:`MAIN_METRIC` after ``steps`` steps of training; and the loss curve of each run.
    """
    rows, curves = [], {}
    for name in names:
        metric = MAIN_METRIC.get(name)
        for precision in ("float32", "bfloat16"):
            model, history = train_digits(name, Path(run_root) / f"{name}-{precision}", steps=steps, precision=precision, batch_size=batch_size)
            metric = metric or next(iter(history.scalars))
            curves[(name, precision)] = history.scalars[metric]
            speed = images_per_second(model, digits_batch(batch_size), steps=speed_steps, repeats=repeats, precision=precision)
            rows.append({"model": name, "precision": precision, "images per s": speed, "loss": metric, "final value": history.last(metric)})
    return rows, curves


def weight_difference(a: nn.Module | dict[str, torch.Tensor], b: nn.Module | dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between two models' parameters and buffers (0.0: the same bits)."""
    sa = a.state_dict() if isinstance(a, nn.Module) else a
    sb = b.state_dict() if isinstance(b, nn.Module) else b
    if sa.keys() != sb.keys():
        raise ValueError(f"the two models have different parameters: {sorted(set(sa) ^ set(sb))}")
    worst = 0.0
    for key in sa:
        if sa[key].shape != sb[key].shape:
            raise ValueError(f"{key} has shape {tuple(sa[key].shape)} in one model and {tuple(sb[key].shape)} in the other")
        if sa[key].is_floating_point():
            worst = max(worst, float((sa[key].double() - sb[key].double()).abs().max()) if sa[key].numel() else 0.0)
        elif not torch.equal(sa[key], sb[key]):
            worst = max(worst, float((sa[key] - sb[key]).abs().max()))
    return worst


def reproducibility_rows(name: str, run_root: str | os.PathLike, *, steps: int) -> list[dict[str, Any]]:
    """What changes the trained weights of ``name`` and what does not, each change against one reference run.

    The reference: seed 0, float32, the current thread count, trained without a stop. Each row
    trains once more with one change and reports the largest weight difference (0 = the same bits).
    """
    root = Path(run_root)
    threads = torch.get_num_threads()
    reference, _ = train_digits(name, root / "reference", steps=steps)

    def row(change: str, model: nn.Module) -> dict[str, Any]:
        diff = weight_difference(reference, model)
        return {"change": change, "largest weight difference": diff, "same bits": diff == 0.0}

    rows = [row("none: the same command again", train_digits(name, root / "again", steps=steps)[0])]
    # Stopped half-way and resumed: the checkpoint carries the weights, optimizers and generators.
    train_digits(name, root / "resumed", steps=steps // 2)
    rows.append(row(f"stopped at step {steps // 2}, then resumed", train_digits(name, root / "resumed", steps=steps, fresh=False)[0]))
    rows.append(row("another seed (1)", train_digits(name, root / "seed1", steps=steps, seed=1)[0]))
    other = 1 if threads > 1 else 2
    torch.set_num_threads(other)
    try:
        rows.append(row(f"{other} CPU thread(s) instead of {threads}", train_digits(name, root / "threads", steps=steps)[0]))
    finally:
        torch.set_num_threads(threads)
    rows.append(row("bfloat16 autocast", train_digits(name, root / "bfloat16", steps=steps, precision="bfloat16")[0]))
    return rows


def _one_step(model: TrainableModel, batch: tuple[torch.Tensor, torch.Tensor]) -> Any:
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    return lambda: model.training_step(batch, ctx)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null meanwhile: Kineto writes its start/stop lines there from C++,
    past Python's ``sys.stderr`` and past ``KINETO_LOG_LEVEL``. Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def digits_batch(batch_size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of ``batch_size`` training digits and their labels, drawn with ``seed``."""
    data = load_dataset("digits", "train")
    if not 1 <= batch_size <= len(data):
        raise ValueError(f"batch_size must be between 1 and {len(data)} (the training digits), got {batch_size}")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:batch_size]
    return data.images[idx], data.labels[idx]


def profile_training_step(model: TrainableModel, batch: tuple[torch.Tensor, torch.Tensor], *, steps: int = 10, warmup: int = 3, top: int = 12) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Profile ``steps`` training steps of ``model`` on ``batch`` (CPU) with ``torch.profiler``.

    Returns ``(rows, totals)``: the ``top`` operators by self CPU time (time in the operator
    itself, not in the operators it calls), each with its calls and milliseconds per step and its
    share of the step; and ``totals`` with the step's milliseconds, operator calls per step and
    the mean microseconds per call. Many calls of a few microseconds each mean the step is
    dominated by per-operator overhead rather than arithmetic.
    """
    # Kineto, the profiler's engine, prints start/stop and "no GPU" lines at its default log level.
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    from torch.profiler import ProfilerActivity, profile

    model.train()
    step = _one_step(model, batch)
    for _ in range(warmup):
        step()
    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total_self = sum(e.self_cpu_time_total for e in events)  # microseconds
    calls = sum(e.count for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    rows = [
        {
            "operator": e.key,
            "calls per step": e.count / steps,
            "self ms per step": e.self_cpu_time_total / 1000 / steps,
            "share %": 100 * e.self_cpu_time_total / total_self,
            "us per call": e.self_cpu_time_total / e.count,
        }
        for e in events[:top]
    ]
    totals = {
        "ms per step (profiled)": wall * 1000 / steps,
        "operator calls per step": calls / steps,
        "mean us per call": total_self / calls,
    }
    return rows, totals


def images_per_second(
    model: TrainableModel, batch: tuple[torch.Tensor, torch.Tensor], *, steps: int = 20, warmup: int = 3, repeats: int = 3, precision: str = "float32"
) -> float:
    """Training images per second of ``model`` on ``batch`` (CPU): the best of ``repeats`` timings of ``steps`` steps.

    The best, not the mean: on a shared machine, other processes only ever make a timing slower.
    ``precision`` is :class:`aigc_lab.train.TrainConfig`'s: the steps run under the same
    autocast as :func:`aigc_lab.train.fit` would use. The steps train ``model`` further.
    """
    dtype = runtime.autocast_dtype(precision, torch.device("cpu"))
    model.train()
    one_step = _one_step(model, batch)

    def step() -> None:
        with torch.autocast(device_type="cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            one_step()

    for _ in range(warmup):
        step()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, time.perf_counter() - start)
    return steps * len(batch[0]) / best


def cli_train(args: Sequence[str], *, processes: int = 1, threads: int | None = None, timeout: float = 900) -> tuple[dict[str, Any], float]:
    """Run ``python -m aigc_lab train ARGS`` (``processes`` > 1: under ``torchrun --standalone``).

    Returns the command's JSON summary and its wall-clock seconds, start-up included. ``threads``
    sets ``OMP_NUM_THREADS`` for each process (torchrun sets 1 by default when it starts several).
    Raises ``RuntimeError`` with the command's last error lines when it fails.
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    env = {**os.environ, "AIGC_LAB_PROGRESS": "0"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
        env["AIGC_LAB_THREADS"] = str(threads)
    if processes == 1:
        command = [sys.executable, "-m", "aigc_lab", "train", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m", "aigc_lab", "train", *args]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"`{' '.join(command[1:])}` failed with exit code {result.returncode}:\n{tail}")
    summaries = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if len(summaries) != 1:
        raise RuntimeError(f"expected one JSON summary from rank 0, got {len(summaries)}: {result.stdout[-500:]!r}")
    return json.loads(summaries[0]), wall


def describe_cpu() -> dict[str, Any]:
    """What this machine offers the chapter's measurements: cores, torch threads, native bfloat16."""
    return {"CPU cores": os.cpu_count(), "torch threads": torch.get_num_threads(), "native bfloat16": runtime.bfloat16_native()}
