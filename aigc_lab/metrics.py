r"""Measurements of generated images.

Two simple, assumption-free measures used from chapter 1 on:

* :func:`pixel_diversity`: how much samples differ from each other,
  :math:`\frac{1}{D}\sum_{d} \mathrm{std}_n(x_{n,d})`, the per-pixel standard deviation across
  samples, averaged over the :math:`D` pixels. A generator that always draws the same image
  scores 0; real data sets the level to expect.
* :func:`nearest_neighbor_distance`: how close each sample is to *some* real image,
  :math:`\min_m \sqrt{\frac{1}{D}\lVert x_n - r_m \rVert^2}`, the root-mean-square pixel
  distance to the nearest reference image. Low means realistic, but zero means copied: compare
  with held-out real images, whose distance to the training set is the honest target.

Chapter 3 adds the measures every generative model of the book is compared with:

* :func:`frechet_distance`: the distance between two image sets in the feature space of a
  small classifier, :func:`feature_classifier`, trained once per dataset. This is the FID of
  Heusel et al. (2017) with a classifier we can train in seconds instead of Inception, which we
  cannot download; numbers are comparable within the book, not with published FIDs.
  :func:`frechet_distance_to_test` is the book's protocol, :func:`real_vs_real_frechet` its floor.
* :func:`classifier_accuracy` (does a conditional model draw the class it was asked for?) and
  :func:`class_coverage` (does an unconditional model draw every class, or has it collapsed?).
* :func:`bits_per_dim` and :func:`nats_per_image`: the two units of likelihood.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aigc_lab.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_state_dict_checked,
    save_checkpoint,
)
from aigc_lab.images import check_images, check_labels
from aigc_lab.losses import bits_per_dim, nats_per_image  # noqa: F401 (the likelihood units, re-exported)

CACHE_ENV = "AIGC_LAB_CACHE"
DEFAULT_CACHE_ROOT = Path("~/.cache/aigc_lab")


def pixel_diversity(images: Tensor) -> float:
    """Mean over pixels of the standard deviation across images (``images`` in ``[0, 1]``)."""
    check_images(images)
    if images.shape[0] < 2:
        raise ValueError(f"pixel_diversity needs at least 2 images, got {images.shape[0]}")
    return float(images.flatten(1).double().std(dim=0, unbiased=True).mean())


def nearest_neighbors(images: Tensor, reference: Tensor, *, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
    """For each image, the RMS pixel distance to its nearest image in ``reference``, and its index.

    Both sets are ``N x C x H x W`` in ``[0, 1]`` with the same ``C x H x W``. Returns
    ``(distances float64 (N,), indices int64 (N,))``.
    """
    check_images(images)
    check_images(reference, name="reference")
    if images.shape[1:] != reference.shape[1:]:
        raise ValueError(f"images {tuple(images.shape[1:])} and reference {tuple(reference.shape[1:])} must have the same C x H x W")
    if reference.shape[0] == 0:
        raise ValueError("reference is empty")
    a = images.flatten(1).double()
    b = reference.flatten(1).double()
    dim = a.shape[1]
    distances, indices = [], []
    for chunk in a.split(batch_size):
        d2, idx = torch.cdist(chunk, b).pow(2).min(dim=1)  # (chunk,)
        distances.append((d2.clamp_min(0) / dim).sqrt())
        indices.append(idx)
    return torch.cat(distances), torch.cat(indices)


def nearest_neighbor_distance(images: Tensor, reference: Tensor, *, batch_size: int = 1024) -> Tensor:
    """The distances of :func:`nearest_neighbors` alone."""
    return nearest_neighbors(images, reference, batch_size=batch_size)[0]


# ---------------------------------------------------------------- Frechet distance


def frechet_distance_from_features(features_a: Tensor, features_b: Tensor) -> float:
    r"""The Frechet distance between Gaussians fitted to two sets of feature vectors.

    .. math::
        d^2 = \lVert \mu_a - \mu_b \rVert^2
              + \operatorname{Tr}\left(\Sigma_a + \Sigma_b - 2 (\Sigma_a \Sigma_b)^{1/2}\right)

    (Dowson & Landau, 1982; used as FID by Heusel et al., 2017), with the sample means and the
    unbiased sample covariances of ``features_a`` (``N_a x D``) and ``features_b`` (``N_b x D``).
    Like FID, it returns :math:`d^2`, the squared distance.

    The trace of the matrix square root is computed without one: :math:`\Sigma_a\Sigma_b` is
    similar to the symmetric positive semi-definite :math:`M = \Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2}`,
    so :math:`\operatorname{Tr}(\Sigma_a\Sigma_b)^{1/2} = \sum_i \sqrt{\lambda_i(M)}`, with
    eigenvalues from ``eigh`` in float64 and rounding's tiny negatives clamped to 0. Unlike a
    general ``sqrtm``, this never returns complex values for singular covariances.
    """
    a = _check_features(features_a, "features_a")
    b = _check_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_a has {a.shape[1]} features per row and features_b {b.shape[1]}; they must match")
    mu_a, cov_a = a.mean(0), torch.cov(a.T).reshape(a.shape[1], a.shape[1])
    mu_b, cov_b = b.mean(0), torch.cov(b.T).reshape(b.shape[1], b.shape[1])
    sqrt_a = _sqrt_psd(cov_a)
    m = sqrt_a @ cov_b @ sqrt_a
    trace_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    d2 = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return max(float(d2), 0.0)  # rounding can leave -1e-12 for identical sets


def _sqrt_psd(matrix: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return (eigenvectors * eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.T


def _check_features(features: Tensor, name: str) -> Tensor:
    if not isinstance(features, Tensor) or features.dim() != 2:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"{name} must be a tensor of shape N x D, got {shape}")
    if features.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows to estimate a covariance, got {features.shape[0]}")
    features = features.detach().to("cpu", torch.float64)
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return features


def frechet_distance(images_a: Tensor, images_b: Tensor, *, classifier: FeatureClassifier) -> float:
    r""":func:`frechet_distance_from_features` of the two image sets' ``classifier.features``.

    Images are ``N x C x H x W`` in ``[0, 1]`` of the size the classifier was trained on.

    The estimate is biased upward, more so with fewer images: even two samples of the same
    distribution score above 0. The sample means alone add
    :math:`\operatorname{Tr}\Sigma_a/N_a + \operatorname{Tr}\Sigma_b/N_b` on average, and the
    square-root term more (Chong & Forsyth, 2020, "Effectively unbiased FID"). So only
    distances computed with the same :math:`N_a` and :math:`N_b` can be compared, and a table
    needs its floor: :func:`real_vs_real_frechet`. :func:`frechet_distance_to_test` fixes both.
    """
    return frechet_distance_from_features(
        classifier.features(images_a, name="images_a"), classifier.features(images_b, name="images_b")
    )


# ---------------------------------------------------------------- the feature classifier

# Every setting the cached weights depend on; a cache file made with other settings is retrained.
# Bump "version" when FeatureClassifier or _train_classifier changes in a way these do not show.
# This recipe serves images smaller than 16 pixels (the 8 x 8 digits).
CLASSIFIER_RECIPE: dict[str, Any] = {
    "version": 1,
    "conv_channels": [16, 32],
    "features": 128,
    "dropout": 0.3,
    "steps": 1000,
    "batch_size": 64,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "shift_fraction": 0.125,  # random translation by up to this share of the side (1 pixel of 8)
    "seed": 0,
}

# Images of 16 pixels and more (shapes, objects3d, resized sets): two more convolutions and a second
# pooling stage, and more steps. Measured on shapes at 16 px (30 classes of shape x colour, sizes
# and rotations varying): the small recipe reaches 43% on the val split (the colour is always right,
# the shape is not: it sees too little of the image before pooling), this one 98.5% (4000 steps).
LARGE_CLASSIFIER_RECIPE: dict[str, Any] = {
    "version": 1,
    "conv_channels": [32, 32, 64, 64],
    "features": 128,
    "dropout": 0.3,
    "steps": 3000,
    "batch_size": 64,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "shift_fraction": 0.0625,
    "seed": 0,
}


def classifier_recipe(image_shape: tuple[int, ...]) -> dict[str, Any]:
    """The training recipe :func:`feature_classifier` uses for images of ``image_shape`` ``(C, H, W)``."""
    return LARGE_CLASSIFIER_RECIPE if min(image_shape[-2:]) >= 16 else CLASSIFIER_RECIPE


class FeatureClassifier(nn.Module):
    """A small CNN whose penultimate layer is the feature space of :func:`frechet_distance`.

    ``conv 3x3 -> ReLU -> conv 3x3 -> ReLU -> max-pool 2`` (repeated once more for four
    ``conv_channels``) ``-> average-pool to 4 x 4 -> linear -> ReLU`` gives :meth:`features` (like Inception's pool features for FID: after the last
    nonlinearity, before the classes); a dropout and a linear layer give the class logits.
    Build one with :func:`feature_classifier`, which trains it and caches it.

    Attributes set by :func:`feature_classifier`: ``classes``, ``dataset``, ``options``,
    ``held_out_split`` and ``held_out_accuracy`` (accuracy on the dataset's val split, else its
    test split; never used for training or model selection), ``train_seconds``, ``cache_path``.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_classes: int,
        *,
        conv_channels: tuple[int, ...] = (16, 32),
        features: int = 128,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        if not conv_channels or len(conv_channels) % 2:
            raise ValueError(f"conv_channels must list an even number of widths (pairs of convolutions), got {conv_channels!r}")
        layers: list[nn.Module] = []
        width = self.image_shape[0]
        for i, channels in enumerate(conv_channels):
            layers += [nn.Conv2d(width, channels, 3, padding=1), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))  # after every pair of convolutions
            width = channels
        self.body = nn.Sequential(
            *layers,
            nn.AdaptiveAvgPool2d(4),  # any image size gives width x 4 x 4
            nn.Flatten(),
            nn.Linear(width * 16, features),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, num_classes))
        self.classes = [str(k) for k in range(num_classes)]
        self.dataset, self.options = "", {}
        self.held_out_split, self.held_out_accuracy = "", float("nan")
        self.train_seconds, self.cache_path = float("nan"), None

    def embed(self, images: Tensor) -> Tensor:
        """Features ``(N, D)`` of unchecked ``[0, 1]`` images, with gradients (training uses this)."""
        return self.body(images * 2 - 1)

    def forward(self, images: Tensor) -> Tensor:
        """Class logits ``(N, K)`` of unchecked ``[0, 1]`` images, with gradients."""
        return self.head(self.embed(images))

    @torch.no_grad()
    def _evaluate(self, function: Callable[[Tensor], Tensor], images: Tensor, name: str, batch_size: int) -> Tensor:
        check_images(images, name=name, channels=self.image_shape[0], size=self.image_shape[1:])
        if len(images) == 0:
            raise ValueError(f"{name} is empty")
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()  # dropout off
        try:
            return torch.cat([function(chunk.to(device, torch.float32)).cpu() for chunk in images.split(batch_size)])
        finally:
            self.train(was_training)

    def features(self, images: Tensor, *, name: str = "images", batch_size: int = 512) -> Tensor:
        """Penultimate-layer features ``(N, D)`` (float32, on the CPU) of ``N x C x H x W`` images in ``[0, 1]``."""
        return self._evaluate(self.embed, images, name, batch_size)

    def probabilities(self, images: Tensor, *, name: str = "images", batch_size: int = 512) -> Tensor:
        """Class probabilities ``(N, K)``: the softmax of the logits."""
        return self._evaluate(self, images, name, batch_size).softmax(dim=1)

    def predict(self, images: Tensor, *, name: str = "images", batch_size: int = 512) -> Tensor:
        """The most probable class of each image, int64 ``(N,)``."""
        return self.probabilities(images, name=name, batch_size=batch_size).argmax(dim=1)

    def extra_repr(self) -> str:
        return (
            f"dataset={self.dataset!r}, options={self.options}, image_shape={self.image_shape}, "
            f"{self.held_out_split} accuracy={self.held_out_accuracy:.4f}, train_seconds={self.train_seconds:.1f}"
        )


