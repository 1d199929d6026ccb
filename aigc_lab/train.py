"""The one training loop every chapter uses.

A model is a :class:`TrainableModel`: it says which optimizers it needs
(:meth:`~TrainableModel.configure_optimizers`) and what one step of training does
(:meth:`~TrainableModel.training_step`). :func:`fit` does the rest, in a plain loop::

    for step in range(start, steps):
        x, y = batch(step)                       # same batches after a resume
        metrics = model.training_step((x, y), ctx) # calls ctx.optimize(name, loss)
        log metrics to TensorBoard, update the progress bar
        every checkpoint_every steps: save model, optimizers, RNG states atomically

What it gives every chapter:

* a tqdm progress bar (``AIGC_LAB_PROGRESS=0`` turns it off, e.g. when executing the book);
* TensorBoard scalars (``train/<metric>``) and sample grids (``samples``) through
  ``torch.utils.tensorboard.SummaryWriter``, read back by :func:`aigc_lab.viz.read_scalars`;
* atomic checkpoints and resume: calling :func:`fit` again on the same run directory
  continues from the last checkpoint and, on the CPU, ends with exactly the same weights
  as a run that was never interrupted (the batch order is a function of the seed and the
  step, and the random number generators are saved with the weights);
* a guard that stops with a clear message when a loss becomes NaN or infinite;
* mixed precision: float16 autocast with a gradient scaler on CUDA, bfloat16 on request anywhere
  (``TrainConfig.precision``, :func:`aigc_lab.runtime.autocast_dtype`);
* data-parallel training under ``torchrun`` (:mod:`aigc_lab.distributed`): each process trains on
  its shard of every global batch, gradients are averaged after each backward pass, rank 0 alone
  writes logs and checkpoints, and a stopped run resumes with the same number of processes.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from aigc_lab import distributed, provenance, runtime
from aigc_lab.contract import StepContext, TrainableModel, TrainingDivergedError, check_finite  # noqa: F401 (TrainingDivergedError: raised by fit, importable here)
from aigc_lab.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_state_dict_checked,
    save_checkpoint,
    save_json,
)

M = TypeVar("M", bound=nn.Module)

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
PROGRESS_ENV = "AIGC_LAB_PROGRESS"


@dataclass
class TrainConfig:
    """Settings of one training run (saved in ``RUN_DIR/config.json``).

    What ``seed`` covers. :func:`fit` calls ``runtime.seed_everything(seed)`` when it starts, so
    the seed fixes the batch order (each epoch's permutation is drawn from the seed and the
    epoch) and every random number training draws (latent codes, diffusion noise, dropout);
    a resumed run takes the generators' states from its checkpoint instead, and so ends where
    the uninterrupted run ends. The weights' initialisation happens before :func:`fit`, when
    the model is built: the seed covers it only when the model is built under it, as
    :func:`build_under_seed` (the command line) and ``torch.manual_seed(seed)`` before building
    (the notebooks, :func:`aigc_lab.recipes.train_recipe`) do.

    Under ``torchrun`` process ``r`` draws its training noise from ``seed + r`` (rank 0 from the
    seed itself), and the batch order is the single process's: each process takes its slice of
    the same global batch.

    Same seed, same bits holds on one machine's CPU with one number of threads. The seed does
    not cover the thread count (a sum split over more threads rounds differently; the
    command line takes it from ``AIGC_LAB_THREADS``), nondeterministic kernels (some CUDA
    ones add in a varying order with atomics, e.g. ``index_add`` and some convolution
    gradients), nor another CPU or another torch version, whose kernels may round differently.
    """

    steps: int  # optimisation steps in total (a resumed run continues up to this)
    batch_size: int = 64
    seed: int = 0  # fixes the batch order and the training noise (and the weights, when built under it)
    log_every: int = 25  # TensorBoard scalars every this many steps
    image_every: int = 0  # sample grids every this many steps (0: only at the end)
    checkpoint_every: int = 250  # atomic checkpoint every this many steps (and at the end)
    eval_every: int = 0  # call fit()'s eval_fn every this many steps (0: only at the end)
    precision: str = "auto"  # "auto" (float16 on CUDA, float32 elsewhere), "float32", "float16" (CUDA), "bfloat16"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        for name in ("image_every", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}")
        if self.precision not in runtime.PRECISIONS:
            raise ValueError(f"TrainConfig.precision must be one of {', '.join(runtime.PRECISIONS)}; got {self.precision!r}")


@dataclass
class History:
    """What a run logged: ``scalars[name] = (steps, values)``, and how long it took."""

    scalars: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    steps: int = 0
    train_seconds: float = 0.0
    run_dir: Path | None = None

    def last(self, name: str) -> float:
        """The last logged value of ``name``."""
        if name not in self.scalars:
            raise KeyError(f"no metric {name!r} was logged; logged: {sorted(self.scalars)}")
        return self.scalars[name][1][-1]


def build_under_seed(seed: int, build: Callable[..., M], /, *args: Any, **kwargs: Any) -> M:
    """``build(*args, **kwargs)`` after ``runtime.seed_everything(seed)``: the weights' initialisation then depends on the seed.

    ``build_under_seed(3, build_model, "vae", image_shape=(1, 8, 8))`` followed by :func:`fit`
    with ``TrainConfig(seed=3)`` gives the same weights in every process (see :class:`TrainConfig`).
    """
    runtime.seed_everything(seed)
    return build(*args, **kwargs)


class _Batches:
    """Deterministic batches: the batch of step ``s`` depends only on the seed and ``s``.

    That is what makes a resumed run identical to an uninterrupted one: no data-loader state
    has to be saved. Each epoch is a fresh permutation; the last incomplete batch is dropped.
    In data-parallel training every process draws the same global batch's indices and loads only
    its own slice of them (:func:`aigc_lab.distributed.shard`).
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, device: torch.device, group: distributed.Group = distributed.SINGLE):
        n = len(dataset)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("the dataset is empty")
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} is larger than the dataset ({n} images); use batch_size <= {n}")
        if batch_size % group.world_size:
            raise ValueError(f"batch_size {batch_size} does not split evenly over {group.world_size} processes; use a multiple of {group.world_size}")
        self.dataset, self.n, self.batch_size, self.seed, self.device, self.group = dataset, n, batch_size, seed, device, group
        self.steps_per_epoch = n // batch_size
        images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
        in_memory = isinstance(images, Tensor) and isinstance(labels, Tensor) and getattr(dataset, "transform", None) is None
        # Small in-memory datasets live on the device once instead of being copied every step.
        self.images = images.to(device) if in_memory else None
        self.labels = labels.to(device) if in_memory else None
        self._epoch, self._perm = -1, None

    def __call__(self, step: int) -> tuple[Tensor, Tensor]:
        epoch, j = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        idx = distributed.shard(self._perm[j * self.batch_size : (j + 1) * self.batch_size], self.group)
        if self.images is not None:
            idx = idx.to(self.device)
            return self.images[idx], self.labels[idx]
        items = [self.dataset[int(i)] for i in idx]
        x = torch.stack([item[0] for item in items]).to(self.device)
        y = torch.stack([torch.as_tensor(item[1]) for item in items]).to(self.device)
        return x, y


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _progress_enabled() -> bool:
    return os.environ.get(PROGRESS_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


def _resume(
    model: TrainableModel,
    optimizers: dict[str, torch.optim.Optimizer],
    scaler: torch.amp.GradScaler | None,
    ckpt_path: Path,
    device: torch.device,
    history: History,
    group: distributed.Group = distributed.SINGLE,
) -> int:
    """Load the checkpoint of an earlier session of this run into the model, its optimizers, the
    random number generators and ``history``; return the step to continue from."""
    state = load_checkpoint(ckpt_path, map_location=device)
    saved_world = int(state.get("world_size", 1))
    if saved_world != group.world_size:
        raise CheckpointError(
            f"{ckpt_path} was written by a run of {saved_world} process(es) and this one has {group.world_size}; "
            f"resume with {saved_world} (torchrun --nproc_per_node={saved_world}), or start over with resume=False (--fresh)"
        )
    if state.get("model_name") != model.name:
        raise CheckpointError(f"{ckpt_path} holds a {state.get('model_name')!r} model, not {model.name!r}; use another run_dir or resume=False")
    saved = json.loads(json.dumps(state.get("hparams", model.hparams)))  # lists and tuples compare alike
    wanted = json.loads(json.dumps(model.hparams))
    if saved != wanted:
        changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        detail = ", ".join(f"{k}: {saved.get(k)!r} there, {wanted.get(k)!r} here" for k in changed)
        raise CheckpointError(f"{ckpt_path} holds a {model.name!r} model with other settings ({detail}); use another run_dir or resume=False")
    load_state_dict_checked(model, state["model"], what="model", path=ckpt_path)
    for name, opt in optimizers.items():
        if name not in state["optimizers"]:
            raise CheckpointError(f"{ckpt_path} has no state for optimizer {name!r}")
        opt.load_state_dict(state["optimizers"][name])
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    # Each process continues its own random number streams (one per rank under torchrun).
    _set_rng_state(state["rng_by_rank"][group.rank] if group.is_distributed else state["rng"])
    history.scalars = {k: (list(v[0]), list(v[1])) for k, v in state["history"].items()}
    history.train_seconds = float(state["train_seconds"])
    return int(state["step"])


class _NoWriter:
    """What processes other than rank 0 write to TensorBoard: nothing (rank 0 logs the global means)."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_image(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


class _RunLog:
    """Scalars into TensorBoard and the :class:`History` at once; training metrics averaged over ``log_every`` steps."""

    def __init__(self, writer: Any, history: History, group: distributed.Group = distributed.SINGLE):
        self.writer, self.history, self.group = writer, history, group
        self.pending: dict[str, list[float]] = {}

    def add(self, name: str, value: float, step: int, *, board_name: str) -> None:
        self.writer.add_scalar(board_name, value, step)
        steps, values = self.history.scalars.setdefault(name, ([], []))
        steps.append(step)
        values.append(value)

    def collect(self, metrics: dict[str, Tensor | float], step: int) -> None:
        """Check one step's metrics (a NaN stops the run here) and keep them until :meth:`flush`."""
        for name, value in metrics.items():
            value = float(value.detach()) if isinstance(value, Tensor) else float(value)
            check_finite(name, value, step)
            self.pending.setdefault(name, []).append(value)

    def flush(self, step: int) -> dict[str, float]:
        means = distributed.mean_over_processes({k: sum(v) / len(v) for k, v in self.pending.items()}, self.group)
        for name, value in means.items():
            self.add(name, value, step, board_name=f"train/{name}")
        self.pending.clear()
        return means


def fit(
    model: TrainableModel,
    dataset: Dataset,
    run_dir: str | os.PathLike,
    config: TrainConfig,
    *,
    device: torch.device | str | None = None,
    resume: bool = True,
    data_spec: dict[str, Any] | None = None,
    eval_fn: Callable[[TrainableModel], dict[str, float]] | None = None,
) -> History:
    """Train ``model`` on ``dataset`` for ``config.steps`` steps, logging into ``run_dir``.

    Args:
        model: the model; moved to ``device``.
        dataset: yields ``(image in [0, 1], label)``; an :class:`aigc_lab.data.ImageDataset`
            is kept on the device as a whole.
        run_dir: where TensorBoard events, ``config.json`` and ``checkpoint.pt`` go.
        config: steps, batch size, seed (what it covers: see :class:`TrainConfig`), logging and
            checkpoint intervals.
        device: defaults to :func:`aigc_lab.runtime.device`; under ``torchrun`` on CUDA, the GPU of
            the process's local rank.
        resume: continue from ``run_dir/checkpoint.pt`` when it exists (False starts over).
        data_spec: how to reload the data (e.g. ``{"name": "digits", "size": 16}``), stored in
            ``config.json`` for the command line's ``eval``.
        eval_fn: called as ``eval_fn(model)`` (in eval mode, without gradients) every ``config.eval_every`` steps
            and at the end; the numbers it returns are logged as ``eval/<name>`` (e.g. a
            Frechet distance during training). Its time is not counted as training time, and the
            random number generators are restored afterwards, so evaluating does not change
            the training run.

    Under ``torchrun`` (several processes, :mod:`aigc_lab.distributed`) every process calls
    :func:`fit` with the same arguments; ``config.batch_size`` is the global batch, split over the
    processes; ``eval_fn`` and the sample grids run on rank 0 only.

    Returns:
        The :class:`History` of logged scalars, including those of earlier sessions of the run.
    """
    from torch.utils.tensorboard import SummaryWriter
    from torchvision.utils import make_grid
    from tqdm.auto import tqdm

    if not isinstance(model, TrainableModel):
        raise ValueError(f"model must be an aigc_lab TrainableModel, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    dev = torch.device(device) if device is not None else runtime.device()
    group, dev = distributed.setup(dev)  # the single process, or this process's place among torchrun's
    run_dir = Path(run_dir)
    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / CHECKPOINT_NAME

    # 1. Seed, place the model, build its optimizers; continue an earlier session if there is one.
    runtime.seed_everything(config.seed + group.rank)
    model.to(dev)
    distributed.broadcast_parameters(model, group)  # every process starts from rank 0's weights
    optimizers = model.configure_optimizers()
    autocast_dtype = runtime.autocast_dtype(config.precision, dev)
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None
    history = History(run_dir=run_dir)
    start = _resume(model, optimizers, scaler, ckpt_path, dev, history, group) if resume and ckpt_path.exists() else 0

    # 2. Record how to rebuild the run: the model's name and settings, the loop's, the data's.
    if group.is_main:
        save_json(
            {
                "model": model.name,
                "hparams": model.hparams,
                "train": asdict(config),
                "data": data_spec or {"name": getattr(dataset, "name", type(dataset).__name__), "split": getattr(dataset, "split", None)},
                "runtime": {**runtime.describe(), "processes": str(group.world_size)},
            },
            run_dir / CONFIG_NAME,
        )
    batches = _Batches(dataset, config.batch_size, config.seed, dev, group)
    sync = (lambda optimizer: distributed.average_gradients(optimizer, group.world_size)) if group.is_distributed else None
    ctx = StepContext(optimizers, scaler, dev, sync=sync)
    # The package code this run depends on: the model's family, this loop and the data's loaders,
    # with what they import; stored next to every checkpoint (aigc_lab.provenance).
    training_code = [type(model).__module__, __name__, type(dataset).__module__]

    def save(step: int) -> None:
        rng_by_rank = distributed.gather(_rng_state(), group)  # every process's streams, for an exact resume
        if group.is_main:
            save_checkpoint(
                {
                    "model_name": model.name,
                    "hparams": model.hparams,
                    "step": step,
                    "model": model.state_dict(),
                    "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                    **({"scaler": scaler.state_dict()} if scaler is not None else {}),
                    "rng": rng_by_rank[0],
                    **({"world_size": group.world_size, "rng_by_rank": rng_by_rank} if group.is_distributed else {}),
                    "history": {k: [list(v[0]), list(v[1])] for k, v in history.scalars.items()},
                    "train_seconds": history.train_seconds,
                },
                ckpt_path,
            )
            provenance.write_run_record(run_dir, training_code)
        distributed.barrier(group)  # no process runs ahead of (or exits before) the checkpoint

    def evaluate(step: int) -> None:
        rng = _rng_state()  # evaluating draws random numbers; the training run must not notice
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                results = eval_fn(model)
        finally:
            model.train(was_training)
            _set_rng_state(rng)
        if not isinstance(results, dict):
            raise ValueError(f"eval_fn must return a dict of numbers, got {type(results).__name__}")
        for name, value in results.items():
            log.add(f"eval/{name}", float(value), step, board_name=f"eval/{name}")

    def log_images(step: int) -> None:
        was_training = model.training
        model.eval()
        try:
            images = model.sample(64, generator=torch.Generator().manual_seed(config.seed + 12345))
        except NotImplementedError:
            return
        finally:
            model.train(was_training)
        writer.add_image("samples", make_grid(images.detach().float().cpu(), nrow=8, pad_value=1.0), step)

    # 3. The loop: one step, its metrics, and at their intervals logs, evaluations and checkpoints.
    writer = SummaryWriter(log_dir=str(run_dir)) if group.is_main else _NoWriter()
    log = _RunLog(writer, history, group)
    quiet = not _progress_enabled() or start >= config.steps or not group.is_main
    bar = tqdm(total=config.steps, initial=start, disable=quiet, desc=model.name or "train")
    model.train()
    t0 = time.perf_counter()
    try:
        for step in range(start, config.steps):
            ctx.step = step
            x, y = batches(step)
            with torch.autocast(device_type=dev.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                metrics = model.training_step((x, y), ctx)
            if scaler is not None:
                scaler.update()
            log.collect(metrics, step)
            done = step + 1
            last = done == config.steps
            if done % config.log_every == 0 or last:
                bar.set_postfix({k: f"{v:.4g}" for k, v in log.flush(done).items()}, refresh=False)
            if config.image_every and done % config.image_every == 0 and group.is_main:
                log_images(done)
            bar.update(1)
            if eval_fn is not None and group.is_main and ((config.eval_every and done % config.eval_every == 0) or last):
                history.train_seconds += time.perf_counter() - t0  # evaluation time is not training time
                evaluate(done)
                t0 = time.perf_counter()
            if done % config.checkpoint_every == 0 or last:
                history.train_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                save(done)
        if start < config.steps and group.is_main:
            log_images(config.steps)
    finally:
        bar.close()
        writer.close()
    history.steps = max(start, config.steps)
    if group.is_main:
        provenance.log_run(run_dir, "trained" if start < config.steps else "loaded")
    return history
