r"""Chapter 6.3's landscapes: scenes painted from a layout map, and a segmenter that checks them.

* The data are the package's procedural ``landscapes`` (:mod:`aigc_lab.data.landscapes`) at
  :data:`SIZE` pixels, loaded with their layout map as four one-hot channels in front of the
  scene (``with_layout="onehot"``): sky, mountain, water, vegetation. 2,000 train scenes; the
  measurements use the first :data:`TEST_SCENES` of the test split.
* The painters (:data:`PAINTERS`) are pix2pix (section 4.6) from the layout to the scene, with
  the L1 loss alone and with L1 plus the conditional adversarial loss, the paper's two main rows.
  The time of day (day, dusk, night) is not in the layout, so the mapping is one-to-many: L1's
  best answer is the average of the three, the adversarial term asks for one of them.
* The judge of layout agreement is a segmenter (:func:`train_segmenter`): the same U-Net, trained
  on real train scenes only to give each pixel's class (L1 on the one-hot map; the class is the
  largest channel). A painted scene agrees with its layout when the segmenter, which has only
  ever seen real scenes, recovers the layout from it: the "FCN-score" of Isola et al.
* The baseline (:func:`class_mean_painting`) paints every region of the layout with the mean
  colour of that class over the train scenes: it agrees with the layout by construction, and
  shows what agreement alone does not measure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aigc_lab import runtime
from aigc_lab.data import ImageDataset, load_dataset
from aigc_lab.data.landscapes import LAYOUT_CLASSES, layout_from_channels, split_layout
from aigc_lab.models import build_model
from aigc_lab.train import History, TrainConfig, fit

SIZE = 64
TEST_SCENES = 200
BATCH_SIZE = 16
# L1 regressions train with Adam's usual settings and a larger step than pix2pix's GAN setting.
_REGRESSION = {"adversarial_weight": 0.0, "lr": 1e-3, "betas": (0.9, 0.999)}
#: the two painters: (label, pix2pix settings); both 16 channels wide, three halvings
PAINTERS: dict[str, tuple[str, dict[str, Any]]] = {
    "landscape-l1": ("pix2pix, L1 alone", {"input_channels": 4, "width": 16, "levels": 3, **_REGRESSION}),
    "landscape-l1-cgan": ("pix2pix, L1 + cGAN", {"input_channels": 4, "width": 16, "levels": 3}),
}
# Measured outside the book (200 test scenes): the segmenter after 400 steps (62 s) read 99.3% of the
# real test pixels right; the painters after 600 steps (94 and 106 s) agreed with their layouts on
# 98.0% (L1) and 97.1% (L1 + cGAN) of the pixels. 500 and 300 steps keep the page within its budget.
PAINTER_STEPS, SEGMENTER_STEPS, QUICK_STEPS = 500, 300, 10
SEGMENTER_RUN = "landscape-segmenter"


def scenes(split: str = "train", n: int | None = None) -> ImageDataset:
    """Landscapes with their one-hot layout in front: ``N x 7 x SIZE x SIZE`` (4 layout channels, then the scene)."""
    if split == "test" and n is None:
        n = TEST_SCENES
    return load_dataset("landscapes", split, size=SIZE, with_layout="onehot", n=n)


def _fit(name: str, hparams: dict[str, Any], data: ImageDataset, steps: int, runs_dir: str | os.PathLike, seed: int) -> tuple[torch.nn.Module, History]:
    torch.manual_seed(seed)
    model = build_model("pix2pix", image_shape=tuple(data.images.shape[1:]), **hparams)
    config = TrainConfig(steps=runtime.budget(steps, QUICK_STEPS), batch_size=BATCH_SIZE, seed=seed, checkpoint_every=500)
    history = fit(model, data, Path(runs_dir) / name, config)
    return model.eval(), history


def train_painter(name: str, runs_dir: str | os.PathLike, *, seed: int = 0) -> tuple[torch.nn.Module, History]:
    """Train ``PAINTERS[name]`` (layout to scene) into ``runs_dir/name``, or load the finished run there."""
    if name not in PAINTERS:
        raise ValueError(f"unknown painter {name!r}; expected one of {', '.join(PAINTERS)}")
    return _fit(name, PAINTERS[name][1], scenes("train"), PAINTER_STEPS, runs_dir, seed)


def segmenter_data() -> ImageDataset:
    """The train scenes with the channels swapped: the scene first (the input), then its one-hot layout (the target)."""
    data = scenes("train")
    layout, scene = split_layout(data.images, "onehot")
    return ImageDataset(torch.cat([scene, layout], 1).contiguous(), data.labels, data.classes, name="landscapes-segmentation", split="train")


def train_segmenter(runs_dir: str | os.PathLike, *, seed: int = 0) -> tuple[torch.nn.Module, History]:
    """Train the segmenter (scene to one-hot layout, L1) on real train scenes into ``runs_dir/landscape-segmenter``."""
    hparams = {"input_channels": 3, "width": 16, "levels": 3, **_REGRESSION}
    return _fit(SEGMENTER_RUN, hparams, segmenter_data(), SEGMENTER_STEPS, runs_dir, seed)


@torch.no_grad()
def segment(segmenter: torch.nn.Module, images: Tensor) -> Tensor:
    """Each pixel's class index (``N x H x W`` int64) as the segmenter reads it."""
    return segmenter.restore(images).argmax(1)


def layout_agreement(segmenter: torch.nn.Module, images: Tensor, layout: Tensor) -> dict[str, float]:
    """The share of pixels whose segmented class is the asked-for one: overall, and for each class's pixels."""
    if layout.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"layout must be N x H x W = {(images.shape[0], *images.shape[-2:])}, got {tuple(layout.shape)}")
    right = segment(segmenter, images) == layout
    result = {"all": float(right.float().mean())}
    for k, name in enumerate(LAYOUT_CLASSES):
        mine = layout == k
        result[name] = float(right[mine].float().mean()) if bool(mine.any()) else float("nan")
    return result


def class_mean_painting(layout: Tensor, train: ImageDataset | None = None) -> Tensor:
    """Paint each pixel of ``layout`` (``N x H x W``) with its class's mean colour over the train scenes."""
    train = scenes("train") if train is None else train
    onehot, scene = split_layout(train.images, "onehot")
    means = torch.stack([scene.permute(1, 0, 2, 3)[:, onehot[:, k] > 0.5].mean(1) for k in range(len(LAYOUT_CLASSES))])  # (K, 3)
    return means[layout].permute(0, 3, 1, 2).contiguous()


def layouts(data: ImageDataset) -> tuple[Tensor, Tensor, Tensor]:
    """``(one-hot layout channels, scenes, layout as class indices)`` of a :func:`scenes` dataset."""
    onehot, scene = split_layout(data.images, "onehot")
    return onehot, scene, layout_from_channels(onehot)
