"""The book's models, one file per family, and the registry the command line builds them from.

``build_model(name, **hparams)`` rebuilds any registered model; ``MODELS`` lists them.
Chapters add their families here as they arrive.
"""

from __future__ import annotations

import difflib
from typing import Any

from aigc_lab.models.autoregressive import PixelCNN, RowRNN
from aigc_lab.models.diffusion import DDPM
from aigc_lab.models.gan import DCGAN, WGAN
from aigc_lab.models.mlp import WGANGP, MLPCritic, MLPGenerator, MSEGenerator
from aigc_lab.models.vae import VAE
from aigc_lab.train import TrainableModel

MODELS: dict[str, type[TrainableModel]] = {cls.name: cls for cls in (MSEGenerator, WGANGP, VAE, PixelCNN, RowRNN, DCGAN, WGAN, DDPM)}


def build_model(name: str, **hparams: Any) -> TrainableModel:
    """Build the model registered as ``name`` with keyword arguments ``hparams``."""
    if name not in MODELS:
        close = difflib.get_close_matches(name, MODELS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; known models: {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](**hparams)
    except TypeError as exc:
        raise ValueError(f"bad settings for model {name!r}: {exc}") from None


__all__ = ["MODELS", "build_model", "MLPCritic", "MLPGenerator", "MSEGenerator", "WGANGP", "VAE", "PixelCNN", "RowRNN", "DCGAN", "WGAN", "DDPM"]
