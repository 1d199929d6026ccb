r"""Chapter 6.4's new views of 3D objects: a network that draws a view between two views it is given.

**The views.** Every object of :mod:`aigc_lab.data.objects3d` is rendered on a turntable: at the
azimuths of :data:`AZIMUTHS` (every 7.5 degrees) and the elevations of :data:`ELEVATIONS`, in
colour at :data:`SIZE` pixels. The azimuths of :data:`HELD_OUT` (three in each of four 30-degree
sectors, centred on 45, 135, 225 and 315 degrees) are never rendered for training: no model sees
them, as a target or as an input, until it is measured on them.

**The task.** Given the views at two training azimuths :math:`a_1 < a_2` of an object (same
elevation) and the fraction :math:`t = (a - a_1) / (a_2 - a_1)`, draw the view at azimuth
:math:`a`. A held-out view is drawn from the training views on both sides of its sector (30
degrees apart). Training examples come from training azimuths only: every target :math:`a` with
two training neighbours :math:`a_1 < a < a_2` at most :data:`MAX_SPAN` degrees apart, so the
network learns to interpolate views over the same spans it will meet on the held-out sectors.

**The model** is pix2pix's U-Net (:class:`aigc_lab.models.pix2pix.Pix2Pix`) trained with L1
alone: its input is the two views, their cross-fade at :math:`t` and a constant channel holding
:math:`t` (10 channels), its output the view (3). This is view synthesis from source views, the setting of learned
view-interpolation methods (e.g. Zhou, Tulsiani, Sun, Malik & Efros, 2016, "View Synthesis by
Appearance Flow", ECCV), at toy scale.

**The baselines** are what a viewer could do without a model: show the nearest training view
(:math:`t \le 1/2`: the view at :math:`a_1`), or cross-fade the two,
:math:`(1 - t)\,v(a_1) + t\,v(a_2)`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aigc_lab import runtime
from aigc_lab.data import ImageDataset
from aigc_lab.data.objects3d import OBJECT_SHAPES, render_object
from aigc_lab.models import build_model
from aigc_lab.train import History, TrainConfig, fit

SIZE = 32
#: the turntable: every 7.5 degrees
AZIMUTHS = tuple(7.5 * k for k in range(48))
ELEVATIONS = (0.0, 20.0, 40.0)
#: the held-out sectors' centres; each holds out the azimuths strictly within 15 degrees of its centre
SECTOR_CENTRES = (45.0, 135.0, 225.0, 315.0)
SECTOR_HALF_WIDTH = 15.0
HELD_OUT = tuple(a for a in AZIMUTHS if any(abs(a - c) < SECTOR_HALF_WIDTH for c in SECTOR_CENTRES))
TRAIN_AZIMUTHS = tuple(a for a in AZIMUTHS if a not in HELD_OUT)
#: the widest gap between the two input views of a training example (the held-out sectors' gap)
MAX_SPAN = 2 * SECTOR_HALF_WIDTH

# The network and its training (pix2pix's U-Net, L1 alone). Chosen in three runs outside the book
# (PSNR on the 288 held-out views; nearest view 30.15 dB, cross-fade 33.93): width 32, the two views
# and t as input, pix2pix's GAN learning rate 2e-4, 1,500 steps: 33.30 dB but 361 s of training;
# width 16 with the cross-fade as an extra input: 31.58 dB in 140 s; the same with lr 1e-3 and
# Adam's usual betas (an L1 regression, not a GAN): 33.80 dB in 132 s.
MODEL = "pix2pix"
HPARAMS: dict[str, Any] = {"input_channels": 10, "adversarial_weight": 0.0, "width": 16, "levels": 3, "lr": 1e-3, "betas": (0.9, 0.999)}
STEPS, QUICK_STEPS, BATCH_SIZE = 1500, 20, 32
RUN_NAME = "view-interpolator"


@functools.lru_cache(maxsize=4)
def _views(size: int) -> Tensor:
    """Every object at every azimuth and elevation: ``(objects, elevations, azimuths, 3, size, size)``."""
    return torch.stack(
        [torch.stack([torch.stack([render_object(s, a, e, size=size, channels=3) for a in AZIMUTHS]) for e in ELEVATIONS]) for s in OBJECT_SHAPES]
    )


def views(*, size: int = SIZE) -> Tensor:
    """The rendered turntable (a copy), indexed ``[object, elevation, azimuth index]`` (see :data:`AZIMUTHS`)."""
    return _views(size).clone()


def training_triples(max_span: float = MAX_SPAN) -> list[tuple[int, int, int]]:
    """``(i1, i, i2)`` azimuth indices of training examples: ``a1 < a < a2``, all training azimuths, ``a2 - a1 <= max_span``."""
    index = {a: k for k, a in enumerate(AZIMUTHS)}
    train = sorted(TRAIN_AZIMUTHS)
    triples = []
    for a in train:
        for a1 in train:
            for a2 in train:
                if a1 < a < a2 and a2 - a1 <= max_span:
                    triples.append((index[a1], index[a], index[a2]))
    return triples


def held_out_triples() -> list[tuple[int, int, int]]:
    """``(i1, i, i2)`` for every held-out azimuth: the training azimuths on both sides of its sector."""
    index = {a: k for k, a in enumerate(AZIMUTHS)}
    triples = []
    for a in HELD_OUT:
        centre = min(SECTOR_CENTRES, key=lambda c: abs(a - c))
        triples.append((index[centre - SECTOR_HALF_WIDTH], index[a], index[centre + SECTOR_HALF_WIDTH]))
    return triples


def _fraction(i1: int, i: int, i2: int) -> float:
    return (AZIMUTHS[i] - AZIMUTHS[i1]) / (AZIMUTHS[i2] - AZIMUTHS[i1])


def model_input(first: Tensor, second: Tensor, t: Tensor | float) -> Tensor:
    """The network's input, ``N x 10 x H x W``: the two views (``N x 3 x H x W`` each), their
    cross-fade at ``t`` (the baseline, so that the U-Net's skip connections start from it and the
    network learns only the correction), and ``t`` as a constant channel."""
    if first.shape != second.shape or first.dim() != 4 or first.shape[1] != 3:
        raise ValueError(f"the two views must both be N x 3 x H x W, got {tuple(first.shape)} and {tuple(second.shape)}")
    t = torch.as_tensor(t, dtype=first.dtype).reshape(-1, 1, 1, 1).expand(len(first), 1, *first.shape[-2:])
    if bool(((t < 0) | (t > 1)).any()):
        raise ValueError("t must lie in [0, 1] (the share of the way from the first view to the second)")
    return torch.cat([first, second, (1 - t) * first + t * second, t], dim=1)


def examples(triples: list[tuple[int, int, int]], *, size: int = SIZE) -> dict[str, Tensor]:
    """For each object, elevation and triple: the two input views, ``t``, the target view, and labels."""
    turntable = _views(size)
    first, second, target, t, obj, elev, azimuth = [], [], [], [], [], [], []
    for o in range(len(OBJECT_SHAPES)):
        for e in range(len(ELEVATIONS)):
            for i1, i, i2 in triples:
                first.append(turntable[o, e, i1])
                second.append(turntable[o, e, i2])
                target.append(turntable[o, e, i])
                t.append(_fraction(i1, i, i2))
                obj.append(o)
                elev.append(ELEVATIONS[e])
                azimuth.append(AZIMUTHS[i])
    return {
        "first": torch.stack(first),
        "second": torch.stack(second),
        "target": torch.stack(target),
        "t": torch.tensor(t),
        "object": torch.tensor(obj),
        "elevation": torch.tensor(elev),
        "azimuth": torch.tensor(azimuth),
    }


def training_data(*, size: int = SIZE) -> ImageDataset:
    """The training examples as pix2pix's paired images: the 7 input channels, then the 3 of the target view."""
    ex = examples(training_triples(), size=size)
    images = torch.cat([model_input(ex["first"], ex["second"], ex["t"]), ex["target"]], dim=1)
    return ImageDataset(
        images.contiguous(),
        ex["object"],
        list(OBJECT_SHAPES),
        name="objects3d-views",
        split="train",
        attributes={"azimuth": ex["azimuth"], "elevation": ex["elevation"], "t": ex["t"]},
    )


