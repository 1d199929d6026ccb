"""The paired datasets of chapter 4.6 (pix2pix): one stacked image per pair, aligned, deterministic, split apart."""

import pytest
import torch

from aigc_lab.data import dataset_options, load_dataset
from aigc_lab.data import pairs
from aigc_lab.data.pairs import PAIR_TASKS, canny_edges, hillshade, luma, split_pair

# The tasks whose pairs are quick to make; the style tasks render whole photographs (seconds) and
# are tested with a cheap stand-in rendering below.
DRAWN_TASKS = [task for task in PAIR_TASKS if task not in ("pencil", "pencil-texture", "pencil-tone", "oil")]

pytestmark = pytest.mark.usefixtures("one_thread")


def _load(task, split="train", size=16, n=6, seed=0):
    return load_dataset("pairs", split, task=task, size=size, n=n, seed=seed)


@pytest.mark.parametrize("task", DRAWN_TASKS)
def test_every_task_gives_stacked_pairs_in_the_unit_range(task):
    data = _load(task, size=32, n=5)
    n_in, n_out = PAIR_TASKS[task]
    assert data.images.shape == (5, n_in + n_out, 32, 32) and data.images.dtype == torch.float32
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert data.labels.shape == (5,) and all(0 <= k < len(data.classes) for k in data.labels.tolist())
    x, y = split_pair(data.images, task)
    assert x.shape == (5, n_in, 32, 32) and y.shape == (5, n_out, 32, 32)
    if task == "edges":
        assert set(x.unique().tolist()) <= {0.0, 1.0} and x.sum() > 0
    if task == "labels":
        codes = (x * 5).round()  # 0 background, k + 1 for the shape of kind k
        assert torch.allclose(x * 5, codes, atol=1e-5)
        for image, kind in zip(codes, data.attributes["shape"]):
            assert set(image.unique().tolist()) == {0.0, kind.item() + 1.0}
    if task == "hillshade":  # each elevation crop spans [0, 1]
        assert torch.allclose(x.amin(dim=(1, 2, 3)), torch.zeros(5)) and torch.allclose(x.amax(dim=(1, 2, 3)), torch.ones(5))


def test_split_pair_returns_views_and_refuses_the_wrong_channel_count():
    images = torch.rand(2, 4, 8, 8)
    x, y = split_pair(images, "colour")
    assert x.data_ptr() == images.data_ptr() and torch.equal(torch.cat([x, y], 1), images)
    assert split_pair(images[0], "colour")[0].shape == (1, 8, 8)  # one C x H x W pair
    with pytest.raises(ValueError, match=r"colour pairs are N x 4 x H x W \(1 input \+ 3 target channels\)"):
        split_pair(torch.rand(2, 3, 8, 8), "colour")


@pytest.mark.parametrize("task", DRAWN_TASKS)
def test_the_same_seed_gives_the_same_pairs_and_another_seed_others(task):
    first, again, other = _load(task), _load(task), _load(task, seed=1)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.images, other.images)


def test_train_and_test_come_from_different_photos_map_regions_and_streams():
    for task in ("edges", "colour"):  # by photograph
        train, test = _load(task, "train", n=50), _load(task, "test", n=50)
        assert set(train.classes).isdisjoint(test.classes) and len(test.classes) >= 2
    # hillshade: a train crop lies left of each map's cut, a test crop right of it
    size = 24
    train, test = _load("hillshade", "train", size=size, n=200), _load("hillshade", "test", size=size, n=200)
    for k, (name, elevation) in enumerate(pairs._elevation_maps()):
        cut = round(elevation.shape[1] * pairs.HILLSHADE_TRAIN_FRACTION)
        assert train.classes[k] == test.classes[k] == name
        assert (train.attributes["left"][train.labels == k] + size <= cut).all()
        assert (test.attributes["left"][test.labels == k] >= cut).all()
        assert (test.labels == k).any()  # both maps are in the test split
    # labels: the shapes' train and test streams share no pose
    train, test = _load("labels", "train", n=50), _load("labels", "test", n=50)
    assert set(train.attributes["x"].tolist()).isdisjoint(test.attributes["x"].tolist())


def _consistency(task, x, y):
    """Per pixel, how far the pair is from its defining relation: ``(computed, given)`` maps that must agree."""
    if task == "colour":
        return luma(y), x
    if task == "edges":
        return canny_edges(luma(y)), x
    if task == "hillshade":
        return hillshade(x), y
    return (y.amax(1, keepdim=True) >= 0.5).float(), (x > 0).float()  # labels: where a shape is


@pytest.mark.parametrize("task", DRAWN_TASKS)
def test_input_and_target_are_aligned_to_the_pixel(task):
    x, y = split_pair(_load(task, "test", size=32, n=8, seed=3).images, task)
    computed, given = _consistency(task, x, y)
    aligned = (computed - given).abs().mean().item()
    shifted = (computed[..., 1:] - given[..., :-1]).abs().mean().item()  # the input one pixel to the right of its target
    assert aligned < 1e-6, f"{task}: the pair breaks its own relation by {aligned}"
    assert shifted > 0.005, f"{task}: a one-pixel shift changes the relation by only {shifted}"


def test_labels_keep_the_shapes_classes():
    data = _load("labels", n=20)
    shapes = load_dataset("shapes", "train", n=20, size=16)
    assert data.classes == shapes.classes and torch.equal(data.labels, shapes.labels)
    assert torch.equal(split_pair(data.images, "labels")[1], shapes.images)


