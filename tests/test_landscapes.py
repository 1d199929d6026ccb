"""Tests of the procedural ``landscapes`` dataset: the layout maps and attributes agree with the pictures."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from aigc_lab.data import available_datasets, load_dataset
from aigc_lab.data import landscapes as L
from aigc_lab.data.registry import offline_datasets


@pytest.fixture(scope="module")
def scenes(one_thread):
    return load_dataset("landscapes", "train", n=300, size=64, seed=5)


@pytest.fixture(scope="module")
def scenes32(one_thread):
    return load_dataset("landscapes", "val", n=200, size=32, seed=1)


def centres(side: int) -> torch.Tensor:
    return (torch.arange(side, dtype=torch.float32) + 0.5) / side


def row_centres(dataset) -> torch.Tensor:
    """``y`` of every pixel centre, ``N x S x S`` (fractions of the side from the top)."""
    side = dataset.images.shape[-1]
    return centres(side).view(1, side, 1).expand(len(dataset), side, side)


# ---------------------------------------------------------------- format, determinism, splits


@pytest.mark.parametrize("size", [64, 32])
def test_shapes_ranges_and_levels(size, one_thread):
    data = load_dataset("landscapes", "train", n=40, size=size, seed=3)
    assert data.images.shape == (40, 3, size, size) and data.images.dtype == torch.float32
    assert data.images.min() >= 0 and data.images.max() <= 1
    assert data.levels == 256 and torch.equal(data.to_levels().float() / 255, data.images)
    assert data.classes == ["day", "dusk", "night"] == list(L.TIMES_OF_DAY)
    assert torch.equal(data.labels, data.attributes["time"]) and data.labels.dtype == torch.int64
    a = data.attributes
    scalar = {"time", "horizon", "mountain_height", "roughness", "has_water", "water_extent", "has_trees", "n_trees", "sun_x", "sun_y", "sun_radius"}
    assert set(a) == scalar | {"ridge", "shore", "layout"}
    assert all(a[k].shape == (40,) for k in scalar)
    assert a["ridge"].shape == a["shore"].shape == (40, size) and a["ridge"].dtype == torch.float32
    assert a["layout"].shape == (40, size, size) and a["layout"].dtype == torch.int64
    assert set(a["layout"].unique().tolist()) <= {0, 1, 2, 3}
    assert L.LAYOUT_CLASSES == ("sky", "mountain", "water", "vegetation")
    assert len(load_dataset("landscapes", "val", size=16)) == L.DEFAULT_N["val"]


def test_default_size_is_64_and_1000_scenes_load_in_under_3_seconds():
    start = time.perf_counter()
    data = load_dataset("landscapes", n=1000)
    elapsed = time.perf_counter() - start
    assert data.images.shape == (1000, 3, 64, 64)
    assert elapsed < 3.0, f"1000 scenes at 64 x 64 took {elapsed:.2f} s"


def test_determinism_by_seed_and_prefix(one_thread):
    first = load_dataset("landscapes", "train", n=30, size=32, seed=7)
    again = load_dataset("landscapes", "train", n=30, size=32, seed=7)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    for key in first.attributes:
        assert torch.equal(first.attributes[key], again.attributes[key]), key
    other = load_dataset("landscapes", "train", n=30, size=32, seed=8)
    assert not torch.equal(first.images, other.images)
    longer = load_dataset("landscapes", "train", n=50, size=32, seed=7)
    assert torch.equal(longer.images[:30], first.images) and torch.equal(longer.attributes["layout"][:30], first.attributes["layout"])


def test_splits_are_independent_streams(one_thread):
    parts = {split: load_dataset("landscapes", split, n=40, size=32, seed=3) for split in ("train", "val", "test")}
    for a_name, b_name in (("train", "val"), ("train", "test"), ("val", "test")):
        a, b = parts[a_name].images, parts[b_name].images
        assert not (a[:, None] == b[None]).flatten(2).all(2).any(), (a_name, b_name)
        assert not torch.equal(parts[a_name].attributes["horizon"], parts[b_name].attributes["horizon"])


def test_the_same_scene_at_two_sizes(one_thread):
    small = load_dataset("landscapes", "test", n=40, size=32, seed=2)
    large = load_dataset("landscapes", "test", n=40, size=64, seed=2)
    scalar = [k for k, v in small.attributes.items() if v.dim() == 1]
    for key in scalar:
        assert torch.equal(small.attributes[key], large.attributes[key]), key
    # Each 32-pixel is the centre of a 2 x 2 block of 64-pixels: the maps agree almost everywhere.
    coarse = large.attributes["layout"][:, 1::2, 1::2]
    assert (coarse == small.attributes["layout"]).float().mean() > 0.9
    pooled = torch.nn.functional.avg_pool2d(large.images, 2)
    assert (pooled - small.images).abs().mean() < 0.05


# ---------------------------------------------------------------- the layout map agrees with the picture


def test_attribute_ranges(scenes):
    a = scenes.attributes
    for key, (low, high) in {
        "horizon": L.HORIZON_RANGE,
        "mountain_height": L.MOUNTAIN_HEIGHT_RANGE,
        "roughness": L.ROUGHNESS_RANGE,
        "sun_x": L.SUN_X_RANGE,
    }.items():
        assert ((a[key] >= low) & (a[key] <= high)).all(), key
    assert set(a["has_water"].tolist()) == {0, 1} and set(a["has_trees"].tolist()) == {0, 1}
    assert set(a["time"].tolist()) == {0, 1, 2}
    assert torch.equal(a["water_extent"] > 0, a["has_water"] == 1)
    wet = a["has_water"] == 1
    assert ((a["water_extent"][wet] >= L.WATER_EXTENT_RANGE[0]) & (a["water_extent"][wet] <= L.WATER_EXTENT_RANGE[1])).all()
    assert torch.equal(a["n_trees"] > 0, a["has_trees"] == 1) and a["n_trees"].max() <= L.MAX_TREES
    expected_radius = torch.tensor([L.SUN_RADIUS[t] for t in L.TIMES_OF_DAY])[a["time"]]
    assert torch.allclose(a["sun_radius"], expected_radius)
    # By day and night the whole disc is above the far range's highest point.
    high = a["time"] != L.TIMES_OF_DAY.index("dusk")
    assert (a["sun_y"][high] + a["sun_radius"][high] < (a["horizon"] - a["mountain_height"])[high]).all()
    assert (a["horizon"] - a["mountain_height"] >= 0.1 - 1e-6).all()


def test_mountain_class_is_exactly_between_the_ridge_line_and_the_horizon(scenes, scenes32):
    for data in (scenes, scenes32):
        a, y = data.attributes, row_centres(data)
        layout = a["layout"]
        trees = layout == L.VEGETATION
        above_horizon = y < a["horizon"].view(-1, 1, 1)
        under_ridge = y >= a["ridge"][:, None, :]
        expected = torch.where(above_horizon & under_ridge, L.MOUNTAIN, L.SKY)
        # Above the horizon every pixel is sky or mountain as the ridge says, or a tree standing in front.
        top = above_horizon & ~trees
        assert torch.equal(layout[top], expected[top])
        assert not (layout[~above_horizon] <= L.MOUNTAIN).any()  # nothing below the horizon is sky or mountain
        # Every column has some mountain under its ridge (a tree may hide a column, so: almost every).
        has_mountain = (layout == L.MOUNTAIN).any(1).float().mean()
        assert has_mountain > 0.97


def test_water_lies_between_the_horizon_and_the_shore_and_only_with_has_water(scenes, scenes32):
    for data in (scenes, scenes32):
        a, y = data.attributes, row_centres(data)
        layout = a["layout"]
        water = layout == L.WATER
        horizon, shore = a["horizon"].view(-1, 1, 1), a["shore"][:, None, :]
        assert (y[water] >= horizon.expand_as(y)[water]).all() and (y[water] < shore.expand_as(y)[water]).all()
        dry = a["has_water"] == 0
        assert not water[dry].any()
        assert torch.equal(a["shore"][dry], a["horizon"][dry, None].expand(-1, a["shore"].shape[1]))
        assert water[~dry].flatten(1).any(1).all()  # every lake shows
        assert (a["shore"][~dry] > a["horizon"][~dry, None]).all()
        # Between the horizon and the shore it is water unless a tree stands in front.
        band = (y >= horizon) & (y < shore) & (a["has_water"] == 1).view(-1, 1, 1)
        assert torch.equal(layout[band] == L.WATER, layout[band] != L.VEGETATION)
        assert (layout[band] != L.VEGETATION).float().mean() > 0.9


def test_vegetation_is_the_grass_below_the_shore_plus_the_trees(scenes):
    a, y = scenes.attributes, row_centres(scenes)
    layout = a["layout"]
    grass = y >= a["shore"][:, None, :]
    assert (layout[grass] == L.VEGETATION).all()
    treeless = a["has_trees"] == 0
    assert torch.equal(layout[treeless] == L.VEGETATION, grass[treeless])
    # Only trees stand where the grass is not (above the shore or the horizon); in many wooded
    # scenes a crown reaches that high (the others' trees stand wholly on the grass).
    outside = ((layout == L.VEGETATION) & ~grass).flatten(1).any(1)
    assert not outside[treeless].any() and outside[~treeless].float().mean() > 0.4


def test_sky_pixels_have_the_sky_colour_of_their_time_of_day(scenes):
    a, images = scenes.attributes, scenes.images.double()
    side = images.shape[-1]
    c = centres(side).double()
    y, x = c.view(side, 1).expand(side, side).numpy(), c.view(1, side).expand(side, side).numpy()
    layout = a["layout"]
    sky = layout == L.SKY
    # Only pixels whose four neighbours are sky too: an edge pixel mixes in its neighbour's colour.
    padded = torch.nn.functional.pad(sky, (1, 1, 1, 1), value=True)
    inner = sky & padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    for i in range(len(images)):
        t = int(a["time"][i])
        distance = np.sqrt((x - float(a["sun_x"][i])) ** 2 + (y - float(a["sun_y"][i])) ** 2)
        expected = torch.from_numpy(L.sky_colour(t, y, float(a["horizon"][i]), distance)).permute(2, 0, 1)
        away = inner[i] & torch.from_numpy(distance > float(a["sun_radius"][i]) + 1.5 / side)
        deviation = (images[i] - expected).abs().amax(0)[away]
        assert away.sum() > 50
        stars = L.N_STARS if L.TIMES_OF_DAY[t] == "night" else 0  # a star brightens one pixel
        assert (deviation > 0.01).sum() <= stars, (i, L.TIMES_OF_DAY[t], deviation.max())
    # ... and the colour alone tells the time of day: nearest palette, by the mean sky colour.
    palettes = torch.tensor([[*L.PALETTES[t]["sky_top"], *L.PALETTES[t]["sky_horizon"]] for t in L.TIMES_OF_DAY])
    means = torch.stack([images[i][:, sky[i]].mean(1) for i in range(len(images))]).float()
    nearest = torch.cdist(means, (palettes[:, :3] + palettes[:, 3:]) / 2).argmin(1)
    assert (nearest == a["time"]).float().mean() > 0.9


def test_the_sun_is_drawn_where_its_attributes_say(scenes):
    a, images = scenes.attributes, scenes.images
    side = images.shape[-1]
    for i in torch.nonzero(a["time"] == L.TIMES_OF_DAY.index("day")).flatten().tolist():
        row, col = int(a["sun_y"][i] * side), int(a["sun_x"][i] * side)
        sun = torch.tensor(L.PALETTES["day"]["sun"])
        assert a["layout"][i, row, col] == L.SKY
        assert (images[i, :, row, col] - sun).abs().max() < 0.02


def test_water_reflects_and_is_darker_than_what_it_mirrors(scenes):
    a, images = scenes.attributes, scenes.images
    wet = torch.nonzero((a["has_water"] == 1) & (a["time"] == L.TIMES_OF_DAY.index("day"))).flatten().tolist()
    assert wet
    for i in wet:
        water = a["layout"][i] == L.WATER
        above = a["layout"][i] <= L.MOUNTAIN
        assert images[i][:, water].mean() < images[i][:, above].mean()


# ---------------------------------------------------------------- stacked layout channels


def test_with_layout_stacks_the_map_in_front_of_the_scene(one_thread):
    plain = load_dataset("landscapes", "test", n=20, size=32, seed=4)
    for option, mode, channels in ((True, "index", 1), ("index", "index", 1), ("onehot", "onehot", 4)):
        stacked = load_dataset("landscapes", "test", n=20, size=32, seed=4, with_layout=option)
        assert stacked.images.shape == (20, channels + 3, 32, 32) and stacked.levels == 256
        layout, scene = L.split_layout(stacked.images, mode)
        assert torch.equal(scene, plain.images)
        assert torch.equal(L.layout_from_channels(layout), plain.attributes["layout"])
        assert torch.equal(stacked.to_levels().float() / 255, stacked.images)  # class / 3 is on the 256 levels
    index = load_dataset("landscapes", "test", n=20, size=32, seed=4, with_layout=True).images[:, 0]
    assert set(torch.round(index * 3).unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    onehot = L.split_layout(load_dataset("landscapes", "test", n=20, size=32, seed=4, with_layout="onehot").images, "onehot")[0]
    assert torch.equal(onehot.sum(1), torch.ones(20, 32, 32))
    rgb = L.layout_to_rgb(plain.attributes["layout"])
    assert rgb.shape == (20, 3, 32, 32)
    with pytest.raises(ValueError, match="1 layout \\+ 3 scene channels"):
        L.split_layout(plain.images, "index")


# ---------------------------------------------------------------- registry and option errors


def test_registered_offline_with_one_line():
    names = available_datasets()
    assert "landscapes" in names and "\n" not in names["landscapes"] and "downloads" not in names["landscapes"]
    assert "landscapes" in offline_datasets()


@pytest.mark.parametrize(
    "split, options, match",
    [("validation", {}, "no split 'validation'.*train, val, test"),
     ("train", {"size": 8}, "option 'size' must be an integer >= 16"),
     ("train", {"size": 32.0}, "option 'size' must be an integer"),
     ("train", {"n": 0}, "option 'n' must be an integer >= 1"),
     ("train", {"seed": -1}, "option 'seed' must be an integer >= 0"),
     ("train", {"with_layout": "rgb"}, "option 'with_layout' must be False, True .*'index' or 'onehot'; got 'rgb'"),
     ("train", {"with_layouts": True}, r"no option 'with_layouts' \(did you mean 'with_layout'\?\)")],
)  # fmt: skip
def test_bad_options_are_value_errors_naming_what_is_expected(split, options, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("landscapes", split, **options)


def test_render_landscapes_checks_its_arguments():
    rows = np.random.default_rng(0).random((3, L.DRAWS_PER_IMAGE))
    images, attributes = L.render_landscapes(rows, 16)
    assert images.shape == (3, 3, 16, 16) and attributes["layout"].shape == (3, 16, 16)
    with pytest.raises(ValueError, match=f"N x {L.DRAWS_PER_IMAGE}"):
        L.render_landscapes(rows[:, :10], 16)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        L.render_landscapes(rows + 1, 16)
    with pytest.raises(ValueError, match="layout map must be an int64"):
        L.layout_to_rgb(torch.zeros(2, 4, 4))


def test_trees_change_only_the_pixels_the_layout_gives_them(one_thread):
    rows = np.random.default_rng(3).random((60, L.DRAWS_PER_IMAGE))
    rows[:, 6] = 0.0  # every scene has trees (has_trees when its uniform < TREE_PROBABILITY) ...
    rows[:, 7] = 0.99  # ... MAX_TREES of them
    bare_rows = rows.copy()
    bare_rows[:, 6] = 0.99  # the same scenes without trees
    wooded, a = L.render_landscapes(rows, 32)
    bare, b = L.render_landscapes(bare_rows, 32)
    assert (a["n_trees"] == L.MAX_TREES).all() and (b["n_trees"] == 0).all()
    changed_layout = a["layout"] != b["layout"]
    assert (a["layout"][changed_layout] == L.VEGETATION).all() and changed_layout.any()
    # Above the grass a tree changes the colour of the pixels the map gives it, of their neighbours
    # and of the few pixels it covers by less than half (all of a small far tree's), at most
    # a couple a row for each tree.
    y = centres(32).view(1, 32, 1)
    above_grass = y < a["shore"][:, None, :]
    near_tree = torch.nn.functional.max_pool2d(changed_layout.float()[:, None], 3, 1, 1)[:, 0] > 0
    difference = (wooded - bare).abs().amax(1)
    assert (difference[changed_layout] > 0.02).float().mean() > 0.95  # a tree pixel looks different
    faint = above_grass & ~near_tree
    assert difference[faint].max() < 0.5 * 0.6  # partial coverage (< 1/2) of colours that differ by less than 0.6
    assert ((difference > 0) & faint).sum(-1).max() <= 2 * L.MAX_TREES
