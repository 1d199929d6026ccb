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
* mixed precision (float16 autocast with a gradient scaler) on CUDA.
"""

from __future__ import annotations

import functools
import json
import math
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

from aigc_lab import provenance, runtime
from aigc_lab.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_state_dict_checked,
    save_checkpoint,
    save_json,
)

T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
PROGRESS_ENV = "AIGC_LAB_PROGRESS"


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite."""


def inference(method: Callable[..., T]) -> Callable[..., T]:
    """Decorate a model method to run without gradients and with dropout off, restoring the training mode after.

    For sampling and measuring methods (``sample``, ``evaluate``, ...) that may be called in the
    middle of training, e.g. by :func:`fit`'s ``eval_fn``.
    """

    @functools.wraps(method)
    def wrapper(self: nn.Module, *args, **kwargs):
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return method(self, *args, **kwargs)
        finally:
            self.train(was_training)

    return wrapper


class TrainableModel(nn.Module):
    """Base class of every model :func:`fit` can train.

    Subclasses set ``self.hparams`` (the keyword arguments that rebuild the model, saved in
    the run directory so ``python -m aigc_lab sample RUN_DIR`` can load it) and implement
    :meth:`configure_optimizers` and :meth:`training_step`; generative models also implement
    :meth:`sample`.
    """

    #: the name the model is registered under in :mod:`aigc_lab.models`.
    name: str = ""
    #: the number of steps its defaults were tuned for on digits (the command line's default).
    default_steps: int = 2000

    def __init__(self) -> None:
        super().__init__()
        self.hparams: dict[str, Any] = {}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name, e.g. ``{"generator": Adam(...), "critic": Adam(...)}``."""
        raise NotImplementedError(f"{type(self).__name__} must implement configure_optimizers()")

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> dict[str, Tensor | float]:
        """One step on ``batch = (images in [0, 1], labels)``; call ``ctx.optimize(name, loss)``.

        Returns the metrics to log (scalars).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement training_step()")

    @torch.no_grad()
    def sample(self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """``n`` generated images, ``n x C x H x W`` in ``[0, 1]``."""
        raise NotImplementedError(f"{type(self).__name__} cannot generate samples")

    @torch.no_grad()
    def evaluate(self, dataset: Dataset) -> dict[str, float]:
        """Model-specific measurements on ``dataset`` (e.g. test NLL), reported by ``eval``.

        The default has none; likelihood models return e.g. ``{"nll_nats": ..., "bits_per_dim": ...}``.
        """
        return {}


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
    amp: bool = True  # float16 mixed precision, used only on CUDA

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        for name in ("image_every", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}")


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


class StepContext:
    """Handed to :meth:`TrainableModel.training_step`: the step number and ``optimize``."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], scaler: torch.amp.GradScaler | None, device: torch.device):
        self.optimizers = optimizers
        self.scaler = scaler
        self.device = device
        self.step = 0

    def optimize(self, name: str, loss: Tensor) -> None:
        """``zero_grad``, backward and step the optimizer ``name`` on ``loss``.

        Raises :class:`TrainingDivergedError` when the loss is NaN or infinite, before it can
        poison the weights.
        """
        if name not in self.optimizers:
            raise KeyError(f"no optimizer named {name!r}; configure_optimizers() returned {sorted(self.optimizers)}")
        if loss.dim() != 0:
            raise ValueError(f"the {name} loss must be a scalar, got shape {tuple(loss.shape)}; reduce it with .mean()")
        _check_finite(name, float(loss.detach()), self.step)
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
        else:
            loss.backward()
            optimizer.step()


def build_under_seed(seed: int, build: Callable[..., M], /, *args: Any, **kwargs: Any) -> M:
    """``build(*args, **kwargs)`` after ``runtime.seed_everything(seed)``: the weights' initialisation then depends on the seed.

    ``build_under_seed(3, build_model, "vae", image_shape=(1, 8, 8))`` followed by :func:`fit`
    with ``TrainConfig(seed=3)`` gives the same weights in every process (see :class:`TrainConfig`).
    """
    runtime.seed_everything(seed)
    return build(*args, **kwargs)


def _check_finite(name: str, value: float, step: int) -> None:
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"the {name} loss became {value} at step {step}: training diverged. "
            "Lower the learning rate, add a constraint (e.g. gradient clipping or a penalty), "
            "or look at the last checkpoint"
        )


class _Batches:
    """Deterministic batches: the batch of step ``s`` depends only on the seed and ``s``.

    That is what makes a resumed run identical to an uninterrupted one: no data-loader state
    has to be saved. Each epoch is a fresh permutation; the last incomplete batch is dropped.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, device: torch.device):
        n = len(dataset)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("the dataset is empty")
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} is larger than the dataset ({n} images); use batch_size <= {n}")
        self.dataset, self.n, self.batch_size, self.seed, self.device = dataset, n, batch_size, seed, device
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
        idx = self._perm[j * self.batch_size : (j + 1) * self.batch_size]
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
        device: defaults to :func:`aigc_lab.runtime.device`.
        resume: continue from ``run_dir/checkpoint.pt`` when it exists (False starts over).
        data_spec: how to reload the data (e.g. ``{"name": "digits", "size": 16}``), stored in
            ``config.json`` for the command line's ``eval``.
        eval_fn: called as ``eval_fn(model)`` (in eval mode, without gradients) every ``config.eval_every`` steps
            and at the end; the numbers it returns are logged as ``eval/<name>`` (e.g. a
            Frechet distance during training). Its time is not counted as training time, and the
            random number generators are restored afterwards, so evaluating does not change
            the training run.

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
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / CHECKPOINT_NAME

    runtime.seed_everything(config.seed)
    model.to(dev)
    optimizers = model.configure_optimizers()
    use_amp = config.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    history = History(run_dir=run_dir)
    start = 0

    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=dev)
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
        _set_rng_state(state["rng"])
        start = int(state["step"])
        history.scalars = {k: (list(v[0]), list(v[1])) for k, v in state["history"].items()}
        history.train_seconds = float(state["train_seconds"])

    save_json(
        {
            "model": model.name,
            "hparams": model.hparams,
            "train": asdict(config),
            "data": data_spec or {"name": getattr(dataset, "name", type(dataset).__name__), "split": getattr(dataset, "split", None)},
            "runtime": runtime.describe(),
        },
        run_dir / CONFIG_NAME,
    )

    batches = _Batches(dataset, config.batch_size, config.seed, dev)
    ctx = StepContext(optimizers, scaler, dev)
    fixed_noise = torch.Generator().manual_seed(config.seed + 12345)
    pending: dict[str, list[float]] = {}

    # The package code this run depends on: the model's family, this loop and the data's loaders,
    # with what they import; stored next to every checkpoint (aigc_lab.provenance).
    training_code = [type(model).__module__, __name__, type(dataset).__module__]

    def save(step: int) -> None:
        save_checkpoint(
            {
                "model_name": model.name,
                "hparams": model.hparams,
                "step": step,
                "model": model.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                **({"scaler": scaler.state_dict()} if scaler is not None else {}),
                "rng": _rng_state(),
                "history": {k: [list(v[0]), list(v[1])] for k, v in history.scalars.items()},
                "train_seconds": history.train_seconds,
            },
            ckpt_path,
        )
        provenance.write_run_record(run_dir, training_code)

    def log_eval(writer: SummaryWriter, step: int) -> None:
        if eval_fn is None:
            return
        rng = _rng_state()
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
            value = float(value)
            writer.add_scalar(f"eval/{name}", value, step)
            steps_list, values = history.scalars.setdefault(f"eval/{name}", ([], []))
            steps_list.append(step)
            values.append(value)

    def log_images(writer: SummaryWriter, step: int) -> None:
        try:
            was_training = model.training
            model.eval()
            images = model.sample(64, generator=fixed_noise.manual_seed(config.seed + 12345))
            model.train(was_training)
        except NotImplementedError:
            return
        writer.add_image("samples", make_grid(images.detach().float().cpu(), nrow=8, pad_value=1.0), step)

    writer = SummaryWriter(log_dir=str(run_dir))
    bar = tqdm(total=config.steps, initial=start, disable=not _progress_enabled() or start >= config.steps, desc=model.name or "train")
    model.train()
    t0 = time.perf_counter()
    try:
        for step in range(start, config.steps):
            ctx.step = step
            x, y = batches(step)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                metrics = model.training_step((x, y), ctx)
            if scaler is not None:
                scaler.update()
            for name, value in metrics.items():
                value = float(value.detach()) if isinstance(value, Tensor) else float(value)
                _check_finite(name, value, step)
                pending.setdefault(name, []).append(value)
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                means = {k: sum(v) / len(v) for k, v in pending.items()}
                for name, value in means.items():
                    writer.add_scalar(f"train/{name}", value, done)
                    steps_list, values = history.scalars.setdefault(name, ([], []))
                    steps_list.append(done)
                    values.append(value)
                bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()}, refresh=False)
                pending.clear()
            if config.image_every and done % config.image_every == 0:
                log_images(writer, done)
            bar.update(1)
            if eval_fn is not None and ((config.eval_every and done % config.eval_every == 0) or done == config.steps):
                history.train_seconds += time.perf_counter() - t0
                log_eval(writer, done)
                t0 = time.perf_counter()
            if done % config.checkpoint_every == 0 or done == config.steps:
                history.train_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                save(done)
        if start < config.steps:
            log_images(writer, config.steps)
    finally:
        bar.close()
        writer.close()
    history.steps = max(start, config.steps)
    provenance.log_run(run_dir, "trained" if start < config.steps else "loaded")
    return history


