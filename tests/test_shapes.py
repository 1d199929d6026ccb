"""Tests of the procedural ``shapes`` dataset: the pictures agree with the attributes they are labelled with."""

from __future__ import annotations

import math

import pytest
import torch

from aigc_lab.data import COLOURS, SHAPE_KINDS, class_attributes, load_dataset, render_shapes, shape_class, shape_classes
from aigc_lab.data import shapes as shapes_module


@pytest.fixture(scope="module")
def dataset32(one_thread):
    return load_dataset("shapes", "train", n=600, size=32)


def coverage(images: torch.Tensor) -> torch.Tensor:
    """How much of each pixel the shape covers: on black every colour of the palette has a channel at 1."""
    return images.amax(dim=1)


def star_area(inner: float) -> float:
    """Area of a 5-pointed star with tips at radius 1: ten triangles (centre, tip, inner corner)."""
    return 10 * 0.5 * inner * math.sin(math.pi / 5)


def cross_area(arm_width: float) -> float:
    """Area of a plus sign of circumradius 1: two bars of 2 l x 2 w, minus their shared square."""
    w = arm_width / 2
    length = math.sqrt(1 - w**2)
    return 2 * (2 * length) * (2 * w) - (2 * w) ** 2


AREA = {  # area of each shape of circumradius 1
    "circle": math.pi,
    "square": 2.0,
    "triangle": 3 * math.sqrt(3) / 4,
    "star": star_area(shapes_module.STAR_INNER_RADIUS),
    "cross": cross_area(shapes_module.CROSS_ARM_WIDTH),
}


# ---------------------------------------------------------------- pixels agree with attributes


def test_foreground_colour_is_the_colour_label(dataset32):
    images, colour = dataset32.images, dataset32.attributes["colour"]
    cover = coverage(images)
    for i in range(len(images)):
        solid = cover[i] > 0.9  # fully covered pixels; edge pixels are darker shades of the same colour
        mean = images[i][:, solid].mean(dim=1)
        expected = torch.tensor(COLOURS[shapes_module.COLOUR_NAMES[colour[i]]])
        assert torch.allclose(mean, expected, atol=0.05), (i, mean, expected)


def test_foreground_centroid_is_x_y_and_area_matches_size_and_shape(dataset32):
    cover = coverage(dataset32.images).double()
    side = cover.shape[-1]
    centres = (torch.arange(side, dtype=torch.float64) + 0.5) / side
    mass = cover.sum((1, 2))
    cx = (cover * centres[None, None, :]).sum((1, 2)) / mass
    cy = (cover * centres[None, :, None]).sum((1, 2)) / mass
    a = dataset32.attributes
    assert (cx - a["x"].double()).abs().max() * side < 0.2  # pixels
    assert (cy - a["y"].double()).abs().max() * side < 0.2
    expected = torch.tensor([AREA[SHAPE_KINDS[k]] for k in a["shape"]]) * (a["size"].double() * side) ** 2
    assert ((mass - expected).abs() / expected).max() < 0.03


def test_area_grows_with_size_and_circle_square_ratio():
    sizes = [0.25, 0.3, 0.35, 0.42]
    for shape in SHAPE_KINDS:
        areas = coverage(render_shapes(shape, "red", sizes, 0.5, 0.5, 17.0, image_size=32)).sum((1, 2))
        assert (areas.diff() > 0).all(), shape
    circle, square = coverage(render_shapes(["circle", "square"], "green", 0.4, 0.5, 0.5, 0.0, image_size=32)).sum((1, 2))
    assert float(circle / square) == pytest.approx(math.pi / 2, rel=0.02)


def test_shapes_stay_inside_the_image(dataset32):
    a = dataset32.attributes
    for key in ("x", "y"):
        assert (a[key] - a["size"] >= shapes_module.MARGIN - 1e-6).all() and (a[key] + a["size"] <= 1 - shapes_module.MARGIN + 1e-6).all()
    assert ((a["size"] >= shapes_module.SIZE_RANGE[0]) & (a["size"] <= shapes_module.SIZE_RANGE[1])).all()
    border = coverage(dataset32.images)
    border = torch.cat([border[:, 0], border[:, -1], border[:, :, 0], border[:, :, -1]], dim=1)
    assert border.max() == 0  # the margin is 1.6 pixels at 32 x 32


def test_the_dataset_is_its_attributes_rendered_and_each_kind_is_the_only_match(one_thread):
    small = load_dataset("shapes", "val", n=200, size=16)
    a = small.attributes
    assert torch.equal(render_shapes(a["shape"], a["colour"], a["size"], a["x"], a["y"], a["rotation"], image_size=16), small.images)
    # Nearest template at 16 x 16: drawn with the same pose, every other kind differs clearly.
    distances = torch.stack(
        [(render_shapes(k, a["colour"], a["size"], a["x"], a["y"], a["rotation"], image_size=16) - small.images).pow(2).sum((1, 2, 3))
         for k in range(len(SHAPE_KINDS))], dim=1
    )  # fmt: skip
    assert torch.equal(distances.argmin(1), a["shape"])
    others = distances.masked_fill(torch.nn.functional.one_hot(a["shape"], len(SHAPE_KINDS)).bool(), math.inf)
    assert others.min() > 2.0  # at least two pixels' worth of full-colour difference


