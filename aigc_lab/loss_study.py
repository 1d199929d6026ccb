"""Chapter 5's experiment: one denoising task, one small network, one budget, each loss in turn.

The task: remove Gaussian noise of standard deviation 25 (on the 0-255 scale) from gray photographs.
The network is :class:`aigc_lab.models.restoration.Restorer` (a small DnCNN); it trains on random
48 x 48 patches of the 13 photos of the ``photos`` train split, and is measured on 192 x 192 crops
of the 5 photos of the test split (scenes it never saw; large enough for five-scale MS-SSIM),
each with the same fixed noise. Only the loss changes from run to run: same data, same seed, same
initial weights, same number of steps.

Each run lives in ``runs_dir/NAME``; :func:`aigc_lab.train.fit` loads a finished run instead of
training it again, so the chapter's second page reuses the first page's runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from aigc_lab import perceptual, runtime, similarity
from aigc_lab.data import load_dataset
from aigc_lab.models.restoration import Restorer
from aigc_lab.train import History, TrainConfig, fit

#: the training data: gray 48 x 48 patches of the train photos (full mode; quick mode takes fewer)
TRAIN_DATA: dict[str, Any] = {"name": "photos", "patch_size": 48, "n_patches": 8000, "channels": 1, "seed": 0}
#: the test data: gray 192 x 192 crops of the test photos, never trained on
TEST_DATA: dict[str, Any] = {"name": "photos", "patch_size": 192, "n_patches": 40, "channels": 1, "seed": 1}
NOISE_SIGMA = 25.0
NOISE_SEED = 1234  # the fixed noise of the test crops
FULL_STEPS, QUICK_STEPS = 300, 8
BATCH_SIZE = 16


@dataclass(frozen=True)
class LossRecipe:
    """One row of the chapter's tables: a label and the :class:`Restorer` settings that differ from the defaults."""

    label: str
    settings: dict[str, Any] = field(default_factory=dict)


LOSS_RECIPES: dict[str, LossRecipe] = {
    "mse": LossRecipe("MSE (L2)", {"loss": "mse"}),
    "l1": LossRecipe("L1", {"loss": "l1"}),
    "ssim": LossRecipe("1 - SSIM", {"loss": "ssim"}),
    "ms-ssim": LossRecipe("1 - MS-SSIM", {"loss": "ms-ssim"}),
    "mixed": LossRecipe("mixed (0.84 MS-SSIM + 0.16 L1)", {"loss": "mixed"}),
    # The perception-distortion sweeps (section 5.2): MSE plus an extra term of growing weight.
    # The weights put the extra term at about the MSE's size (the smaller) and ten times it.
    "mse+style-300": LossRecipe("MSE + 300 style (Gram)", {"loss": "mse", "style_weight": 300.0}),
    "mse+style-3000": LossRecipe("MSE + 3000 style (Gram)", {"loss": "mse", "style_weight": 3000.0}),
    "mse+adv-0.003": LossRecipe("MSE + 0.003 adversarial", {"loss": "mse", "adversarial_weight": 0.003}),
    "mse+adv-0.03": LossRecipe("MSE + 0.03 adversarial", {"loss": "mse", "adversarial_weight": 0.03}),
}


def sweeps() -> dict[str, list[str]]:
    """Section 5.2's two sweeps, each from MSE alone (weight 0) to the heaviest extra term; quick mode keeps the ends."""
    full = {
        "style": ["mse", "mse+style-300", "mse+style-3000"],
        "adversarial": ["mse", "mse+adv-0.003", "mse+adv-0.03"],
    }
    return runtime.budget(full, {kind: [names[0], names[-1]] for kind, names in full.items()})


def _train_spec() -> dict[str, Any]:
    return {**TRAIN_DATA, "n_patches": runtime.budget(TRAIN_DATA["n_patches"], 256)}


def train_data():
    """The training patches (fewer in quick mode)."""
    spec = _train_spec()
    return load_dataset(spec.pop("name"), "train", **spec)


def test_data() -> tuple[Tensor, Tensor]:
    """``(clean, noisy)`` test crops: ``N x 1 x 192 x 192`` in ``[0, 1]``, the noise fixed by :data:`NOISE_SEED` (fewer crops in quick mode)."""
    spec = dict(TEST_DATA)
    spec["n_patches"] = runtime.budget(spec["n_patches"], 6)
    clean = load_dataset(spec.pop("name"), "test", **spec).images
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(NOISE_SEED))
    return clean, clean + noise * (NOISE_SIGMA / 255)


