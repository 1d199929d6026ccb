"""The dataset type every loader returns, and the registry behind :func:`load_dataset`.

A dataset is registered with a decorator on its loader function::

    @register_dataset("digits", online=False, description="...", splits=("train", "test"))
    def load_digits(split: str = "train", *, size: int | None = None) -> ImageDataset: ...

A file of this folder that declares a dataset this way is found by reading its source
(:func:`_declared`) and imported the first time one of its datasets is asked for, so a new
dataset's file is not imported by (and does not change the recorded code of) a page that never
loads it.

:func:`load_dataset` checks the name, the split and the options against the loader's
signature before calling it, so a typo gets a message that names what is accepted instead of
a ``TypeError`` from deep inside.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from aigc_lab.images import check_images

FOLDER_PREFIX = "folder:"


class DatasetUnavailableError(RuntimeError):
    """An online dataset is neither on disk nor downloadable (for example, no network)."""


class ImageDataset(Dataset):
    """Images in ``[0, 1]`` with integer labels, indexable like any PyTorch dataset.

    Args:
        images: float32 tensor ``N x C x H x W`` with values in ``[0, 1]``.
        labels: int64 tensor of length ``N``; ``labels[i]`` indexes ``classes``.
        classes: the class names.
        name: the dataset's name, e.g. ``"digits"``.
        split: which part of it, e.g. ``"train"``.
        attributes: extra per-image values (e.g. ``"azimuth"``), each a tensor of length ``N``.
        levels: the number of gray levels when the values are exactly ``k / (levels - 1)``
            (17 for digits, 256 for 8-bit sources), ``None`` when they are not (after resizing).
        transform: applied to each image in ``__getitem__`` (torchvision convention).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        classes: list[str],
        *,
        name: str,
        split: str,
        attributes: dict[str, Tensor] | None = None,
        levels: int | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        check_images(images, name=f"{name} images")
        if images.dtype != torch.float32:
            raise ValueError(f"{name} images must be float32, got {images.dtype}")
        n = len(images)
        if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.shape != (n,):
            got = f"{labels.dtype} of shape {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"{name} labels must be an int64 tensor of shape ({n},), got {got}")
        if n and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            raise ValueError(
                f"{name} labels must lie in [0, {len(classes) - 1}] to index its {len(classes)} classes, "
                f"got values in [{int(labels.min())}, {int(labels.max())}]"
            )
        attributes = dict(attributes or {})
        for key, values in attributes.items():
            if not isinstance(values, Tensor) or len(values) != n:
                raise ValueError(f"{name} attribute {key!r} must be a tensor of length {n}")
        if levels is not None and (not isinstance(levels, int) or levels < 2):
            raise ValueError(f"{name} levels must be an integer >= 2 or None, got {levels!r}")
        self.images = images
        self.labels = labels
        self.classes = list(classes)
        self.name = name
        self.split = split
        self.attributes = attributes
        self.levels = levels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        values = f"[{float(self.images.min()):.3g}, {float(self.images.max()):.3g}]" if len(self) else "empty"
        shown = ", ".join(map(repr, self.classes[:10])) + (", ..." if len(self.classes) > 10 else "")
        return (
            f"ImageDataset({self.name!r}, split={self.split!r}, n={len(self)}, image={c}x{h}x{w}, "
            f"values={values}, levels={self.levels}, {len(self.classes)} classes: {shown})"
        )

    def class_counts(self) -> dict[str, int]:
        """How many images each class has, in the order of ``classes``."""
        counts = torch.bincount(self.labels, minlength=len(self.classes))
        return {name: int(count) for name, count in zip(self.classes, counts)}

    def to_levels(self) -> Tensor:
        """The images as integer gray levels ``round(x * (levels - 1))`` (int64), for discrete models."""
        if self.levels is None:
            raise ValueError(
                f"{self.name} ({self.split}) has no exact gray levels (it was resized or converted); "
                "load it without resizing to use to_levels()"
            )
        return torch.round(self.images * (self.levels - 1)).long()


@dataclass(frozen=True)
class _Entry:
    loader: Callable[..., ImageDataset]
    online: bool
    description: str
    splits: tuple[str, ...]


_REGISTRY: dict[str, _Entry] = {}


@functools.cache
def _declared() -> dict[str, str]:
    """``dataset name -> module`` for every ``@register_dataset("name", ...)`` in this folder's files, read from the source."""
    found: dict[str, str] = {}
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Call)
                    and getattr(decorator.func, "id", getattr(decorator.func, "attr", None)) == "register_dataset"
                    and decorator.args
                    and isinstance(decorator.args[0], ast.Constant)
                ):
                    found[decorator.args[0].value] = f"{__package__}.{path.stem}"
    return found


