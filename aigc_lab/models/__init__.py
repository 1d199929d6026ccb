"""The book's models, one file per family, and the registry the command line builds them from.

``build_model(name, **hparams)`` rebuilds any registered model; ``MODELS`` maps each name to its
class. Chapters add their families to :data:`_REGISTRY` as they arrive.

A family's file is imported only when one of its models is asked for (``build_model("vae")``,
``MODELS["vae"]``, ``from aigc_lab.models import VAE``). That keeps a notebook's imports, and so the
package code its outputs depend on (see :mod:`aigc_lab.provenance`), down to the families it uses:
a change to the diffusion file does not make the VAE chapter stale.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aigc_lab.contract import TrainableModel

# registered name -> (module of its family, class name)
_REGISTRY: dict[str, tuple[str, str]] = {
    "mse-generator": ("aigc_lab.models.mlp", "MSEGenerator"),
    "wgan-gp-mlp": ("aigc_lab.models.mlp", "WGANGP"),
    "vae": ("aigc_lab.models.vae", "VAE"),
    "pixelcnn": ("aigc_lab.models.autoregressive", "PixelCNN"),
    "row-rnn": ("aigc_lab.models.autoregressive", "RowRNN"),
    "dcgan": ("aigc_lab.models.gan", "DCGAN"),
    "wgan": ("aigc_lab.models.gan", "WGAN"),
    "ddpm": ("aigc_lab.models.diffusion", "DDPM"),
    # image-to-image models (chapter 6.1): trained on clean patches they damage themselves; `apply` runs them
    "denoiser": ("aigc_lab.models.denoising", "Denoiser"),
    "super-resolution": ("aigc_lab.models.super_resolution", "SuperResolver"),
    "inpainter": ("aigc_lab.models.inpainting", "Inpainter"),
    "low-light": ("aigc_lab.models.low_light", "CurveEnhancer"),
    "low-light-paired": ("aigc_lab.models.low_light", "PairedEnhancer"),
}
# Classes importable from this package without naming their family's file.
_EXPORTS: dict[str, str] = {
    **{cls: module for module, cls in _REGISTRY.values()},
    "MLPCritic": "aigc_lab.models.mlp",
    "MLPGenerator": "aigc_lab.models.mlp",
}


def _load(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


class _LazyModels(Mapping):
    """``name -> model class``, importing a family's file the first time one of its names is read."""

    def __getitem__(self, name: str) -> type[TrainableModel]:
        cls = _load(*_REGISTRY[name])
        if cls.name != name:  # the registry and the class must agree, or the CLI builds the wrong model
            raise RuntimeError(f"{cls.__name__}.name is {cls.name!r} but it is registered as {name!r}")
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTRY)

    def __len__(self) -> int:
        return len(_REGISTRY)


MODELS: Mapping[str, type[TrainableModel]] = _LazyModels()


def build_model(name: str, **hparams: Any) -> TrainableModel:
    """Build the model registered as ``name`` with keyword arguments ``hparams``."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; known models: {', '.join(sorted(_REGISTRY))}")
    try:
        return MODELS[name](**hparams)
    except TypeError as exc:
        raise ValueError(f"bad settings for model {name!r}: {exc}") from None


def __getattr__(name: str) -> Any:
    """``from aigc_lab.models import VAE`` imports the VAE's file, and only it (PEP 562)."""
    if name in _EXPORTS:
        return _load(_EXPORTS[name], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["MODELS", "build_model", *_EXPORTS]
