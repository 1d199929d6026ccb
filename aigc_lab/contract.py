"""The model contract: what a model gives the training loop, and what the loop hands back.

:func:`aigc_lab.train.fit` trains any :class:`TrainableModel`: the model says which optimizers it
needs (:meth:`~TrainableModel.configure_optimizers`) and what one step does
(:meth:`~TrainableModel.training_step`, which calls :meth:`StepContext.optimize`). Both the models
and the loop import this module and nothing else of each other, so the layers point one way:
``contract <- models``, ``contract <- train``, and :mod:`aigc_lab.runs` (loading a trained run,
which needs the model registry) above both.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

T = TypeVar("T")


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
        check_finite(name, float(loss.detach()), self.step)
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
        else:
            loss.backward()
            optimizer.step()


def check_finite(name: str, value: float, step: int) -> None:
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"the {name} loss became {value} at step {step}: training diverged. "
            "Lower the learning rate, add a constraint (e.g. gradient clipping or a penalty), "
            "or look at the last checkpoint"
        )