def train_loss_recipe(name: str, runs_dir: str | os.PathLike, *, seed: int = 0, steps: int | None = None) -> tuple[Restorer, History]:
    """Train the recipe ``name`` into ``runs_dir/name``, or load it when a finished run is there.

    Every recipe starts from the same weights (built under ``seed``) and sees the same batches
    and training noise; only the loss differs. Returns the model in eval mode and its history
    (``train_seconds`` is the time the training took when it ran).
    """
    if name not in LOSS_RECIPES:
        raise ValueError(f"unknown loss recipe {name!r}; known: {', '.join(LOSS_RECIPES)}")
    steps = runtime.budget(FULL_STEPS, QUICK_STEPS) if steps is None else steps
    data = train_data()
    torch.manual_seed(seed)
    model = Restorer(tuple(data.images.shape[1:]), noise_sigma=NOISE_SIGMA, **LOSS_RECIPES[name].settings)
    config = TrainConfig(steps=steps, batch_size=BATCH_SIZE, seed=seed, checkpoint_every=250)
    history = fit(model, data, Path(runs_dir) / name, config, data_spec=_train_spec())
    return model.eval(), history


def evaluation_features() -> perceptual.RandomFeatures:
    """The network the feature distance is measured in: random, fixed, and not the one any loss trains with.

    The feature and style losses use :class:`~aigc_lab.perceptual.RandomFeatures` with seed 0,
    width 32 and three blocks; this one has seed 1, width 48 and four blocks (other weights,
    deeper features). It is of the same kind, random, so it is an independent judge of the
    weights, not of the idea; VGG features (:func:`~aigc_lab.perceptual.vgg16_features`) are the
    usual judge when available.
    """
    return perceptual.RandomFeatures(1, width=48, blocks=4, seed=1)


def measure(restored: Tensor, clean: Tensor, *, features: perceptual.RandomFeatures | None = None) -> dict[str, Tensor]:
    """Per-image PSNR (dB), SSIM, MS-SSIM, feature distance and texture (Gram) distance of ``restored`` against ``clean``."""
    features = evaluation_features() if features is None else features
    with torch.no_grad():  # each image's features once, for both distances
        pairs = list(zip(features(restored), features(clean)))
    return {
        "psnr": similarity.psnr(restored, clean),
        "ssim": similarity.ssim(restored, clean),
        "ms_ssim": similarity.ms_ssim(restored, clean),
        # as perceptual.feature_distance and perceptual.gram_distance
        "feature_distance": torch.stack([(a - b).pow(2).flatten(1).mean(1) for a, b in pairs]).mean(0),
        "texture_distance": torch.stack([(perceptual.gram_matrix(a) - perceptual.gram_matrix(b)).pow(2).sum((1, 2)) for a, b in pairs]).sum(0),
    }


def classical_denoise(noisy: Tensor, method: str = "tv") -> tuple[Tensor, float]:
    """A no-network baseline from scikit-image and the seconds it took: ``"tv"`` (total variation, Chambolle) or ``"nl-means"``.

    The noise level is given to both, as the network is trained for it: TV's weight 0.08 and
    non-local means' ``h = 0.8 sigma`` with ``sigma = 25 / 255`` (scikit-image's documented settings).
    """
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

    if method not in ("tv", "nl-means"):
        raise ValueError(f"method must be 'tv' or 'nl-means', got {method!r}")
    sigma = NOISE_SIGMA / 255
    start = time.perf_counter()
    out = []
    for image in noisy[:, 0].double().numpy():
        if method == "tv":
            out.append(denoise_tv_chambolle(image, weight=0.08))
        else:
            out.append(denoise_nl_means(image, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True))
    seconds = time.perf_counter() - start
    return torch.from_numpy(np.stack(out)).float().unsqueeze(1).clamp(0, 1), seconds


def sharpness_ratio(restored: Tensor, clean: Tensor) -> Tensor:
    r"""Per image: the mean gradient magnitude of ``restored`` over that of ``clean``.

    :math:`\frac{\sum |\nabla \hat y|}{\sum |\nabla y|}` with horizontal and vertical differences. 1 means
    as much edge and texture energy as the clean image; below 1 is smoother (an MSE network's
    blur), above 1 is rougher (left-over noise, or invented texture). A simple stand-in for the
    "perceptual quality" axis of Blau & Michaeli (2018), which asks whether restored images are
    distributed like clean ones, not whether each is close to its own original.
    """
    if restored.shape != clean.shape or restored.dim() != 4:
        raise ValueError(f"restored and clean must be N x C x H x W of one shape, got {tuple(restored.shape)} and {tuple(clean.shape)}")

    def energy(images: Tensor) -> Tensor:
        dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).sum(1)
        dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).sum(1)
        return dx + dy

    return energy(restored) / energy(clean)
