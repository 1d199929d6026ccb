"""Chapter 8.2's experiments: how much data a generator needs, and what it does with an imbalance.

**Data needs.** :func:`digits_subset` takes the first ``n`` digits of a fixed shuffle of the train
split (100, 300 and all 1,000: :data:`SIZES`); :func:`train_on_subset` trains a family of
chapter 3 on them for the same number of steps whatever ``n`` (:data:`FAMILIES`), so a small set
is seen many more times. :func:`memorisation` compares each sample's distance to its nearest
training image with the same distance for real test digits, which the model never saw: a model
that copies lands nearer than real new digits do.

**Bias.** :func:`imbalanced_shapes` keeps two colours of the ``shapes`` (red and blue, every
shape) and drops blue shapes until they are ``minority_share`` of the set. :func:`minority_share`
reads the colour of every image by a rule that needs no training (a shape is blue when its pixels
hold more blue than red: the two colours are pure, ``(1, 0, 0)`` and ``(0, 0, 1)``, on black), so
the share is measured without a classifier's errors, and
:func:`aigc_lab.stats.wilson_interval` puts a 95% interval on it. :func:`oversampled` is the fix: every minority image repeated until the two
colours are equally frequent, the same as weighting the minority's loss by the inverse of its
share (each batch is a uniform draw from the repeated set).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aigc_lab import metrics, runtime
from aigc_lab.stats import wilson_interval
from aigc_lab.contract import TrainableModel
from aigc_lab.data import ImageDataset, load_dataset
from aigc_lab.models import build_model
from aigc_lab.train import History, TrainConfig, fit

SIZES = (100, 300, 1000)
SUBSET_SEED = 0  # the shuffle the subsets are the first n of: every smaller set is inside every larger one


@dataclass(frozen=True)
class Family:
    """A family of chapter 3 with the steps it trains for at every training-set size."""

    model: str
    label: str
    hparams: dict[str, Any] = field(default_factory=dict)
    steps: int = 1500
    quick_steps: int = 30


FAMILIES: dict[str, Family] = {
    "vae": Family("vae", "VAE", {}, steps=2000),
    "dcgan": Family("dcgan", "DCGAN", {}, steps=1500),
}


def digits_subset(n: int) -> ImageDataset:
    """The first ``n`` digits of the train split in a fixed shuffled order (``n`` from 2 to 1,000)."""
    train = load_dataset("digits", "train")
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= len(train):
        raise ValueError(f"n must be an integer between 2 and the train split's {len(train)} digits, got {n!r}")
    index = torch.randperm(len(train), generator=torch.Generator().manual_seed(SUBSET_SEED))[:n]
    return ImageDataset(train.images[index], train.labels[index], train.classes, name="digits", split=f"train[:{n}]", levels=train.levels)


def train_on(model_name: str, hparams: dict[str, Any], data: ImageDataset, run_dir: Path, steps: int, seed: int) -> tuple[TrainableModel, History]:
    """Train the registered ``model_name`` on ``data`` for ``steps`` into ``run_dir`` (or load the finished run), in eval mode."""
    torch.manual_seed(seed)
    model = build_model(model_name, image_shape=tuple(data.images.shape[1:]), **hparams)
    # A batch cannot be larger than the set; 64 otherwise, as everywhere in the book.
    config = TrainConfig(steps=steps, batch_size=min(64, len(data)), seed=seed, checkpoint_every=500)
    history = fit(model, data, run_dir, config)
    return model.eval(), history


def train_on_subset(family: str, n: int, runs_dir: str | os.PathLike, *, seed: int = 0) -> tuple[TrainableModel, History]:
    """Train ``FAMILIES[family]`` on :func:`digits_subset` ``(n)`` into ``runs_dir/FAMILY-nN`` (or load the finished run)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    spec = FAMILIES[family]
    steps = runtime.budget(spec.steps, spec.quick_steps)
    return train_on(spec.model, spec.hparams, digits_subset(n), Path(runs_dir) / f"{family}-n{n}", steps, seed)