def classifier_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`feature_classifier` keeps trained classifiers.

    ``cache_dir`` when given; else ``$AIGC_LAB_CACHE/classifiers`` when that environment
    variable is set; else ``~/.cache/aigc_lab/classifiers``.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_ROOT).expanduser() / "classifiers"


def feature_classifier(
    dataset: str = "digits",
    *,
    size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    steps: int | None = None,
    **options: object,
) -> FeatureClassifier:
    """The dataset's :class:`FeatureClassifier`: loaded from the cache, or trained and cached.

    Training uses the real ``train`` split of ``load_dataset(dataset, "train", size=size,
    **options)`` only, with a fixed recipe (:func:`classifier_recipe`: :data:`CLASSIFIER_RECIPE` for
    images under 16 pixels, :data:`LARGE_CLASSIFIER_RECIPE` from 16 on; seed, steps, batch size,
    Adam with weight decay, random shifts of up to one eighth of the side), on one CPU thread
    so the weights are the same on every run on the same CPU and the result does not depend on the
    device. It takes about 10 s for digits on one core. The accuracy on the held-out ``val``
    split (``test`` for datasets without one) is measured after training and kept in
    ``held_out_accuracy``; it is reported, never used to choose anything.

    The cache: one file per dataset and options, named ``DATASET-HASH.pt``, in
    ``cache_dir``, else ``$AIGC_LAB_CACHE/classifiers``, else ``~/.cache/aigc_lab/classifiers``
    (see :func:`classifier_cache_dir`). It is written atomically and read with
    ``weights_only=True`` (:mod:`aigc_lab.checkpoint`). A file that is corrupt, or was made with
    another :data:`CLASSIFIER_RECIPE` (another version of the architecture), is retrained and
    replaced with a warning. Delete a ``folder:PATH`` dataset's file after changing its images.

    Args:
        dataset: a name :func:`aigc_lab.data.load_dataset` accepts.
        size: the loader's ``size`` option (the classifier then only takes images of that size).
        cache_dir: the folder of cached classifiers (overrides ``$AIGC_LAB_CACHE``).
        device: where :meth:`~FeatureClassifier.features` runs; default the CPU, so the book's
            numbers are the same on every machine.
        steps: train for this many steps instead of the recipe's (quick mode uses fewer; the
            number is part of the cache key, so such a classifier never replaces the real one).
        options: further options of the dataset's loader.
    """
    # Imported here, like below: the data package brings scikit-image and matplotlib, which the
    # distance functions of this module do not need.
    from aigc_lab.data import load_dataset

    if size is not None:
        options = {"size": size, **options}
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer or None, got {steps!r}")
    key: dict[str, object] = {"dataset": dataset, "options": options}
    if steps is not None:
        key["steps"] = steps
    described = json.dumps(key, sort_keys=True, default=repr)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset)[:40]
    path = classifier_cache_dir(cache_dir) / f"{slug}-{hashlib.sha256(described.encode()).hexdigest()[:12]}.pt"
    classifier = _load_classifier(path, described, steps)
    if classifier is None:
        train = load_dataset(dataset, "train", **options)
        classifier = _train_classifier(train, steps)
        classifier.held_out_split, held_out = _held_out_split(dataset, options)
        if held_out is not None:
            classifier.held_out_accuracy = classifier_accuracy(held_out.images, held_out.labels, classifier=classifier)
        save_checkpoint(
            {
                "recipe": _recipe_text(tuple(classifier.image_shape), steps),
                "described": described,
                "image_shape": list(classifier.image_shape),
                "classes": classifier.classes,
                "held_out_split": classifier.held_out_split,
                "held_out_accuracy": classifier.held_out_accuracy,
                "train_seconds": classifier.train_seconds,
                "state_dict": classifier.state_dict(),
            },
            path,
        )
    classifier.dataset, classifier.options, classifier.cache_path = dataset, dict(options), path
    return classifier.to(device or "cpu").eval()


