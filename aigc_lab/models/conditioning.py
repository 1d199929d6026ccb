"""What every conditional model in the book checks about its labels, in one place."""

from __future__ import annotations

import torch
from torch import Tensor


def check_labels(labels: Tensor | None, n: int, num_classes: int) -> Tensor | None:
    """The class labels a conditional model was given, checked: ``None`` for an unconditional
    model (``num_classes == 0``), else an int64 tensor of ``n`` values in ``[0, num_classes)``."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError("this model is unconditional (num_classes=0); do not pass labels")
        return None
    if labels is None:
        raise ValueError(f"this model is conditional on {num_classes} classes; pass labels (int64 tensor of length {n})")
    labels = torch.as_tensor(labels)
    if labels.shape != (n,) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be an integer tensor of shape ({n},), got {labels.dtype} {tuple(labels.shape)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got [{int(labels.min())}, {int(labels.max())}]")
    return labels.long()


def resolve_label(label: int | str, classes: list[str]) -> int:
    """The class index a reader means by ``label``, given the dataset's class names.

    Accepted forms (the command line's ``--label``):

    * an index: ``3`` or ``"3"`` when the class names are not themselves numbers;
    * a class name: ``"3"`` for digits, ``"red triangle"`` for ``shapes``;
    * attributes as ``KEY=VALUE`` pairs separated by commas, e.g. ``"shape=triangle,colour=red"``:
      the class whose name consists of exactly these values, in any order. The keys only make
      the command readable; the values must name the class's parts.

    Raises ``ValueError`` naming the known classes when nothing, or more than one class, matches.
    """
    if not classes:
        raise ValueError("the dataset has no class names to choose a label from")
    if isinstance(label, bool):
        raise ValueError(f"a label must be a class index or name, got {label!r}")
    if isinstance(label, int):
        index = label
    else:
        text = " ".join(str(label).split())
        if text in classes:
            return classes.index(text)
        lowered = [c.lower() for c in classes]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        if "=" in text:
            values = []
            for pair in text.split(","):
                key, sep, value = pair.partition("=")
                if not sep or not key.strip() or not value.strip():
                    raise ValueError(f"attributes must be given as KEY=VALUE pairs separated by commas, e.g. shape=triangle,colour=red; got {label!r}")
                values.append(value.strip().lower())
            matches = [k for k, c in enumerate(lowered) if sorted(c.split()) == sorted(values)]
            if len(matches) == 1:
                return matches[0]
            raise ValueError(f"no class consists of exactly {values}; known classes: {', '.join(classes)}")
        try:
            index = int(text)
        except ValueError:
            raise ValueError(f"unknown label {label!r}; known classes: {', '.join(classes)} (or an index 0-{len(classes) - 1})") from None
    if not 0 <= index < len(classes):
        raise ValueError(f"a label index must lie in [0, {len(classes) - 1}], got {index}")
    return index