def _import_declaring(name: str | None = None) -> None:
    """Import the file that declares dataset ``name`` (every dataset file when ``name`` is None), if not yet registered."""
    for declared, module in _declared().items():
        if (name is None or declared == name) and declared not in _REGISTRY:
            importlib.import_module(module)


def register_dataset(
    name: str, *, online: bool, description: str, splits: tuple[str, ...] = ("train", "test")
) -> Callable[[Callable[..., ImageDataset]], Callable[..., ImageDataset]]:
    """Register a loader ``f(split, **options) -> ImageDataset`` under ``name``.

    ``online`` marks datasets that download on first use; ``description`` is the one line
    :func:`available_datasets` shows; ``splits`` are the split names the loader accepts.
    The loader's keyword-only parameters are its options.
    """

    def decorate(loader: Callable[..., ImageDataset]) -> Callable[..., ImageDataset]:
        if name in _REGISTRY:
            raise ValueError(f"a dataset named {name!r} is already registered")
        _REGISTRY[name] = _Entry(loader, online, description, tuple(splits))
        return loader

    return decorate


def _key(name: str) -> str:
    return FOLDER_PREFIX + "PATH" if name == "folder" else name


def available_datasets() -> dict[str, str]:
    """Every dataset name :func:`load_dataset` accepts, with a one-line description (imports every dataset's file)."""
    _import_declaring()
    return {
        _key(name): entry.description + (" (downloads on first use)" if entry.online else "")
        for name, entry in sorted(_REGISTRY.items())
    }


def offline_datasets() -> list[str]:
    """Names of the datasets that never need the network (the reader's folder aside)."""
    _import_declaring()
    return [name for name, entry in _REGISTRY.items() if not entry.online and name != "folder"]


def dataset_options(name: str) -> dict[str, object]:
    """The keyword options the loader of dataset ``name`` (or ``folder:PATH``) accepts, with their defaults."""
    name = "folder" if name.startswith(FOLDER_PREFIX) else name
    _import_declaring(name)
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(available_datasets())}")
    parameters = inspect.signature(_REGISTRY[name].loader).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def load_dataset(
    name: str, split: str = "train", *, transform: Callable[[Tensor], Tensor] | None = None, **options: object
) -> ImageDataset:
    """Load a dataset by name: ``load_dataset("digits", "test")``, ``load_dataset("folder:~/pics", "all")``.

    ``options`` are the loader's own keyword options (see :func:`available_datasets` and each
    loader's docstring); ``transform`` is set on the returned dataset.

    Raises:
        ValueError: unknown name (with the closest match), split or option.
    """
    path = None
    if name.startswith(FOLDER_PREFIX):
        name, path = "folder", name[len(FOLDER_PREFIX):]
    _import_declaring(name)
    if name not in _REGISTRY:
        known = list(available_datasets())
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}{hint} Known datasets: {', '.join(known)}")
    entry = _REGISTRY[name]
    if split not in entry.splits:
        raise ValueError(f"dataset {_key(name)!r} has no split {split!r}; valid splits: {', '.join(entry.splits)}")
    accepted = dataset_options(name)
    for option in options:
        if option not in accepted:
            listed = ", ".join(f"{k}={v!r}" for k, v in accepted.items()) or "none"
            close = difflib.get_close_matches(option, list(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"dataset {_key(name)!r} has no option {option!r}{hint}; accepted options: {listed}")
    dataset = entry.loader(path, split, **options) if path is not None else entry.loader(split, **options)
    dataset.transform = transform
    return dataset


def check_int_option(option: str, value: object, *, minimum: int = 1, allow_none: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= ``minimum`` (or None when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        none = " or None" if allow_none else ""
        raise ValueError(f"option {option!r} must be an integer >= {minimum}{none}, got {value!r}")


def check_choice_option(option: str, value: object, choices: tuple) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"option {option!r} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def resize_square(images: Tensor, size: int) -> Tensor:
    """Center-crop ``... x C x H x W`` images to a square and resize them to ``size x size``.

    Bilinear; antialiased when shrinking (so fine detail does not alias), plain when enlarging
    (antialiasing there only blurs); clamped to ``[0, 1]`` because bilinear weights can overshoot
    by rounding.
    """
    h, w = images.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = images[..., top : top + side, left : left + side]
    if side == size:
        return square.contiguous()
    batch = square.reshape(-1, *square.shape[-3:])
    resized = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)
    return resized.clamp(0, 1).reshape(*square.shape[:-2], size, size)
