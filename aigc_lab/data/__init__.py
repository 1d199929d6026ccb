"""Datasets of the book, all returned as :class:`ImageDataset` by :func:`load_dataset`.

Offline (bundled or generated, nothing to download)::

    digits      scikit-learn's 8 x 8 handwritten digits            (digits.py)
    photos      photographs bundled with scikit-image, matplotlib  (photos.py)
    objects3d   3D meshes rendered by the package                  (objects3d.py)
    shapes      coloured 2D shapes with known attributes           (shapes.py)
    folder:PATH the reader's own images                            (folder.py)

Online, downloaded once through torchvision when asked for: ``mnist``, ``fashion-mnist``,
``cifar10`` (online.py). ``available_datasets()`` lists them all.
"""

from aigc_lab.data.registry import (
    DatasetUnavailableError,
    ImageDataset,
    available_datasets,
    dataset_options,
    load_dataset,
    register_dataset,
)
from aigc_lab.data.digits import DIGITS_SPLITS
from aigc_lab.data.photos import load_photos, sample_patches
from aigc_lab.data.objects3d import OBJECT_SHAPES, render_object
from aigc_lab.data.shapes import COLOURS, SHAPE_KINDS, class_attributes, render_shapes, shape_class, shape_classes
from aigc_lab.data import folder, online  # noqa: F401  (importing them registers their datasets)

__all__ = [
    "load_dataset",
    "available_datasets",
    "dataset_options",
    "register_dataset",
    "ImageDataset",
    "DatasetUnavailableError",
    "render_object",
    "OBJECT_SHAPES",
    "render_shapes",
    "SHAPE_KINDS",
    "COLOURS",
    "shape_class",
    "class_attributes",
    "shape_classes",
    "sample_patches",
    "load_photos",
    "DIGITS_SPLITS",
]