def test_labels_classes_and_helpers_agree(dataset32):
    a = dataset32.attributes
    assert torch.equal(dataset32.labels, a["shape"] * len(COLOURS) + a["colour"])
    assert dataset32.classes == shape_classes() and len(dataset32.classes) == len(SHAPE_KINDS) * len(COLOURS)
    assert shape_class("triangle", "red") == 12 and class_attributes(12) == ("triangle", "red")
    assert dataset32.classes[12] == "red triangle"
    for k, name in enumerate(dataset32.classes):
        shape, colour = class_attributes(k)
        assert name == f"{colour} {shape}" and shape_class(shape, colour) == k
    assert set(dataset32.labels.tolist()) == set(range(30))  # 600 images cover every class
    for bad in (30, -1, "3"):
        with pytest.raises(ValueError, match="class index"):
            class_attributes(bad)
    with pytest.raises(ValueError, match="unknown colour 'purple'.*red, green"):
        shape_class("circle", "purple")


def test_subsets_of_shapes_and_colours(one_thread):
    subset = load_dataset("shapes", n=50, size=16, shapes="cross,circle", colours=["blue", "red"])
    assert subset.classes == ["blue cross", "red cross", "blue circle", "red circle"]
    a = subset.attributes
    assert set(a["shape"].tolist()) <= {SHAPE_KINDS.index("cross"), SHAPE_KINDS.index("circle")}  # global indices
    names = [f"{shapes_module.COLOUR_NAMES[c]} {SHAPE_KINDS[s]}" for s, c in zip(a["shape"], a["colour"])]
    assert names == [subset.classes[k] for k in subset.labels]
    assert subset.labels[0] == shape_class(*class_attributes(int(subset.labels[0]), shapes=("cross", "circle"), colours=("blue", "red")),
                                           shapes=("cross", "circle"), colours=("blue", "red"))  # fmt: skip


# ---------------------------------------------------------------- the dataset's contract


def test_format_determinism_and_splits(one_thread):
    first = load_dataset("shapes", "train", n=40, size=16, seed=3)
    assert first.images.shape == (40, 3, 16, 16) and first.images.dtype == torch.float32
    assert first.images.min() >= 0 and first.images.max() <= 1
    assert first.levels == 256 and torch.equal(first.to_levels().float() / 255, first.images)
    assert all(len(v) == 40 for v in first.attributes.values()) and set(first.attributes) == {
        "shape",
        "colour",
        "size",
        "x",
        "y",
        "rotation",
    }
    again = load_dataset("shapes", "train", n=40, size=16, seed=3)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.images, load_dataset("shapes", "train", n=40, size=16, seed=4).images)
    assert torch.equal(load_dataset("shapes", "train", n=60, size=16, seed=3).images[:40], first.images)
    for split in ("val", "test"):
        other = load_dataset("shapes", split, n=40, size=16, seed=3)
        assert other.split == split and not (other.images[:, None] == first.images[None]).flatten(2).all(2).any()
    assert len(load_dataset("shapes", "val", size=8)) == 1000 and load_dataset("shapes", "val", size=8).images.shape[-1] == 8
    assert len(load_dataset("shapes", "train", size=8)) == 5000


@pytest.mark.parametrize(
    "split, options, match",
    [("validation", {}, "no split 'validation'.*train, val, test"),
     ("train", {"size": 7}, "option 'size' must be an integer >= 8"),
     ("train", {"n": 0}, "option 'n' must be an integer >= 1"),
     ("train", {"seed": -1}, "option 'seed'"),
     ("train", {"shapes": ["circle", "hexagon"]}, "option 'shapes'.*circle, square, triangle, star, cross.*hexagon"),
     ("train", {"colours": "purple"}, "option 'colours'.*red, green, blue.*purple"),
     ("train", {"colours": []}, "option 'colours' must be a non-empty list"),
     ("train", {"colour": "red"}, r"no option 'colour' \(did you mean 'colours'\?\)")],
)  # fmt: skip
def test_bad_options_are_value_errors_naming_what_is_expected(split, options, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("shapes", split, **options)


def test_render_shapes_checks_its_arguments():
    assert render_shapes("star", "red", 0.4, 0.5, 0.5, 0).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        render_shapes("hexagon", "red", 0.4, 0.5, 0.5, 0)
    with pytest.raises(ValueError, match="colour must be a name .* or an index 0-5"):
        render_shapes("star", 6, 0.4, 0.5, 0.5, 0)
    with pytest.raises(ValueError, match="same number N"):
        render_shapes("star", "red", [0.3, 0.4], [0.5, 0.5, 0.5], 0.5, 0)
    with pytest.raises(ValueError, match="size .* must be > 0"):
        render_shapes("star", "red", 0.0, 0.5, 0.5, 0)