def memorisation(samples: Tensor, train: Tensor, held_out: Tensor) -> dict[str, float]:
    r"""How close samples come to the training images, against real images the model never saw.

    Distances are RMS per pixel to the nearest training image. Returns the medians for the
    samples and for the held-out images, their ratio (below 1: the samples sit nearer the
    training set than new real images do, the sign of copying), and the share of samples nearer
    than the nearest held-out image ever comes.
    """
    mine = metrics.nearest_neighbor_distance(samples, train)
    real = metrics.nearest_neighbor_distance(held_out, train)
    return {
        "samples_median": float(mine.median()),
        "held_out_median": float(real.median()),
        "ratio": float(mine.median() / real.median()),
        "nearer_than_any_held_out": float((mine < real.min()).double().mean()),
    }


# ---------------------------------------------------------------- bias

BIAS_COLOURS = ("red", "blue")  # majority first
BIAS_SIZE = 16
# 800 steps: 1,000 took the page over its five minutes (about 50 s a run on two threads).
BIAS_MODEL = Family("dcgan", "DCGAN", {}, steps=800, quick_steps=30)


def imbalanced_shapes(minority_share: float, *, n: int = 5000) -> ImageDataset:
    """Red and blue shapes (16 x 16) in which blue ones are ``minority_share`` of the set.

    Starts from ``n`` shapes of the two colours (half of each, up to chance) and keeps a random
    subset of the blue ones (fixed seed) so that their share is ``minority_share`` (0.5 keeps them
    all, up to chance); the kept images stay in their order.
    """
    if not 0 < minority_share <= 0.5:
        raise ValueError(f"minority_share must be in (0, 0.5], got {minority_share!r}")
    data = load_dataset("shapes", "train", n=n, size=BIAS_SIZE, colours=",".join(BIAS_COLOURS))
    blue = data.attributes["colour"] == data.attributes["colour"].max()  # colour indexes COLOUR_NAMES: blue (2) > red (0)
    red_index, blue_index = torch.nonzero(~blue).flatten(), torch.nonzero(blue).flatten()
    keep_blue = min(len(blue_index), round(len(red_index) * minority_share / (1 - minority_share)))
    # A random subset of the blue shapes (fixed seed), so that they stay spread through the set.
    kept = blue_index[torch.randperm(len(blue_index), generator=torch.Generator().manual_seed(0))[:keep_blue]]
    index = torch.sort(torch.cat([red_index, kept])).values
    attributes = {k: v[index] for k, v in data.attributes.items()}
    return ImageDataset(data.images[index], data.labels[index], data.classes, name="shapes", split=f"train, {minority_share:.0%} blue",
                        attributes=attributes, levels=data.levels)


def is_minority(images: Tensor) -> Tensor:
    """``True`` where an image holds more blue than red (the shapes are pure red or pure blue on black)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected colour images N x 3 x H x W, got shape {tuple(images.shape)}")
    return images[:, 2].sum(dim=(1, 2)) > images[:, 0].sum(dim=(1, 2))


def minority_share(images: Tensor) -> dict[str, float]:
    """The share of ``images`` that are blue, with its 95% Wilson interval and the count."""
    blue = is_minority(images)
    k, n = int(blue.sum()), len(blue)
    low, high = wilson_interval(k, n)
    return {"share": k / n, "low": low, "high": high, "n": n}


def oversampled(data: ImageDataset) -> ImageDataset:
    """``data`` with every minority (blue) image repeated until both colours are about equally frequent."""
    blue = is_minority(data.images)
    repeats = max(1, round(int((~blue).sum()) / max(1, int(blue.sum()))))
    index = torch.cat([torch.nonzero(~blue).flatten(), torch.nonzero(blue).flatten().repeat(repeats)])
    attributes = {k: v[index] for k, v in data.attributes.items()} if data.attributes else None
    return ImageDataset(data.images[index], data.labels[index], data.classes, name=data.name, split=f"{data.split}, blue x{repeats}",
                        attributes=attributes, levels=data.levels)


def train_bias(name: str, data: ImageDataset, runs_dir: str | os.PathLike, *, seed: int = 0) -> tuple[TrainableModel, History]:
    """Train :data:`BIAS_MODEL` on ``data`` into ``runs_dir/NAME`` (or load the finished run)."""
    steps = runtime.budget(BIAS_MODEL.steps, BIAS_MODEL.quick_steps)
    return train_on(BIAS_MODEL.model, BIAS_MODEL.hparams, data, Path(runs_dir) / name, steps, seed)


__all__ = [
    "SIZES", "FAMILIES", "digits_subset", "train_on", "train_on_subset", "memorisation",
    "imbalanced_shapes", "is_minority", "minority_share", "oversampled", "train_bias",
]
