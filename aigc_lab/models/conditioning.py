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