def train(runs_dir: str | os.PathLike, *, seed: int = 0) -> tuple[torch.nn.Module, History]:
    """Train the view interpolator into ``runs_dir/view-interpolator``, or load the finished run there."""
    data = training_data()
    torch.manual_seed(seed)
    model = build_model(MODEL, image_shape=tuple(data.images.shape[1:]), **HPARAMS)
    config = TrainConfig(steps=runtime.budget(STEPS, QUICK_STEPS), batch_size=BATCH_SIZE, seed=seed, checkpoint_every=500)
    history = fit(model, data, Path(runs_dir) / RUN_NAME, config)
    return model.eval(), history


@torch.no_grad()
def predict(model: torch.nn.Module, first: Tensor, second: Tensor, t: Tensor | float) -> Tensor:
    """The network's view between ``first`` and ``second`` at fraction ``t``."""
    return model.restore(model_input(first, second, t)).clamp(0, 1)


def nearest_view(first: Tensor, second: Tensor, t: Tensor) -> Tensor:
    """The baseline that shows the nearer input view (the first at ``t <= 1/2``)."""
    return torch.where(t.reshape(-1, 1, 1, 1) <= 0.5, first, second)


def cross_fade(first: Tensor, second: Tensor, t: Tensor) -> Tensor:
    """The baseline that blends the two views, ``(1 - t) first + t second``."""
    t = t.reshape(-1, 1, 1, 1)
    return (1 - t) * first + t * second
