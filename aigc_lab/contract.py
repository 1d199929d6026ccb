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


class ImageToImageModel(TrainableModel):
    """A model that maps a degraded image to a restored one (chapter 6.1); what ``python -m aigc_lab apply`` runs.

    It trains on clean images: each :meth:`~TrainableModel.training_step` degrades its batch
    afresh (noise, a mask, downsampling, darkness) and learns to undo it. :meth:`restore` takes
    images of any size, not only the training patches.
    """

    #: whether :meth:`restore` needs a mask (``1`` = missing pixel), as an inpainter does.
    needs_mask: bool = False
    #: the dataset options training uses unless told otherwise: random patches, not whole photos.
    train_data_options: dict[str, Any] = {"patch_size": 48, "n_patches": 4000}

    @property
    def channels(self) -> int:
        """The number of channels the network takes (1 gray, 3 colour)."""
        return int(self.hparams["image_shape"][0])

    @property
    def output_channels(self) -> int:
        """The number of channels :meth:`restore` returns: :attr:`channels`, except for a translation model (pix2pix: gray in, colour out)."""
        return self.channels

    def target(self, clean: Tensor) -> Tensor:
        """What :meth:`restore` of :meth:`damage`'s input should give back: ``clean`` itself, except for paired data (pix2pix: the target half of each pair)."""
        return clean

    @property
    def scale(self) -> int:
        """Output side over input side: 1, or the super-resolution factor."""
        return int(self.hparams.get("scale", 1))

    def damage(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """What training does to clean images: ``(the model's input, the mask or None)``; for measuring on a test set."""
        raise NotImplementedError(f"{type(self).__name__} must implement damage()")

    def restore(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """Restore ``N x C x H x W`` images in ``[0, 1]`` (``C`` = :attr:`channels`, any size) in evaluation mode.

        Returns ``N x C x (scale H) x (scale W)`` images in ``[0, 1]``. ``mask`` (``N or 1 x 1 x H x W``,
        1 = missing) is required when :attr:`needs_mask` and refused otherwise.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement restore()")

    def check_restore_input(self, images: Tensor, mask: Tensor | None, *, check_range: bool = True) -> None:
        """Raise ``ValueError`` naming what :meth:`restore` expects, before any network sees ``images``.

        ``check_range=False`` accepts values outside ``[0, 1]`` (a denoiser's unclipped noisy input).
        """
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != self.channels:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"{self.name} restores N x {self.channels} x H x W images in [0, 1], got {shape}")
        if not images.is_floating_point():
            raise ValueError(f"{self.name} restores float images in [0, 1], got {images.dtype}")
        if check_range and images.numel() and (images.min() < 0 or images.max() > 1):
            raise ValueError(f"{self.name} restores images in [0, 1], got values in [{float(images.min()):.3g}, {float(images.max()):.3g}]")
        if self.needs_mask and mask is None:
            raise ValueError(f"{self.name} needs a mask of the missing pixels (1 = missing)")
        if not self.needs_mask and mask is not None:
            raise ValueError(f"{self.name} takes no mask; only an inpainter does")


class StepContext:
    """Handed to :meth:`TrainableModel.training_step`: the step number and ``optimize``."""

    def __init__(
        self,
        optimizers: dict[str, torch.optim.Optimizer],
        scaler: torch.amp.GradScaler | None,
        device: torch.device,
        *,
        sync: Callable[[torch.optim.Optimizer], None] | None = None,
    ):
        self.optimizers = optimizers
        self.scaler = scaler
        self.device = device
        # Called between backward and the optimizer step: the loop passes the gradient averaging of
        # data-parallel training (aigc_lab.distributed); None in a single process.
        self.sync = sync
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
            if self.sync is not None:
                self.sync(optimizer)
            self.scaler.step(optimizer)
        else:
            loss.backward()
            if self.sync is not None:
                self.sync(optimizer)
            optimizer.step()


def check_finite(name: str, value: float, step: int) -> None:
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"the {name} loss became {value} at step {step}: training diverged. "
            "Lower the learning rate, add a constraint (e.g. gradient clipping or a penalty), "
            "or look at the last checkpoint"
        )
