"""Chapter 6.1's experiments: the restoration models it trains, the test images, and the tables that hold them against classical methods.

Each entry of :data:`TASKS` is one model of the chapter with its exact training settings;
:func:`train_task` trains it into ``RUNS/NAME``, or loads it when a finished run is there.
The test images are the photos test split (whole photos, never trained on) and, when present,
the Set12 copy of the denoising literature (:func:`set12`); the book's code never needs Set12.
:func:`denoising_rows` measures any set of denoisers on the same noisy images, with the same
noise, and reports PSNR, SSIM and time per image.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aigc_lab import classical, runtime, similarity
from aigc_lab.contract import ImageToImageModel
from aigc_lab.data import load_dataset
from aigc_lab.degradations import bicubic_downsample, gaussian_noise, low_light, random_masks
from aigc_lab.images import read_image_file
from aigc_lab.models import build_model
from aigc_lab.train import History, TrainConfig, fit

#: where the Set12 copy is looked for: ``AIGC_LAB_SET12``, else ``shared/benchmarks/set12`` beside the repository
SET12_ENV = "AIGC_LAB_SET12"
#: SSIM's window (the paper's 11 x 11 Gaussian); smaller images get PSNR alone
SSIM_WINDOW = 11


@dataclass(frozen=True)
class Task:
    """One trained model of chapter 6.1: the registered model, its settings, its data and its steps."""

    model: str
    hparams: dict[str, Any]
    data: dict[str, Any]
    steps: int
    quick_steps: int
    batch_size: int = 16
    label: str = ""
    quick_data: dict[str, Any] = field(default_factory=lambda: {"n_patches": 256})


TASKS: dict[str, Task] = {
    # Step counts: what keeps each section of 6.1 within its 5 minutes on 2 CPU cores, measured as
    # milliseconds per step (a 40-step fit of each task) times steps, plus the page's
    # evaluation (BM3D alone takes about 2 s per 256 x 256 image).
    # The blind gray denoiser. U-Net chosen over DnCNN by tools/denoiser_choice.py; without group
    # normalisation it scored 0.6 dB higher at sigma 25 on Set12 after 1500 steps (28.24 against
    # 27.62), and a cosine learning-rate decay did not help (28.04).
    "denoiser": Task(
        model="denoiser",
        hparams={"width": 16, "levels": 2, "norm": False},
        data={"name": "photos", "channels": 1, "patch_size": 48, "n_patches": 8000, "seed": 0},
        steps=2200,
        quick_steps=20,
        label="U-Net, blind (sigma 0-55)",
    ),
    # ESPCN on gray patches, one model per scale (section 6.1.2).
    "sr-x2": Task(
        model="super-resolution",
        hparams={"scale": 2, "width": 64},
        data={"name": "photos", "channels": 1, "patch_size": 48, "n_patches": 8000, "seed": 0},
        steps=6000,
        quick_steps=20,
        label="ESPCN x2",
    ),
    "sr-x3": Task(
        model="super-resolution",
        hparams={"scale": 3, "width": 64},
        data={"name": "photos", "channels": 1, "patch_size": 48, "n_patches": 8000, "seed": 0},
        steps=20000,
        quick_steps=20,
        label="ESPCN x3",
    ),
    # The inpainting U-Net on colour 64 x 64 patches with fresh strokes and boxes (section 6.1.3).
    "inpainter": Task(
        model="inpainter",
        hparams={"width": 16, "levels": 3},
        data={"name": "photos", "channels": 3, "patch_size": 64, "n_patches": 4000, "seed": 0},
        steps=900,
        quick_steps=20,
        label="inpainting U-Net",
    ),
    # Low light (section 6.1.4): Zero-DCE trained on dark images alone, and a U-Net trained on pairs.
    "low-light": Task(
        model="low-light",
        hparams={"width": 32, "iterations": 8},
        data={"name": "photos", "channels": 3, "patch_size": 64, "n_patches": 4000, "seed": 0},
        steps=400,
        quick_steps=20,
        label="Zero-DCE (no reference)",
    ),
    "low-light-paired": Task(
        model="low-light-paired",
        hparams={"width": 16, "levels": 3},
        data={"name": "photos", "channels": 3, "patch_size": 64, "n_patches": 4000, "seed": 0},
        steps=800,
        quick_steps=20,
        label="U-Net on pairs (L1)",
    ),
}


def task_data(name: str, tasks: Mapping[str, Task] = TASKS):
    """The training patches of task ``name`` of ``tasks`` (fewer in quick mode)."""
    spec = _data_spec(name, tasks)
    return load_dataset(spec.pop("name"), "train", **spec)


def _data_spec(name: str, tasks: Mapping[str, Task]) -> dict[str, Any]:
    task = _task(name, tasks)
    return {**task.data, **runtime.budget({}, task.quick_data)}


def _task(name: str, tasks: Mapping[str, Task]) -> Task:
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(tasks)}")
    return tasks[name]


def train_task(name: str, runs_dir: str | os.PathLike, *, seed: int = 0, tasks: Mapping[str, Task] = TASKS) -> tuple[ImageToImageModel, History]:
    """Train task ``name`` of ``tasks`` (this chapter's by default; chapter 6.2 passes its own) into
    ``runs_dir/name``, or load the finished run there; the model in eval mode and its history."""
    task = _task(name, tasks)
    data = task_data(name, tasks)
    torch.manual_seed(seed)
    model = build_model(task.model, image_shape=tuple(data.images.shape[1:]), **task.hparams)
    config = TrainConfig(steps=runtime.budget(task.steps, task.quick_steps), batch_size=task.batch_size, seed=seed, checkpoint_every=500)
    history = fit(model, data, Path(runs_dir) / name, config, data_spec=_data_spec(name, tasks))
    return model.eval(), history


def set12(root: str | os.PathLike | None = None) -> Tensor | None:
    """The Set12 copy as ``12 x 1 x 256 x 256`` images in ``[0, 1]``, or None when it is not on this machine.

    The papers' Set12 has five 512 x 512 images; a copy like that is returned as center crops of
    the smallest side, so the images stack.

    Looked for in ``root`` when it is given; otherwise in ``$AIGC_LAB_SET12``, then in
    ``shared/benchmarks/set12`` beside the repository. For evaluation only: nothing in the book
    trains on it.
    """
    default = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "set12"
    candidates = [root] if root is not None else [os.environ.get(SET12_ENV), default]
    for folder in candidates:
        files = sorted(Path(folder).glob("*.png")) if folder and Path(folder).is_dir() else []
        if files:
            images = [read_image_file(f).mean(0, keepdim=True) for f in files]
            side = min(min(i.shape[-2:]) for i in images)  # the papers' copy mixes 256 and 512: center crops of the smallest side
            return torch.stack([_center_crop(i, side) for i in images])
    return None


def _center_crop(image: Tensor, side: int) -> Tensor:
    h, w = image.shape[-2:]
    top, left = (h - side) // 2, (w - side) // 2
    return image[..., top : top + side, left : left + side]


def photo_test_images(channels: int = 1, size: int = 256) -> Tensor:
    """The five test photos, center-cropped and resized to ``size x size``: scenes no model here trained on."""
    return load_dataset("photos", "test", size=size, channels=channels).images


@dataclass(frozen=True)
class Case:
    """One damaged test set: what every method gets (``input``, ``mask``), what it is scored against (``clean``).

    ``level`` names the damage (the noise sigma, the scale); ``border`` pixels are left out of the
    scores (super-resolution papers crop ``scale`` pixels, where the image's edge leaves the
    interpolation without neighbours); with a ``mask``, PSNR is also measured inside it alone.
    """

    level: float | str
    input: Tensor
    clean: Tensor
    mask: Tensor | None = None
    border: int = 0


def noisy_cases(clean: Tensor, sigmas: Sequence[float], *, seed: int = 0) -> dict[float, Case]:
    """``{sigma: Case}`` with ``clean + noise``, the noise of each level fixed by ``seed`` (unclipped, as the papers measure)."""
    return {
        float(s): Case(float(s), gaussian_noise(clean, float(s), generator=torch.Generator().manual_seed(seed + int(s))), clean)
        for s in sigmas
    }


def low_resolution_cases(clean: Tensor, scales: Sequence[int]) -> dict[float, Case]:
    """``{scale: Case}``: each image cropped to a multiple of the scale, then bicubic-downsampled; scored without a ``scale``-pixel border."""
    cases = {}
    for scale in scales:
        h, w = clean.shape[-2:]
        cropped = clean[..., : h - h % scale, : w - w % scale]
        cases[float(scale)] = Case(float(scale), bicubic_downsample(cropped, scale), cropped, border=scale)
    return cases


def masked_cases(clean: Tensor, kinds: Sequence[str] = ("strokes", "boxes"), *, seed: int = 0) -> dict[str, Case]:
    """``{kind: Case}``: one random mask per image (:func:`aigc_lab.degradations.random_masks`), fixed by ``seed``; the input keeps the known pixels."""
    cases = {}
    for i, kind in enumerate(kinds):
        mask = random_masks(len(clean), tuple(clean.shape[-2:]), kind=kind, generator=torch.Generator().manual_seed(seed + i))
        cases[kind] = Case(kind, clean * (1 - mask), clean, mask=mask)
    return cases


def region_masks(size: int) -> dict[str, Tensor]:
    """Three ``1 x 1 x size x size`` masks (1 = missing): the top half, the bottom half, a centre square of half the side.

    For chapter 3's models on the 8 x 8 digits: an autoregressive model that draws in raster order
    sees everything above a missing bottom half, and nothing below a missing top half.
    """
    top, bottom, centre = (torch.zeros(1, 1, size, size) for _ in range(3))
    top[..., : size // 2, :] = 1
    bottom[..., size // 2 :, :] = 1
    q = size // 4
    centre[..., q : size - q, q : size - q] = 1
    return {"top half": top, "bottom half": bottom, "centre square": centre}


def dark_cases(clean: Tensor, *, seed: int = 0) -> dict[str, Case]:
    """``{"dark": Case}``: :func:`aigc_lab.degradations.low_light` with its defaults, fixed by ``seed``."""
    return {"dark": Case("dark", low_light(clean, generator=torch.Generator().manual_seed(seed)), clean)}


def classical_denoiser(method: str) -> Callable[[Case], Tensor]:
    """A method for :func:`measure`: :func:`aigc_lab.classical.denoise` told the true level."""
    return lambda case: classical.denoise(case.input, case.level, method)


def network(model: ImageToImageModel, chunk: int = 4) -> Callable[[Case], Tensor]:
    """A method for :func:`measure`: ``model.restore`` on the case's input (and mask), a few images at a time. A blind denoiser is not told the level."""
    device = next(model.parameters()).device

    def run(case: Case) -> Tensor:
        masks = case.mask.split(chunk) if case.mask is not None else [None] * len(case.input.split(chunk))
        return torch.cat([model.restore(x.to(device), None if m is None else m.to(device)).cpu() for x, m in zip(case.input.split(chunk), masks)])

    return run


def _crop(images: Tensor, border: int) -> Tensor:
    return images[..., border : images.shape[-2] - border, border : images.shape[-1] - border] if border else images


def measure(
    methods: dict[str, Callable[[Case], Tensor]],
    cases: dict[Any, Case],
    *,
    only: dict[str, Sequence[Any]] | None = None,
) -> tuple[list[dict[str, Any]], dict[tuple[str, float], Tensor]]:
    """Run every method on every case; one table row per (method, level) and the outputs by ``(method, level)``.

    ``only`` limits a method to some levels (a slow method measured at fewer). Each row has the mean
    PSNR and SSIM over the images (without the case's border; SSIM only for images of at least
    :data:`SSIM_WINDOW` pixels a side), PSNR inside the mask when the case
    has one, and the seconds per image on this machine.
    """
    rows, outputs = [], {}
    for method, run in methods.items():
        for level, case in cases.items():
            if only and method in only and level not in only[method]:
                continue
            start = time.perf_counter()
            restored = run(case)
            seconds = (time.perf_counter() - start) / len(case.input)
            outputs[(method, level)] = restored
            out, clean = _crop(restored, case.border), _crop(case.clean, case.border)
            row = {"method": method, "level": level, "PSNR (dB)": float(similarity.psnr(out, clean).mean())}
            if min(out.shape[-2:]) >= SSIM_WINDOW:  # SSIM's 11 x 11 window does not fit chapter 3's 8 x 8 digits
                row["SSIM"] = float(similarity.ssim(out, clean, window_size=SSIM_WINDOW).mean())
            if case.mask is not None:
                row["PSNR in the holes (dB)"] = hole_psnr(restored, case.clean, case.mask)
            row["s / image"] = seconds
            rows.append(row)
    return rows, outputs


def hole_psnr(restored: Tensor, clean: Tensor, mask: Tensor) -> float:
    """PSNR over the missing pixels alone (``mask == 1``), pooled over all images: :math:`10 \\log_{10}(1 / \\mathrm{MSE}_{hole})`."""
    mask = mask.expand_as(clean)
    mse = ((restored - clean) ** 2 * mask).sum() / mask.sum()
    return float(-10 * torch.log10(mse))


def value(rows: list[dict[str, Any]], method: str, level: Any, column: str = "PSNR (dB)") -> float:
    """One number of a :func:`measure` table."""
    for row in rows:
        if row["method"] == method and row["level"] == level:
            return row[column]
    raise KeyError(f"no row for {method!r} at {level}")
