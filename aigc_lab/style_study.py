"""Chapter 6.2's and section 4.6's experiments: the images, the trained networks and the measurements.

* The content images are the colour photos of the photos test split (never trained on), center
  cropped to 256 x 256 (:func:`content_images`); the style images are the classical renderings of
  one train photo (:func:`aigc_lab.styles.reference_image`).
* :data:`TASKS` holds every network the two sections train, with its exact settings, in the form
  of chapter 6.1's tasks (:class:`aigc_lab.restoration_study.Task`); :func:`train` trains one into
  ``RUNS/NAME`` or loads the finished run there.
* :func:`seconds_per_image` times a method on a batch of images; :func:`distance_trajectory`
  records the judged style distance of an optimisation as it goes, so a one-pass network can be
  compared with the optimisation at the same style distance (:func:`steps_to_reach`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from aigc_lab import style_transfer
from aigc_lab.contract import ImageToImageModel
from aigc_lab.data import load_dataset
from aigc_lab.data.pairs import luma, pencil_side_inputs
from aigc_lab.restoration_study import Task, train_task
from aigc_lab.styles import STYLES, reference_image
from aigc_lab.train import History

#: the side of the content and style images of the chapter
SIZE = 256

#: The channels each style is transferred in. A pencil drawing is gray, so the pencil style is
#: transferred on brightness alone: Gatys et al.'s luminance-only transfer ("Preserving Color in
#: Neural Artistic Style Transfer", 2016). In colour, the Gram matrices of the random features
#: leave the photo's colours in and scatter them as coloured speckle (6.2.1 shows the picture); the
#: oil style keeps colour, which is part of it.
STYLE_CHANNELS: dict[str, int] = {"pencil": 1, "oil": 3}

# Step counts: what keeps each page within its 5 minutes on 2 CPU cores (training, plus the page's
# optimisation runs and measurements), estimated from seconds per step measured on a busy core;
# the pages print the training time each run took.
TASKS: dict[str, Task] = {
    # Johnson et al.'s feed-forward network, one per style, on photo patches in the style's channels
    # (STYLE_CHANNELS: gray for pencil, colour for oil; section 6.2.2). Width 8 (8, 16 and 32 channels
    # at the three scales; Johnson et al.'s has 32, 64, 128): in side runs of the pencil network, width
    # 16 took 62 ms per 256 x 256 photo and width 8 33 ms with a style distance as low (0.058 against
    # 0.094 on coffee), while width 6 lost the style (0.126). 1,200 steps: with 3 x 3 convolutions in
    # and out (models/style_net.py) a step costs two thirds of the 9 x 9 network's, so 1,200 steps take
    # the time 800 took, and reach a lower style distance than the 9 x 9 network's 800 steps (0.032
    # against 0.058 on coffee).
    "style-net-pencil": Task(
        model="style-net",
        hparams={"style": "pencil", "style_weight": 10.0, "width": 8, "residual_blocks": 3},
        data={"name": "photos", "channels": 1, "patch_size": 64, "n_patches": 4000, "seed": 0},
        steps=1200,
        quick_steps=10,
        batch_size=4,
        label="style network, pencil",
        quick_data={"n_patches": 64},
    ),
    "style-net-oil": Task(
        model="style-net",
        hparams={"style": "oil", "style_weight": 10.0, "width": 8, "residual_blocks": 3},
        data={"name": "photos", "channels": 3, "patch_size": 64, "n_patches": 4000, "seed": 0},
        steps=1200,
        quick_steps=10,
        batch_size=4,
        label="style network, oil",
        quick_data={"n_patches": 64},
    ),
    # Learning the classical filters from (photo, rendering) pairs (section 6.2.3): pix2pix's U-Net with
    # L1 alone on the photo; the same U-Net also given the pencil filter's random texture (its other
    # input), then also the photo's tone map (the filter's whole-image step); and for oil, a network
    # built like the Kuwahara filter (models/kuwahara_net.py). Steps: the five train side by side in
    # two processes of one thread within the page's 5 minutes (the three pencil U-Nets, about 100 s
    # each at 250 steps, fill one process and a half; the two oil networks get the rest, 200 steps
    # each). 300 pencil steps took the page to 306 s on a busy host; the tone-fed U-Net after 250
    # reached SSIM 0.862 / 0.895 in a side run (0.887 / 0.907 after 300). Each
    # filter's networks share steps and data, the pencil U-Nets also the learning rate, so that only
    # the input (pencil) or the architecture (oil) differs; 2e-3 was the best of 1e-3, 2e-3 and
    # 3e-3 for the texture-fed one in side runs (SSIM 0.852 / 0.832, 0.869 / 0.842, 0.865 / 0.823).
    "imitate-pencil": Task(
        model="pix2pix",
        hparams={"input_channels": 3, "adversarial_weight": 0.0, "l1_weight": 1.0, "lr": 2e-3, "width": 16, "levels": 3},
        data={"name": "pairs", "task": "pencil", "size": 64, "n": 2000, "seed": 0},
        steps=250,
        quick_steps=10,
        label="U-Net imitating the pencil filter (L1)",
        quick_data={"n": 32},
    ),
    "imitate-pencil-texture": Task(
        model="pix2pix",
        hparams={"input_channels": 4, "adversarial_weight": 0.0, "l1_weight": 1.0, "lr": 2e-3, "width": 16, "levels": 3},
        data={"name": "pairs", "task": "pencil-texture", "size": 64, "n": 2000, "seed": 0},
        steps=250,
        quick_steps=10,
        label="U-Net given the photo and the filter's texture (L1)",
        quick_data={"n": 32},
    ),
    "imitate-pencil-tone": Task(
        model="pix2pix",
        hparams={"input_channels": 5, "adversarial_weight": 0.0, "l1_weight": 1.0, "lr": 2e-3, "width": 16, "levels": 3},
        data={"name": "pairs", "task": "pencil-tone", "size": 64, "n": 2000, "seed": 0},
        steps=250,
        quick_steps=10,
        label="U-Net given the photo, the texture and the tone map (L1)",
        quick_data={"n": 32},
    ),
    "imitate-oil": Task(
        model="pix2pix",
        hparams={"input_channels": 3, "adversarial_weight": 0.0, "l1_weight": 1.0, "lr": 1e-3, "width": 16, "levels": 3},
        data={"name": "pairs", "task": "oil", "size": 64, "n": 2000, "seed": 0},
        steps=200,
        quick_steps=10,
        label="U-Net imitating the oil filter (L1)",
        quick_data={"n": 32},
    ),
    "imitate-oil-kuwahara": Task(
        model="kuwahara-net",
        hparams={"radius": 4, "width": 16, "lr": 1e-3},
        data={"name": "pairs", "task": "oil", "size": 64, "n": 2000, "seed": 0},
        steps=200,
        quick_steps=10,
        label="Kuwahara-structured network imitating the oil filter (L1)",
        quick_data={"n": 32},
    ),
    # Section 4.6, pix2pix: the paper's ablation (Table 1) on the shapes' label maps at 16 x 16, the
    # size of the shapes judge, and one model on the elevation maps. Same data, steps and seed; only
    # the two loss weights change.
    "p2p-labels-l1": Task(
        model="pix2pix",
        hparams={"adversarial_weight": 0.0, "l1_weight": 100.0, "width": 16, "levels": 3},
        data={"name": "pairs", "task": "labels", "size": 16, "n": 4000, "seed": 0},
        steps=1000,
        quick_steps=10,
        label="L1 alone",
        quick_data={"n": 64},
    ),
    "p2p-labels-l1-cgan": Task(
        model="pix2pix",
        hparams={"adversarial_weight": 1.0, "l1_weight": 100.0, "width": 16, "levels": 3},
        data={"name": "pairs", "task": "labels", "size": 16, "n": 4000, "seed": 0},
        steps=1000,
        quick_steps=10,
        label="L1 + cGAN",
        quick_data={"n": 64},
    ),
    "p2p-labels-cgan": Task(
        model="pix2pix",
        hparams={"adversarial_weight": 1.0, "l1_weight": 0.0, "width": 16, "levels": 3},
        data={"name": "pairs", "task": "labels", "size": 16, "n": 4000, "seed": 0},
        steps=1000,
        quick_steps=10,
        label="cGAN alone",
        quick_data={"n": 64},
    ),
    "p2p-hillshade": Task(
        model="pix2pix",
        hparams={"adversarial_weight": 1.0, "l1_weight": 100.0, "width": 16, "levels": 3},
        data={"name": "pairs", "task": "hillshade", "size": 64, "n": 2000, "seed": 0},
        steps=200,  # 400 steps took 98 s for SSIM 0.915 on held-out maps: a demonstration, cut for the book's 90 minutes
        quick_steps=10,
        label="L1 + cGAN, elevation to shaded map",
        quick_data={"n": 32},
    ),
}

#: the pix2pix ablation of section 4.6, in the paper's order
ABLATION = ("p2p-labels-l1", "p2p-labels-l1-cgan", "p2p-labels-cgan")

#: section 6.2.3's imitators of each filter: the U-Net on the photo, then what each adds
IMITATORS: dict[str, tuple[str, ...]] = {
    "pencil": ("imitate-pencil", "imitate-pencil-texture", "imitate-pencil-tone"),
    "oil": ("imitate-oil", "imitate-oil-kuwahara"),
}


def train(name: str, runs_dir: str | os.PathLike, *, seed: int = 0) -> tuple[ImageToImageModel, History]:
    """Train task ``name`` of :data:`TASKS` into ``runs_dir/name`` (or load it); the model in eval mode and its history."""
    return train_task(name, runs_dir, seed=seed, tasks=TASKS)


def content_images(size: int = SIZE) -> tuple[list[str], Tensor]:
    """The colour photos of the test split (``coffee``, ``grace_hopper``), center-cropped and resized: ``(names, N x 3 x size x size)``."""
    data = load_dataset("photos", "test", size=size, channels=3)
    colour = [i for i in range(len(data)) if not torch.equal(data.images[i, 0], data.images[i, 1])]
    return [data.classes[int(data.labels[i])] for i in colour], data.images[colour]


def in_style_channels(images: Tensor, style: str) -> Tensor:
    """``images`` (``N x 3 x H x W``) in the channels ``style`` is transferred in (:data:`STYLE_CHANNELS`): their BT.601 luma for pencil, unchanged for oil."""
    if style not in STYLE_CHANNELS:
        raise ValueError(f"unknown style {style!r}; choose one of: {', '.join(STYLE_CHANNELS)}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be N x 3 x H x W colour images, got shape {tuple(images.shape)}")
    return luma(images) if STYLE_CHANNELS[style] == 1 else images


def imitator_inputs(name: str, photos: Tensor) -> Tensor:
    """What imitator ``name`` of :data:`TASKS` takes for colour ``photos`` (``N x 3 x H x W``): the photos,
    followed for one trained on ``pencil-texture`` or ``pencil-tone`` pairs by what that task adds
    (:func:`aigc_lab.data.pairs.pencil_side_inputs`: the texture the pencil filter draws them with,
    and the photos' tone map)."""
    if name not in TASKS or not name.startswith("imitate-"):
        raise ValueError(f"unknown imitator {name!r}; choose one of: {', '.join(t for t in TASKS if t.startswith('imitate-'))}")
    if photos.dim() != 4 or photos.shape[1] != 3:
        raise ValueError(f"photos must be N x 3 x H x W colour images, got shape {tuple(photos.shape)}")
    task = TASKS[name].data["task"]
    if task not in ("pencil-texture", "pencil-tone"):
        return photos
    return torch.cat([photos, pencil_side_inputs(photos, tone=task == "pencil-tone")], 1)


def style_images(size: int = SIZE) -> dict[str, Tensor]:
    """``{style: 1 x 3 x size x size}``: each classical style's rendering of its reference photo."""
    return {style: reference_image(style, size) for style in STYLES}


def seconds_per_image(method: Callable[[Tensor], Tensor], images: Tensor, *, repeats: int = 1) -> tuple[Tensor, float]:
    """``(outputs, mean seconds per image)`` of ``method`` on ``images``, one image at a time (a reader's case), best of ``repeats``."""
    best, outputs = float("inf"), None
    for _ in range(max(1, repeats)):
        began = time.perf_counter()
        outputs = torch.cat([method(image.unsqueeze(0)) for image in images])
        best = min(best, (time.perf_counter() - began) / len(images))
    return outputs, best


def distance_trajectory(
    content: Tensor, style: Tensor, *, every: int = 5, snapshots: dict[int, Tensor] | None = None, **transfer: Any
) -> tuple[style_transfer.TransferResult, list[tuple[int, float, float, float]]]:
    """Run :func:`aigc_lab.style_transfer.gatys_transfer` and judge the image every ``every`` steps.

    Returns the result and ``[(step, seconds of optimisation so far, judged style distance,
    content SSIM), ...]`` (the scores of :func:`aigc_lab.style_transfer.style_scores`), starting
    with step 0 (the content image, or whatever ``init`` starts from, judged before any step). The
    time spent judging is left out of the seconds. A ``snapshots`` dict, when given, receives the
    image of every judged step (``{step: image}``), so the image at any of them needs no second
    optimisation.
    """
    judge = style_transfer.judge_features(content.shape[1])

    def judged(image: Tensor) -> tuple[float, float]:
        scores = style_transfer.style_scores(image, content, style, judge=judge)
        return float(scores["style_distance"][0]), float(scores["content_ssim"][0])

    trajectory = [(0, 0.0, *judged(content))]
    clock = {"optimising": 0.0, "since": time.perf_counter()}

    def look(step: int, image: Tensor) -> None:
        if (step + 1) % every == 0:
            clock["optimising"] += time.perf_counter() - clock["since"]
            trajectory.append((step + 1, clock["optimising"], *judged(image)))
            if snapshots is not None:
                snapshots[step + 1] = image.detach().clone()
            clock["since"] = time.perf_counter()

    result = style_transfer.gatys_transfer(content, style, callback=look, **transfer)
    return result, trajectory


def steps_meeting(trajectory: list[tuple[int, float, float, float]], *, max_distance: float, min_ssim: float) -> list[int]:
    """The steps of a :func:`distance_trajectory` whose image is both stylised enough (judged style distance at most ``max_distance``) and faithful enough (content SSIM at least ``min_ssim``)."""
    return [step for step, _, distance, ssim in trajectory if distance <= max_distance and ssim >= min_ssim]


def steps_to_reach(trajectory: list[tuple[int, float, float, float]], distance: float) -> tuple[int, float] | None:
    """The first ``(step, seconds)`` of a :func:`distance_trajectory` at or below ``distance``, or None if it never gets there."""
    for step, seconds, value, *_ in trajectory:
        if value <= distance:
            return step, seconds
    return None


def recognition_scores(outputs: Tensor, shape_kinds: Tensor, targets: Tensor, *, judge: Any) -> dict[str, float]:
    """The pix2pix paper's "FCN-score" idea on the shapes: does a classifier trained only on real shapes recognise the outputs?

    ``judge`` is the shapes dataset's :class:`~aigc_lab.metrics.FeatureClassifier` (trained on real
    images alone). Returns ``shape_accuracy``, the share of outputs whose predicted class has the
    shape the label map asked for (the colour is the generator's choice, so it is not scored);
    ``frechet_distance`` of the outputs to the real targets in the judge's features (realism,
    colour included); and ``saturation``, the mean per-pixel spread of the three channels over the
    shape (0 for gray: L1 alone is expected to average the colours toward gray).
    """
    from aigc_lab.data.shapes import SHAPE_KINDS, class_attributes
    from aigc_lab.metrics import frechet_distance

    predicted = judge.predict(outputs).cpu()
    predicted_kind = torch.tensor([SHAPE_KINDS.index(class_attributes(int(c))[0]) for c in predicted])
    covered = targets.amax(1, keepdim=True) >= 0.5
    spread = (outputs.amax(1, keepdim=True) - outputs.amin(1, keepdim=True))
    return {
        "shape_accuracy": float((predicted_kind == shape_kinds.cpu()).float().mean()),
        "frechet_distance": frechet_distance(outputs, targets, classifier=judge),
        "saturation": float((spread * covered).sum() / covered.sum().clamp_min(1)),
    }