def load_run(run_dir: str | os.PathLike, *, device: torch.device | str | None = None) -> tuple[TrainableModel, dict[str, Any]]:
    """Rebuild the trained model of ``run_dir`` and return it with the run's ``config.json``."""
    from aigc_lab.models import build_model

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    state = load_checkpoint(run_dir / CHECKPOINT_NAME, map_location="cpu")
    model = build_model(state["model_name"], **state["hparams"])
    load_state_dict_checked(model, state["model"], what="model", path=run_dir / CHECKPOINT_NAME)
    config["step"] = int(state["step"])
    config["train_seconds"] = float(state["train_seconds"])
    config["history"] = state["history"]
    dev = torch.device(device) if device is not None else runtime.device()
    provenance.log_run(run_dir, "loaded")
    return model.to(dev).eval(), config


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` that :func:`fit` wrote into ``run_dir``.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.json``: it is not a training run.
        CheckpointError: the file cannot be read or is not a run's configuration; the message
            names it and says how to rewrite it.
    """
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run: no {CONFIG_NAME} in it (train one with `python -m aigc_lab train`)")
    rewrite = "training it again with the same command resumes from its checkpoint and rewrites the file"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not a text file: the run directory is damaged; {rewrite}") from None
    except OSError as exc:
        raise CheckpointError(f"could not read {path}: {exc.strerror or exc}") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path} is not valid JSON ({exc.msg}: line {exc.lineno}, column {exc.colno}): the run directory is damaged; {rewrite}"
        ) from None
    missing = [key for key in ("model", "data") if not isinstance(config, dict) or key not in config]
    if missing:
        raise CheckpointError(f"{path} is JSON but not a run's configuration (it lacks {', '.join(map(repr, missing))}): the run directory is damaged; {rewrite}")
    return config