def test_bad_options_name_what_is_accepted():
    with pytest.raises(ValueError, match=r"option 'task' must be one of 'edges', 'hillshade', 'labels', 'colour'"):
        load_dataset("pairs", task="sketch")
    with pytest.raises(ValueError, match=r"option 'size' must be an integer >= 16"):
        load_dataset("pairs", task="colour", size=8)
    with pytest.raises(ValueError, match=r"option 'size' of task 'hillshade' must be from 16 to 72"):
        load_dataset("pairs", task="hillshade", size=100, n=2)
    with pytest.raises(ValueError, match=r"option 'size' of task 'edges' must be from 16 to 300"):
        load_dataset("pairs", task="edges", size=301, n=2)
    with pytest.raises(ValueError, match=r"option 'n' must be an integer >= 1"):
        load_dataset("pairs", task="labels", n=0)
    with pytest.raises(ValueError, match=r"no split 'val'; valid splits: train, test"):
        load_dataset("pairs", "val")
    with pytest.raises(ValueError, match=r"has no option 'tasks' \(did you mean 'task'\?\)"):
        load_dataset("pairs", tasks="edges")


def test_the_registry_finds_the_pairs_and_their_options():
    assert dataset_options("pairs") == {"task": "edges", "size": 64, "n": None, "seed": 0}
    data = load_dataset("pairs", "test", task="labels", size=16, n=3)
    assert data.name == "pairs" and data.split == "test" and len(data) == 3


@pytest.mark.parametrize("task, target_channels", [("pencil", 1), ("pencil-texture", 1), ("pencil-tone", 1), ("oil", 3)])
def test_style_pairs_are_cut_from_the_photo_and_its_whole_rendering_at_one_place(task, target_channels, monkeypatch):
    from aigc_lab.data import pairs

    # a cheap "style" whose value at a pixel depends on the pixel alone, so alignment is exact to check
    monkeypatch.setattr(pairs, "render_style", lambda images, style, **options: 1 - images)
    pairs._styled_photos.cache_clear()
    try:
        data = pairs.load_pairs("train", task=task, size=24, n=12, seed=3)
        test = pairs.load_pairs("test", task=task, size=24, n=4, seed=3)
    finally:
        pairs._styled_photos.cache_clear()
    given, target = pairs.split_pair(data.images, task)
    assert given.shape[1] == PAIR_TASKS[task][0] and target.shape[1] == target_channels
    photo = given[:, :3]
    assert torch.equal(target, (1 - photo)[:, :target_channels])
    shifted = torch.roll(photo, 1, dims=-1)
    assert (target - (1 - shifted)[:, :target_channels]).abs().mean() > 0.001  # one pixel off is not the pair
    assert not set(test.classes) & set(data.classes)  # other photographs


def test_the_pencil_texture_channel_is_the_filters_texture_at_the_pairs_place(monkeypatch):
    from aigc_lab.data import pairs
    from aigc_lab.styles import pencil_texture

    monkeypatch.setattr(pairs, "render_style", lambda images, style, **options: images[:, :1])
    pairs._styled_photos.cache_clear()
    try:
        data = pairs.load_pairs("train", task="pencil-texture", size=24, n=5, seed=1)
        photos = pairs._styled_photos("pencil", "train")[1]
    finally:
        pairs._styled_photos.cache_clear()
    for image, k, top, left in zip(data.images, data.labels, data.attributes["top"], data.attributes["left"]):
        texture = pencil_texture(tuple(photos[k].shape[-2:]), pairs.PENCIL_TEXTURE_SEED)[0, 0]
        assert torch.equal(image[3], texture[top : top + 24, left : left + 24])


def test_the_tone_channel_is_the_whole_photos_tone_map_at_the_pairs_place(monkeypatch):
    from aigc_lab.data import pairs
    from aigc_lab.styles import tone_map

    monkeypatch.setattr(pairs, "render_style", lambda images, style, **options: images[:, :1])
    pairs._styled_photos.cache_clear()
    try:
        data = pairs.load_pairs("train", task="pencil-tone", size=24, n=5, seed=1)
        texture_data = pairs.load_pairs("train", task="pencil-texture", size=24, n=5, seed=1)
        photos = pairs._styled_photos("pencil", "train")[1]
    finally:
        pairs._styled_photos.cache_clear()
    assert torch.equal(data.images[:, :4], texture_data.images[:, :4])  # photo and texture as in pencil-texture
    for image, k, top, left in zip(data.images, data.labels, data.attributes["top"], data.attributes["left"]):
        whole = tone_map(photos[k].unsqueeze(0))[0, 0].float()  # of the whole photo, then cut: not the crop's own
        assert torch.equal(image[4], whole[top : top + 24, left : left + 24])
        assert not torch.allclose(image[4], tone_map(image[:3].unsqueeze(0))[0, 0].float(), atol=1e-3)


def test_pencil_side_inputs_need_colour_photos():
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        pairs.pencil_side_inputs(torch.rand(2, 1, 8, 8))
    assert pairs.pencil_side_inputs(torch.rand(2, 3, 8, 9), tone=True).shape == (2, 2, 8, 9)


def test_photos_are_drawn_at_the_chapters_scale_and_larger_pairs_are_refused():
    photo = torch.rand(3, 400, 600)
    scaled = pairs.at_style_scale(photo)
    assert scaled.shape == (3, pairs.STYLE_SHORT_SIDE, 384) and 0 <= scaled.min() and scaled.max() <= 1
    assert pairs.at_style_scale(torch.rand(3, 300, 256)).shape == (3, 300, 256)  # already at the scale: kept
    with pytest.raises(ValueError, match="256"):
        pairs.load_pairs("train", task="oil", size=pairs.STYLE_SHORT_SIDE + 8, n=1)
