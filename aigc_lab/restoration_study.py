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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aigc_lab import classical, runtime, similarity
from aigc_lab.contract import ImageToImageModel
from aigc_lab.data import load_dataset
from aigc_lab.degradations import gaussian_noise
from aigc_lab.models import build_model
from aigc_lab.train import History, TrainConfig, fit

#: where the Set12 copy is looked for: ``AIGC_LAB_SET12``, else ``shared/benchmarks/set12`` beside the repository
SET12_ENV = "AIGC_LAB_SET12"


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
    # The blind gray denoiser. U-Net chosen over DnCNN by tools/denoiser_choice.py; 1500 steps
    # (about 150 s on 2 CPU cores) keep section 6.1.1 within its 5 minutes.
    "denoiser": Task(
        model="denoiser",
        hparams={"width": 16, "levels": 2},
        data={"name": "photos", "channels": 1, "patch_size": 48, "n_patches": 8000, "seed": 0},
        steps=1500,
        quick_steps=20,
        label="U-Net, blind (sigma 0-55)",
    ),
}


def task_data(name: str):
    """The training patches of task ``name`` (fewer in quick mode)."""
    spec = _data_spec(name)
    return load_dataset(spec.pop("name"), "train", **spec)


def _data_spec(name: str) -> dict[str, Any]:
    task = _task(name)
    return {**task.data, **runtime.budget({}, task.quick_data)}


def _task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def train_task(name: str, runs_dir: str | os.PathLike, *, seed: int = 0) -> tuple[ImageToImageModel, History]:
    """Train task ``name`` into ``runs_dir/name`` (or load the finished run there); the model in eval mode and its history."""
    task = _task(name)
    data = task_data(name)
    torch.manual_seed(seed)
    model = build_model(task.model, image_shape=tuple(data.images.shape[1:]), **task.hparams)
    config = TrainConfig(steps=runtime.budget(task.steps, task.quick_steps), batch_size=task.batch_size, seed=seed, checkpoint_every=500)
    history = fit(model, data, Path(runs_dir) / name, config, data_spec=_data_spec(name))
    return model.eval(), history


def set12(root: str | os.PathLike | None = None) -> Tensor | None:
    """The Set12 copy as ``12 x 1 x 256 x 256`` images in ``[0, 1]``, or None when it is not on this machine.

    Looked for in ``root``, then ``$AIGC_LAB_SET12``, then ``shared/benchmarks/set12`` beside the
    repository. For evaluation only: nothing in the book trains on it.
    """
    candidates = [root, os.environ.get(SET12_ENV), Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "set12"]
    for folder in candidates:
        if folder and Path(folder).is_dir() and any(Path(folder).glob("*.png")):
            files = sorted(Path(folder).glob("*.png"))
            from aigc_lab.images import read_image_file

            images = [read_image_file(f) for f in files]
            if len({tuple(i.shape) for i in images}) == 1:
                return torch.stack(images)[:, :1]
            return None  # a copy of mixed sizes (the papers' 512 x 512 images): not this book's copy
    return None


def photo_test_images(channels: int = 1, size: int = 256) -> Tensor:
    """The five test photos, center-cropped and resized to ``size x size``: scenes no model here trained on."""
    return load_dataset("photos", "test", size=size, channels=channels).images


def noisy_copies(clean: Tensor, sigmas: Sequence[float], *, seed: int = 0) -> dict[float, Tensor]:
    """``{sigma: clean + noise}`` with the noise of each level fixed by ``seed`` (unclipped, as the papers measure)."""
    return {float(s): gaussian_noise(clean, float(s), generator=torch.Generator().manual_seed(seed + int(s))) for s in sigmas}


def classical_denoiser(method: str) -> Callable[[Tensor, float], Tensor]:
    """``(noisy, sigma) -> denoised`` with :func:`aigc_lab.classical.denoise` told the true level."""
    return lambda noisy, sigma: classical.denoise(noisy, sigma, method)


def network_denoiser(model: ImageToImageModel) -> Callable[[Tensor, float], Tensor]:
    """``(noisy, sigma) -> denoised`` with a blind network: it is not told ``sigma``."""
    device = next(model.parameters()).device

    def run(noisy: Tensor, sigma: float) -> Tensor:
        return torch.cat([model.restore(x.to(device)).cpu() for x in noisy.split(4)])

    return run


def denoising_rows(
    denoisers: dict[str, Callable[[Tensor, float], Tensor]],
    clean: Tensor,
    noisy: dict[float, Tensor],
    *,
    only: dict[str, Sequence[float]] | None = None,
) -> tuple[list[dict[str, Any]], dict[tuple[str, float], Tensor]]:
    """Run every denoiser on every noise level; one table row per (method, sigma) and the outputs.

    ``only`` limits a method to some levels (a slow method measured at fewer). Each row has the
    mean PSNR and SSIM over the images, and the seconds per image of this machine.
    """
    rows, outputs = [], {}
    for method, run in denoisers.items():
        for sigma, images in noisy.items():
            if only and method in only and sigma not in only[method]:
                continue
            start = time.perf_counter()
            restored = run(images, sigma)
            seconds = (time.perf_counter() - start) / len(images)
            outputs[(method, sigma)] = restored
            rows.append({
                "method": method, "sigma": sigma,
                "PSNR (dB)": float(similarity.psnr(restored, clean).mean()),
                "SSIM": float(similarity.ssim(restored, clean).mean()),
                "s / image": seconds,
            })  # fmt: skip
    return rows, outputs