def _recipe_text(image_shape: tuple[int, ...], steps: int | None = None) -> str:
    recipe = dict(classifier_recipe(image_shape))
    if steps is not None:
        recipe["steps"] = steps
    return json.dumps(recipe, sort_keys=True)


def _build_classifier(image_shape: tuple[int, int, int], classes: list[str]) -> FeatureClassifier:
    recipe = classifier_recipe(image_shape)
    classifier = FeatureClassifier(
        image_shape,
        len(classes),
        conv_channels=tuple(recipe["conv_channels"]),
        features=recipe["features"],
        dropout=recipe["dropout"],
    )
    classifier.classes = list(classes)
    return classifier


def _load_classifier(path: Path, described: str, steps: int | None = None) -> FeatureClassifier | None:
    """The cached classifier at ``path``, or None (with a warning when the file is unusable)."""
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path)
        if state.get("recipe") != _recipe_text(tuple(state["image_shape"]), steps) or state.get("described") != described:
            warnings.warn(
                f"the cached classifier {path} was made by another version of the architecture or "
                "training recipe; training a new one",
                stacklevel=3,
            )
            return None
        classifier = _build_classifier(tuple(state["image_shape"]), state["classes"])
        load_state_dict_checked(classifier, state["state_dict"], what="feature classifier", path=path)
    except (CheckpointError, KeyError, TypeError, ValueError) as exc:
        warnings.warn(f"the cached classifier {path} is unusable ({exc}); training a new one to replace it", stacklevel=3)
        return None
    classifier.held_out_split = state["held_out_split"]
    classifier.held_out_accuracy = float(state["held_out_accuracy"])
    classifier.train_seconds = float(state["train_seconds"])
    return classifier


