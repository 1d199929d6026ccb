"""Chapter 6.3's landscapes without a layout: an unconditional GAN, and what it draws at each time of day.

* The data are the procedural ``landscapes`` at :data:`SIZE` x :data:`SIZE` (2,000 train, 500 val,
  500 test scenes), labelled by their time of day (day, dusk, night), a third of each. The GAN
  never sees the labels.
* The model (:data:`MODEL`) is chapter 3's DCGAN (section 3.2), unconditional.
* The judge (:func:`judge`) is :func:`aigc_lab.metrics.feature_classifier` trained on the real
  train scenes' times of day. It gives the features of every Frechet distance of the page and
  reads the time of day of each sample, so an unconditional model can be measured class by class
  (:func:`time_of_day_shares`, :func:`measure`): does it draw the three times as often as the
  data has them (a collapsed GAN would not), and are its night scenes like real night scenes?
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aigc_lab import metrics, runtime
from aigc_lab.contract import TrainableModel
from aigc_lab.data import ImageDataset, load_dataset
from aigc_lab.data.landscapes import TIMES_OF_DAY
from aigc_lab.models import build_model
from aigc_lab.stats import wilson_interval
from aigc_lab.train import History, TrainConfig, fit

SIZE = 32
#: the judge's training steps. Measured outside the book (32 x 32, one thread): 200 steps took 33 s
#: and read the time of day of all 500 val scenes right; the three skies differ in colour.
JUDGE_STEPS = 200
MODEL = "dcgan"
HPARAMS: dict[str, Any] = {}
#: Measured outside the book (two threads; Frechet distance of 500 samples to the 500 test scenes in
#: the 200-step judge's features): batch 64 for 600 steps took 108 s and scored 64.4; the scenes had
#: the sky, ridges and grass in place but were blurred, with the transposed convolutions'
#: checkerboard. More, smaller steps (batch 32, 1,200 steps, 132 s) scored 194, and a higher
#: learning rate (5e-4, batch 64, 600 steps, 121 s) 295: the DCGAN paper's settings stay.
STEPS = 600
QUICK_STEPS = 20
BATCH_SIZE = 64
RUN_NAME = "landscapes-dcgan"


def scenes(split: str = "train") -> ImageDataset:
    """The landscapes of ``split`` at :data:`SIZE` x :data:`SIZE`, labelled by time of day."""
    return load_dataset("landscapes", split, size=SIZE)


def judge() -> metrics.FeatureClassifier:
    """The time-of-day classifier trained on real train scenes only (cached; see :func:`metrics.feature_classifier`)."""
    return metrics.feature_classifier("landscapes", size=SIZE, steps=runtime.budget(JUDGE_STEPS, 30))


def train(runs_dir: str | os.PathLike, *, seed: int = 0) -> tuple[TrainableModel, History]:
    """Train the unconditional GAN on the train scenes into ``runs_dir/RUN_NAME``, or load the finished run there."""
    data = scenes("train")
    torch.manual_seed(seed)
    model = build_model(MODEL, image_shape=tuple(data.images.shape[1:]), **HPARAMS)
    config = TrainConfig(steps=runtime.budget(STEPS, QUICK_STEPS), batch_size=BATCH_SIZE, seed=seed, checkpoint_every=200)
    history = fit(model, data, Path(runs_dir) / RUN_NAME, config, data_spec={"name": "landscapes", "size": SIZE})
    return model.eval(), history


def time_of_day_shares(times: Tensor) -> list[dict[str, Any]]:
    """The share of each time of day among ``times`` (indices into ``TIMES_OF_DAY``), with its 95% Wilson interval."""
    times = torch.as_tensor(times).long()
    if times.dim() != 1 or len(times) == 0:
        raise ValueError(f"times must be a non-empty 1-D tensor of time-of-day indices, got shape {tuple(times.shape)}")
    if int(times.min()) < 0 or int(times.max()) >= len(TIMES_OF_DAY):
        raise ValueError(f"times must lie in [0, {len(TIMES_OF_DAY) - 1}] ({', '.join(TIMES_OF_DAY)}), got [{int(times.min())}, {int(times.max())}]")
    counts = torch.bincount(times, minlength=len(TIMES_OF_DAY)).tolist()
    rows = []
    for name, k in zip(TIMES_OF_DAY, counts):
        low, high = wilson_interval(k, len(times))
        rows.append({"time of day": name, "share": k / len(times), "95% low": low, "95% high": high})
    return rows


def measure(images: Tensor, judge: metrics.FeatureClassifier, *, train: ImageDataset, test: ImageDataset) -> dict[str, Any]:
    """The page's numbers for one set of scenes (samples, or held-out real scenes for the floor).

    * ``FD``: Frechet distance of ``images`` to the test scenes in the judge's features;
    * ``FD <time>`` and ``FD per time (mean)``: the same within each time of day, the images
      grouped by the judge's reading (an unconditional model has no asked-for label), each against
      the test scenes of that time;
    * ``day``, ``dusk``, ``night``: the share the judge reads as each time (the data: a third);
    * ``nearest train``: the median RMS distance of an image to its nearest training scene (a
      copying model scores near 0; compare with held-out real scenes).
    """
    times = judge.predict(images)
    per_time = metrics.frechet_distance_per_class(images, times, "landscapes", classifier=judge, size=SIZE)
    shares = {r["time of day"]: r["share"] for r in time_of_day_shares(times)}
    nearest = metrics.nearest_neighbor_distance(images, train.images)
    return {
        "FD": metrics.frechet_distance(images, test.images, classifier=judge),
        **{f"FD {t}": per_time.get(t, float("nan")) for t in TIMES_OF_DAY},
        "FD per time (mean)": per_time["mean"],
        **shares,
        "nearest train": float(nearest.median()),
    }
