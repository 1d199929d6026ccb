r"""Measurements of generated images.

Two simple, assumption-free measures used from chapter 1 on; the classifier-based Frechet
distance and likelihoods arrive with chapter 3.

* :func:`pixel_diversity`: how much samples differ from each other,
  :math:`\frac{1}{D}\sum_{d} \mathrm{std}_n(x_{n,d})`, the per-pixel standard deviation across
  samples, averaged over the :math:`D` pixels. A generator that always draws the same image
  scores 0; real data sets the level to expect.
* :func:`nearest_neighbor_distance`: how close each sample is to *some* real image,
  :math:`\min_m \sqrt{\frac{1}{D}\lVert x_n - r_m \rVert^2}`, the root-mean-square pixel
  distance to the nearest reference image. Low means realistic, but zero means copied: compare
  with held-out real images, whose distance to the training set is the honest target.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aigc_lab.images import check_images


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