def _held_out_split(dataset: str, options: dict[str, object]) -> tuple[str, Any]:
    """The ``val`` split, else the ``test`` split, else nothing: ``(name, ImageDataset | None)``."""
    from aigc_lab.data import load_dataset

    for split in ("val", "test"):
        try:
            return split, load_dataset(dataset, split, **options)
        except ValueError as exc:
            if "has no split" not in str(exc):
                raise
    return "", None


def _train_classifier(train: Any, steps: int | None = None) -> FeatureClassifier:
    """Train a classifier on an ImageDataset with :func:`classifier_recipe`'s recipe, on the CPU."""
    images, labels = train.images, train.labels
    recipe = dict(classifier_recipe(tuple(images.shape[1:])))
    if steps is not None:
        recipe["steps"] = steps
    h, w = images.shape[-2:]
    max_shift = max(1, round(recipe["shift_fraction"] * min(h, w)))
    threads = torch.get_num_threads()
    start = time.perf_counter()
    # A private random stream: training neither depends on nor disturbs the caller's seeds.
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)  # one thread: the same sums in the same order on every run
        try:
            torch.manual_seed(recipe["seed"])
            generator = torch.Generator().manual_seed(recipe["seed"])
            classifier = _build_classifier(tuple(images.shape[1:]), train.classes)
            optimizer = torch.optim.AdamW(classifier.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
            classifier.train()
            for _ in range(recipe["steps"]):
                index = torch.randint(len(images), (recipe["batch_size"],), generator=generator)
                batch = _random_shift(images[index], max_shift, generator)
                loss = F.cross_entropy(classifier(batch), labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        finally:
            torch.set_num_threads(threads)
    classifier.train_seconds = time.perf_counter() - start
    return classifier.eval()


def _random_shift(images: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translate the whole batch by up to ``max_shift`` pixels, repeating the border.

    Handwriting is not always centred the same way; without this the digits classifier is
    a few points less accurate on writers it has not seen.
    """
    h, w = images.shape[-2:]
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    dy, dx = torch.randint(2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[..., dy : dy + h, dx : dx + w]


# ---------------------------------------------------------------- what the classifier sees


def _integer_labels(labels: Tensor, n: int) -> Tensor:
    """``labels`` as a tensor, checked to be ``n`` integers (one per image)."""
    labels = torch.as_tensor(labels)
    if labels.shape != (n,) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be an integer tensor of shape ({n},), got {labels.dtype} {tuple(labels.shape)}")
    return labels


def classifier_accuracy(images: Tensor, labels: Tensor, *, classifier: FeatureClassifier) -> float:
    r"""The share of images the classifier assigns to their label: :math:`\frac{1}{N}\sum_n [\hat y(x_n) = y_n]`.

    On a conditional model's samples with the labels it was asked for, this measures how
    often it draws the right class (the "classification accuracy" of conditional GAN papers,
    e.g. Odena et al., 2017); real held-out images give the ceiling.
    """
    labels = _integer_labels(labels, len(images))
    predicted = classifier.predict(images)
    return float((predicted == labels.cpu().long()).double().mean())


def class_coverage(images: Tensor, *, classifier: FeatureClassifier) -> dict[str, Any]:
    r"""How an unconditional model's samples spread over the classes, by the classifier's predictions.

    Returns a dictionary with

    * ``shares``: the share :math:`p_k` of images predicted as each class, in class order;
    * ``classes_covered``: how many classes at least one image is predicted as;
    * ``num_classes``: :math:`K`;
    * ``entropy_nats``: :math:`H = -\sum_k p_k \ln p_k` of that histogram, at most
      ``max_entropy_nats`` :math:`= \ln K` when every class is drawn equally often, and 0 when
      every image is predicted as the same class: the mode-collapse measure of chapter 3.
      Compare with the real data's value, since real classes need not be balanced.
    """
    predicted = classifier.predict(images)
    counts = torch.bincount(predicted, minlength=classifier.num_classes).double()
    shares = counts / counts.sum()
    nonzero = shares[shares > 0]
    return {
        "shares": shares.tolist(),
        "classes_covered": int((counts > 0).sum()),
        "num_classes": classifier.num_classes,
        "entropy_nats": float(-(nonzero * nonzero.log()).sum()),
        "max_entropy_nats": math.log(classifier.num_classes),
    }


# ---------------------------------------------------------------- the book's protocol


def frechet_distance_to_test(
    images: Tensor, dataset: str = "digits", *, classifier: FeatureClassifier | None = None, **options: object
) -> float:
    r"""The Frechet distance every table of the book reports: model samples against the real test split.

    The protocol: draw as many samples as the dataset's train split has images (1000 for
    digits) and compare their features with those of the whole held-out test split (447 digits).
    Its floor, :func:`real_vs_real_frechet`, puts the real train split in the samples' place: a
    perfect model draws, like the train split, independent images of the real distribution, so
    the floor is what it would score at exactly these set sizes (the estimate's upward bias,
    see :func:`frechet_distance`, is the same on both sides of the comparison).

    Why the test split as the reference: neither the models nor the classifier saw it, so a
    model that copies its training images scores the floor, not better than real data (against
    the train split, copying would score 0). Why 1000 samples rather than 447: the larger set
    lowers the samples' share of the bias and the noise, and sampling is cheap.

    ``classifier`` defaults to ``feature_classifier(dataset, **options)``; ``options`` are the
    dataset's loader options (e.g. ``size``).
    """
    from aigc_lab.data import load_dataset

    if classifier is None:
        classifier = feature_classifier(dataset, **options)
    test = load_dataset(dataset, "test", **options)
    return frechet_distance(images, test.images, classifier=classifier)


def frechet_distance_per_class(
    images: Tensor, labels: Tensor, dataset: str = "digits", *, classifier: FeatureClassifier | None = None, **options: object
) -> dict[str, float]:
    r"""For a conditional model: the Frechet distance of the samples drawn for each class to the test images of that class.

    ``images[i]`` was generated for class ``labels[i]``. Returns ``{class name: distance}`` for every
    class with at least two samples, and ``"mean"``, their average. Accuracy alone
    (:func:`classifier_accuracy`) can be won by drawing one prototype per class; a per-class
    distance cannot, because a single image per class has none of the class's spread.

    The sets are small (about 45 test digits per class), so each distance has a large upward bias
    (see :func:`frechet_distance`): compare models at the same number of samples per class, and
    with :func:`real_vs_real_frechet`-style floors computed the same way, not with the
    whole-set numbers.
    """
    from aigc_lab.data import load_dataset

    if classifier is None:
        classifier = feature_classifier(dataset, **options)
    test = load_dataset(dataset, "test", **options)
    labels = check_labels(labels, len(images), len(test.classes))
    result: dict[str, float] = {}
    for k, name in enumerate(test.classes):
        mine, theirs = images[labels == k], test.images[test.labels == k]
        if len(mine) >= 2 and len(theirs) >= 2:
            result[name] = frechet_distance(mine, theirs, classifier=classifier)
    if not result:
        raise ValueError("no class has at least two samples and two test images; draw more samples per class")
    result["mean"] = sum(result.values()) / len(result)
    return result


def within_class_diversity(images: Tensor, labels: Tensor, num_classes: int | None = None) -> float:
    r"""How different a conditional model's samples for the same condition are: the mean over classes of :func:`pixel_diversity`.

    .. math::

        \mathrm{div} = \frac{1}{|K|}\sum_{k \in K} \frac{1}{D}\sum_{d=1}^{D} \mathrm{std}\{x_{n,d} : y_n = k\},

    over the classes :math:`K` with at least two images. A model that draws one prototype per
    class scores 0; compare with the same number on real images of each class (e.g. the test
    split). Guidance (chapter 4) trades this away for accuracy.
    """
    check_images(images)
    labels = _integer_labels(labels, len(images))
    classes = range(num_classes) if num_classes is not None else torch.unique(labels).tolist()
    values = [pixel_diversity(images[labels == k]) for k in classes if int((labels == k).sum()) >= 2]
    if not values:
        raise ValueError("no class has at least two images; draw more samples per class")
    return sum(values) / len(values)


def real_vs_real_frechet(
    dataset: str = "digits",
    n: int | None = None,
    *,
    classifier: FeatureClassifier | None = None,
    seed: int = 0,
    **options: object,
) -> float:
    """The floor of :func:`frechet_distance_to_test`: ``n`` real train images against the test split.

    ``n`` defaults to the whole train split, the protocol's sample count; a smaller ``n``
    draws a random subset (``seed``) and gives the floor for that many samples, which rises as
    ``n`` falls (on average: at these sizes, which images are drawn moves it by about 2 on
    digits). A model is as good as real data when it reaches this value at the same ``n``.
    """
    from aigc_lab.data import load_dataset

    train = load_dataset(dataset, "train", **options)
    if n is None:
        n = len(train)
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= len(train):
        raise ValueError(f"n must be an integer between 2 and the train split's {len(train)} images, got {n!r}")
    index = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    return frechet_distance_to_test(train.images[index], dataset, classifier=classifier, **options)
