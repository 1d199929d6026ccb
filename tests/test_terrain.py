"""The terrain dataset: hill-shaded crops of matplotlib's elevation maps."""

import numpy as np
import pytest
import torch
from matplotlib.colors import LightSource

from aigc_lab.data import load_dataset
from aigc_lab.data import terrain


@pytest.fixture(scope="module")
def val():
    return load_dataset("terrain", "val", n=60)


def test_shapes_ranges_labels_and_determinism(val):
    assert val.images.shape == (60, 3, 32, 32) and val.images.dtype == torch.float32
    assert 0 <= float(val.images.min()) and float(val.images.max()) <= 1
    assert val.classes == ["north", "east", "south", "west"]
    assert torch.equal(val.labels, terrain.light_class(val.attributes["azimuth"]))
    assert val.attributes["elevation"].shape == (60, 32, 32)
    again = load_dataset("terrain", "val", n=60)
    assert torch.equal(again.images, val.images) and torch.equal(again.attributes["azimuth"], val.attributes["azimuth"])
    assert not torch.equal(load_dataset("terrain", "val", n=60, seed=1).images, val.images)
    assert torch.equal(load_dataset("terrain", "val", n=60, size=16).attributes["row"], val.attributes["row"])


def test_light_class_rounds_the_azimuth_to_the_nearest_quadrant():
    assert terrain.light_class(torch.tensor([0.0, 44.0, 46.0, 134.0, 136.0, 180.0, 269.0, 316.0, 359.0])).tolist() == [0, 0, 1, 1, 2, 2, 3, 0, 0]


def test_splits_crop_disjoint_bands_of_columns():
    maps = terrain.load_maps()
    spans = {}
    for split in ("train", "val", "test"):
        data = load_dataset("terrain", split, n=200, size=8)
        a = data.attributes
        for k, (z, _, _) in enumerate(maps):
            chosen = a["map"] == k
            if chosen.any():
                first, last = int(a["col"][chosen].min()), int((a["col"] + a["side"])[chosen].max())
                low, high = terrain.SPLIT_BANDS[split]
                assert round(low * z.shape[1]) <= first and last <= round(high * z.shape[1]), (split, k)
                assert int((a["row"] + a["side"])[chosen].max()) <= z.shape[0]
                spans[(split, k)] = (first, last)
    for k in range(len(maps)):
        bands = sorted(spans[(s, k)] for s in ("train", "val", "test") if (s, k) in spans)
        assert all(a[1] <= b[0] for a, b in zip(bands, bands[1:])), bands


def test_each_image_is_its_crop_rendered_from_its_attributes(val):
    maps = terrain.load_maps()
    for i in range(5):
        a = {key: value[i] for key, value in val.attributes.items()}
        z, dx, dy = maps[int(a["map"])]
        row, col, side = int(a["row"]), int(a["col"]), int(a["side"])
        crop = z[row : row + side, col : col + side]
        rgb = terrain.render_crop(crop, dx, dy, float(a["azimuth"]), float(a["altitude"]), vmin=float(z.min()), vmax=float(z.max()),
                                  vert_exag=terrain.VERTICAL_EXAGGERATION[int(a["map"])])
        torch.testing.assert_close(val.images[i], terrain._resize(rgb, 32).clamp(0, 1))
        torch.testing.assert_close(a["elevation"], terrain._resize(crop, 32))


def test_the_shading_follows_the_labelled_light(val):
    # Brightness should agree with a plain hill shade of the crop's heights lit from the recorded
    # azimuth far better than with one lit from the opposite side.
    maps = terrain.load_maps()
    agree, opposite = [], []
    for i in range(20):
        a = {key: value[i] for key, value in val.attributes.items()}
        heights = a["elevation"].double().numpy()
        _, dx, dy = maps[int(a["map"])]
        side = int(a["side"])
        scale = side / heights.shape[0]  # the crop was resized: cells are this many map cells apart
        brightness = val.images[i].mean(0).double().numpy().ravel()
        for azimuth, into in ((float(a["azimuth"]), agree), (float(a["azimuth"]) + 180, opposite)):
            shade = LightSource(azdeg=azimuth, altdeg=float(a["altitude"])).hillshade(heights, dx=dx * scale, dy=dy * scale)
            into.append(np.corrcoef(brightness, shade.ravel())[0, 1])
    assert np.median(agree) > 0.5 and np.median(opposite) < 0


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="split"):
        load_dataset("terrain", "holdout")
    with pytest.raises(ValueError, match="size"):
        load_dataset("terrain", "val", size=4)
