"""Tests of aigc_lab.data. All offline: the online datasets are tested with the network blocked
and with tiny fake files in torchvision's on-disk format."""

from __future__ import annotations

import hashlib
import itertools
import pickle
import socket
import struct
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from aigc_lab.data import (
    DIGITS_SPLITS,
    OBJECT_SHAPES,
    DatasetUnavailableError,
    ImageDataset,
    available_datasets,
    load_dataset,
    load_photos,
    register_dataset,
    render_object,
    sample_patches,
)
from aigc_lab.data import registry


@pytest.fixture
def no_network(monkeypatch):
    """Make every way out to the network fail at once, as on an offline machine."""

    def refuse(*args, **kwargs):
        raise OSError(101, "Network is unreachable (blocked by the test)")

    def refuse_url(*args, **kwargs):
        raise urllib.error.URLError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse_url)


def tiny_dataset(n: int = 4, **kwargs) -> ImageDataset:
    images = torch.rand(n, 1, 3, 3)
    labels = torch.arange(n) % 2
    return ImageDataset(images, labels, ["a", "b"], name="tiny", split="train", **kwargs)


# ---------------------------------------------------------------- registry and ImageDataset


def test_available_datasets_lists_every_dataset_with_one_line():
    names = available_datasets()
    assert {"digits", "photos", "objects3d", "mnist", "fashion-mnist", "cifar10", "folder:PATH"} <= set(names)
    assert all(isinstance(d, str) and d and "\n" not in d for d in names.values())
    assert "downloads" in names["mnist"] and "downloads" not in names["digits"]


def test_unknown_dataset_suggests_the_closest_and_lists_all():
    with pytest.raises(ValueError, match="did you mean 'digits'") as error:
        load_dataset("digit")
    for name in available_datasets():
        assert name in str(error.value)


def test_unknown_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match="no split 'validation'.*train, val, test, all"):
        load_dataset("digits", "validation")


def test_unknown_option_names_it_and_the_accepted_ones():
    with pytest.raises(ValueError, match=r"no option 'sise' \(did you mean 'size'\?\).*size=None"):
        load_dataset("digits", sise=32)


@pytest.mark.parametrize(
    "name, options, option",
    [("digits", {"size": 0}, "size"), ("digits", {"size": "big"}, "size"), ("photos", {"channels": 2}, "channels"),
     ("photos", {"n_patches": 0, "patch_size": 8}, "n_patches"), ("objects3d", {"n": -1}, "'n'")],
)  # fmt: skip
def test_invalid_option_values_are_value_errors_naming_the_option(name, options, option):
    with pytest.raises(ValueError, match=option):
        load_dataset(name, **options)


def test_register_dataset_adds_a_loader_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_dataset("tiny", online=False, description="four random images", splits=("train",))
    def load_tiny(split: str = "train", *, n: int = 4) -> ImageDataset:
        return tiny_dataset(n)

    assert available_datasets()["tiny"] == "four random images"
    assert len(load_dataset("tiny", n=6)) == 6
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("tiny", online=False, description="again")(load_tiny)


def test_image_dataset_item_len_counts_and_repr():
    dataset = tiny_dataset(5)
    image, label = dataset[1]
    assert image.shape == (1, 3, 3) and image.dtype == torch.float32
    assert label.shape == () and label.dtype == torch.int64 and int(label) == 1
    assert len(dataset) == 5
    assert dataset.class_counts() == {"a": 3, "b": 2}
    text = repr(dataset)
    assert "'tiny'" in text and "split='train'" in text and "n=5" in text and "1x3x3" in text and "'b'" in text


def test_image_dataset_transform_is_applied_and_settable_from_load_dataset():
    dataset = load_dataset("digits", transform=lambda x: 1 - x)
    image, _ = dataset[0]
    assert torch.equal(image, 1 - dataset.images[0])


def test_to_levels_needs_exact_levels():
    dataset = tiny_dataset()
    with pytest.raises(ValueError, match="no exact gray levels"):
        dataset.to_levels()
    exact = ImageDataset(torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3), torch.zeros(1, dtype=torch.long), ["x"],
                         name="exact", split="all", levels=3)  # fmt: skip
    assert exact.to_levels().flatten().tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "images, labels, classes, match",
    [
        (torch.rand(2, 1, 3, 3), torch.tensor([0, 1], dtype=torch.int32), ["a", "b"], "int64"),
        (torch.rand(2, 1, 3, 3), torch.tensor([0, 1, 1]), ["a", "b"], r"shape \(2,\)"),
        (torch.rand(2, 1, 3, 3), torch.tensor([0, 2]), ["a", "b"], r"labels must lie in \[0, 1\]"),
        (torch.rand(2, 1, 3, 3) * 2, torch.tensor([0, 1]), ["a", "b"], r"must lie in \[0, 1\]"),
        (torch.rand(2, 1, 3, 3, dtype=torch.float64), torch.tensor([0, 1]), ["a", "b"], "float32"),
        (torch.rand(2, 3, 3), torch.tensor([0, 1]), ["a", "b"], "N x C x H x W"),
    ],
)
def test_image_dataset_rejects_bad_inputs(images, labels, classes, match):
    with pytest.raises(ValueError, match=match):
        ImageDataset(images, labels, classes, name="bad", split="train")


def test_image_dataset_rejects_attributes_of_the_wrong_length():
    with pytest.raises(ValueError, match="attribute 'angle'"):
        tiny_dataset(4, attributes={"angle": torch.zeros(3)})


# ---------------------------------------------------------------- digits


def test_digits_splits_have_the_literature_sizes_and_cover_everything_once():
    sizes = {split: len(load_dataset("digits", split)) for split in DIGITS_SPLITS}
    assert sizes == {"train": 1000, "val": 350, "test": 447, "all": 1797}
    parts = torch.cat([load_dataset("digits", s).images for s in ("train", "val", "test")])
    assert torch.equal(parts, load_dataset("digits", "all").images)


def test_digits_are_17_exact_gray_levels():
    dataset = load_dataset("digits", "test")
    assert dataset.images.shape == (447, 1, 8, 8) and dataset.images.dtype == torch.float32
    assert dataset.levels == 17 and dataset.classes == [str(d) for d in range(10)]
    levels = dataset.to_levels()
    assert levels.min() == 0 and levels.max() == 16
    assert torch.equal(levels.float() / 16, dataset.images)  # the round trip is exact
    assert dataset.labels.dtype == torch.int64 and set(dataset.labels.tolist()) == set(range(10))


def test_digits_are_deterministic_and_upsample():
    assert torch.equal(load_dataset("digits").images, load_dataset("digits").images)
    big = load_dataset("digits", "val", size=32)
    assert big.images.shape == (350, 1, 32, 32) and big.levels is None
    assert big.images.min() >= 0 and big.images.max() <= 1
    small = load_dataset("digits", "val").images
    assert (torch.nn.functional.avg_pool2d(big.images, 4) - small).abs().mean() < 0.1  # same digits, smoothed


# ---------------------------------------------------------------- photos


def test_load_photos_split_by_image():
    train, test, everything = (dict(load_photos(s)) for s in ("train", "test", "all"))
    assert len(everything) >= 10 and not set(train) & set(test) and set(train) | set(test) == set(everything)
    for pixels in everything.values():
        assert pixels.dtype == np.float32 and pixels.ndim == 3 and pixels.shape[2] == 3
        assert pixels.min() >= 0 and pixels.max() <= 1 and min(pixels.shape[:2]) >= 128
    with pytest.raises(ValueError, match="split"):
        load_photos("validation")


def test_sample_patches_are_the_crops_at_the_returned_offsets():
    photos = [pixels for _, pixels in load_photos("test")]
    patches, source, top, left = sample_patches(photos, 16, 50, generator=3)
    assert patches.shape == (50, 3, 16, 16) and source.dtype == torch.int64
    for k in range(50):
        crop = photos[source[k]][top[k] : top[k] + 16, left[k] : left[k] + 16]
        assert torch.equal(patches[k], torch.from_numpy(crop).permute(2, 0, 1))
    assert len(set(source.tolist())) > 1


def test_sample_patches_are_deterministic_by_seed_and_accept_a_tensor():
    images = torch.rand(3, 1, 20, 30)
    first = sample_patches(images, 5, 10, generator=torch.Generator().manual_seed(1))
    again = sample_patches(images, 5, 10, generator=1)
    other = sample_patches(images, 5, 10, generator=2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first.patches, other.patches)
    assert int(first.top.max()) <= 15 and int(first.left.max()) <= 25


def test_sample_patches_errors():
    images = torch.rand(2, 3, 20, 30)
    with pytest.raises(ValueError, match="larger than image"):
        sample_patches(images, 21, 4, generator=0)
    with pytest.raises(ValueError, match="'n'"):
        sample_patches(images, 4, 0, generator=0)


def test_photos_dataset_whole_photos():
    dataset = load_dataset("photos", "test", size=64)
    names = [name for name, _ in load_photos("test")]
    assert dataset.images.shape == (len(names), 3, 64, 64) and dataset.classes == names
    assert dataset.labels.tolist() == list(range(len(names)))


def test_photos_dataset_patches_match_their_source():
    dataset = load_dataset("photos", "train", patch_size=24, n_patches=30, seed=5)
    photos = [pixels for _, pixels in load_photos("train")]
    assert dataset.images.shape == (30, 3, 24, 24) and dataset.levels == 256
    for k in (0, 17, 29):
        top, left = int(dataset.attributes["top"][k]), int(dataset.attributes["left"][k])
        crop = photos[dataset.labels[k]][top : top + 24, left : left + 24]
        assert torch.equal(dataset.images[k], torch.from_numpy(crop).permute(2, 0, 1))
    again = load_dataset("photos", "train", patch_size=24, n_patches=30, seed=5)
    assert torch.equal(again.images, dataset.images)
    assert not torch.equal(load_dataset("photos", "train", patch_size=24, n_patches=30, seed=6).images, dataset.images)


def test_photos_dataset_luminance_and_resized_patches():
    color = load_dataset("photos", "test", patch_size=16, n_patches=8, seed=0)
    gray = load_dataset("photos", "test", patch_size=16, n_patches=8, seed=0, channels=1)
    luma = (color.images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert gray.images.shape == (8, 1, 16, 16) and torch.allclose(gray.images, luma, atol=1e-6)
    small = load_dataset("photos", "test", patch_size=16, n_patches=8, size=8)
    assert small.images.shape == (8, 3, 8, 8) and small.levels is None


# ---------------------------------------------------------------- objects3d


@pytest.fixture(scope="module")
def renders():
    return {shape: render_object(shape, 30, 20) for shape in OBJECT_SHAPES}


def test_object_shapes_are_at_least_six_and_all_render(renders):
    assert len(OBJECT_SHAPES) >= 6
    for shape, image in renders.items():
        assert image.shape == (1, 32, 32) and image.dtype == torch.float32
        assert image.min() >= 0 and image.max() <= 1
        covered = (image > 0.05).float().mean()
        assert 0.1 < covered < 0.9, shape
        assert len(torch.unique((image * 20).round())) > 4, f"{shape} should show several shades"


def test_object_shapes_differ_from_each_other(renders):
    for a, b in itertools.combinations(OBJECT_SHAPES, 2):
        assert (renders[a] - renders[b]).abs().mean() > 0.02, (a, b)


@pytest.mark.parametrize("shape", OBJECT_SHAPES)
def test_azimuth_changes_the_image(shape):
    assert (render_object(shape, 30, 20) - render_object(shape, 120, 20)).abs().mean() > 0.01


def test_render_object_is_deterministic_and_has_options():
    assert torch.equal(render_object("torus", 10, 5, size=48), render_object("torus", 10, 5, size=48))
    color = render_object("cube", 45, 30, size=64, channels=3, color=(1.0, 0.0, 0.0))
    assert color.shape == (3, 64, 64) and color[1:].max() == 0 and color[0].max() > 0.5


def test_render_object_errors():
    with pytest.raises(ValueError, match="unknown shape 'blob'.*cube"):
        render_object("blob", 0, 0)
    with pytest.raises(ValueError, match="elevation"):
        render_object("cube", 0, 90)
    with pytest.raises(ValueError, match="channels"):
        render_object("cube", 0, 0, channels=2)


def test_objects3d_dataset_labels_and_attributes():
    dataset = load_dataset("objects3d", "train", n=40, seed=1, azimuth_range=(10, 50), elevation_range=(0, 30))
    assert dataset.images.shape == (40, 1, 32, 32) and dataset.classes == list(OBJECT_SHAPES)
    azimuth, elevation = dataset.attributes["azimuth"], dataset.attributes["elevation"]
    assert len(azimuth) == len(elevation) == 40 and azimuth.dtype == torch.float32
    assert 10 <= azimuth.min() and azimuth.max() <= 50 and 0 <= elevation.min() and elevation.max() <= 30
    k = 7
    expected = render_object(dataset.classes[dataset.labels[k]], float(azimuth[k]), float(elevation[k]))
    assert torch.allclose(dataset.images[k], expected, atol=1e-4)  # float32 attributes vs float64 angles


def test_objects3d_dataset_is_deterministic_with_independent_splits():
    train = load_dataset("objects3d", "train", n=12, seed=3, size=16)
    assert torch.equal(train.images, load_dataset("objects3d", "train", n=12, seed=3, size=16).images)
    test = load_dataset("objects3d", "test", n=12, seed=3, size=16)
    assert not torch.equal(train.attributes["azimuth"], test.attributes["azimuth"])
    assert len(load_dataset("objects3d", "test", size=8)) == 500


def test_objects3d_dataset_shape_subset_and_unknown_shape():
    dataset = load_dataset("objects3d", n=10, shapes=["torus", "cube"], channels=3)
    assert dataset.classes == ["torus", "cube"] and dataset.images.shape[1] == 3
    with pytest.raises(ValueError, match="blob.*octahedron"):
        load_dataset("objects3d", shapes=["cube", "blob"])


# ---------------------------------------------------------------- online datasets


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_online_dataset_offline_error_is_one_plain_sentence(name, tmp_path, no_network):
    with pytest.raises(DatasetUnavailableError) as error:
        load_dataset(name, root=tmp_path)
    message = str(error.value)
    assert isinstance(error.value, RuntimeError)
    assert f"'{name}'" in message and str(tmp_path) in message and "digits" in message
    assert "\n" not in message and message.endswith(".") and message.startswith("Could not download")
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_online_root_comes_from_the_environment(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("AIGC_LAB_DATA", str(tmp_path / "from-env"))
    with pytest.raises(DatasetUnavailableError, match="from-env"):
        load_dataset("mnist", "test")


def write_idx(path, array: np.ndarray) -> None:
    """The MNIST file format: a big-endian magic number (0x08 = unsigned byte, then ndim), the sizes, the bytes."""
    path.write_bytes(struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


def write_fake_mnist(folder, n_train: int = 20, n_test: int = 10) -> dict:
    raw = folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        data[prefix] = images, labels
    return data


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_files_on_disk_load_without_network(name, folder, tmp_path, no_network):
    data = write_fake_mnist(tmp_path / folder)
    dataset = load_dataset(name, "train", root=tmp_path)
    images, labels = data["train"]
    assert dataset.images.shape == (20, 1, 28, 28) and dataset.levels == 256
    assert torch.equal(dataset.to_levels()[:, 0], torch.from_numpy(images).long())
    assert dataset.labels.tolist() == labels.tolist() and len(dataset.classes) == 10
    test = load_dataset(name, "test", root=tmp_path, limit=4, size=14)
    assert test.images.shape == (4, 1, 14, 14) and test.levels is None
    assert test.labels.tolist() == data["t10k"][1][:4].tolist()


def test_cifar10_files_on_disk_load_without_network(tmp_path, monkeypatch, no_network):
    # torchvision checks each CIFAR file's md5, so point it at the fake files' md5s; the reading is torchvision's own.
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(6, 3 * 32 * 32), dtype=np.uint8)  # rows: R plane, G plane, B plane
    labels = [3, 1, 4, 1, 5, 9]
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    md5 = {}
    for file, content in (("data_batch_1", {"data": pixels, "labels": labels}), ("test_batch", {"data": pixels[:2], "labels": labels[:2]}),
                          ("batches.meta", {"label_names": names})):  # fmt: skip
        (folder / file).write_bytes(pickle.dumps(content))
        md5[file] = hashlib.md5((folder / file).read_bytes()).hexdigest()
    from torchvision.datasets import CIFAR10 as cifar  # noqa: N813
    monkeypatch.setattr(cifar, "train_list", [["data_batch_1", md5["data_batch_1"]]])
    monkeypatch.setattr(cifar, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(cifar, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]})
    dataset = load_dataset("cifar10", "train", root=tmp_path)
    assert dataset.images.shape == (6, 3, 32, 32) and dataset.classes == names and dataset.labels.tolist() == labels
    assert torch.equal(dataset.to_levels(), torch.from_numpy(pixels).long().view(6, 3, 32, 32))
    assert len(load_dataset("cifar10", "test", root=tmp_path)) == 2


# ---------------------------------------------------------------- folder


def save_image(path, color, size=(20, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_folder_with_class_subfolders(tmp_path):
    save_image(tmp_path / "cats" / "a.png", (255, 0, 0))
    save_image(tmp_path / "dogs" / "b.jpg", (0, 0, 255))
    save_image(tmp_path / "dogs" / "nested" / "c.PNG", (0, 255, 0))
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    dataset = load_dataset(f"folder:{tmp_path}", "all", size=16)
    assert dataset.classes == ["cats", "dogs"] and dataset.class_counts() == {"cats": 1, "dogs": 2}
    assert dataset.images.shape == (3, 3, 16, 16) and dataset.levels is None
    assert torch.allclose(dataset.images[0], torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand(3, 16, 16))


def test_flat_folder_gray_and_unresized(tmp_path):
    for k in range(3):
        save_image(tmp_path / f"img{k}.bmp", 40 * k, size=(8, 8), mode="L")
    dataset = load_dataset(f"folder:{tmp_path}", "all", size=8, channels=1)
    assert dataset.classes == ["images"] and dataset.images.shape == (3, 1, 8, 8) and dataset.levels == 256
    assert dataset.to_levels()[:, 0, 0, 0].tolist() == [0, 40, 80]


def test_folder_train_test_split_is_deterministic_and_disjoint(tmp_path):
    for k in range(30):
        save_image(tmp_path / f"{k:02d}.png", (k, k, k), size=(4, 4))
    options = {"size": 4, "test_fraction": 0.3}
    train, test = (load_dataset(f"folder:{tmp_path}", split, **options) for split in ("train", "test"))
    assert len(train) + len(test) == 30 and 0 < len(test) < 30
    values = lambda d: set(d.to_levels()[:, 0, 0, 0].tolist())  # noqa: E731
    assert not values(train) & values(test)
    assert torch.equal(load_dataset(f"folder:{tmp_path}", "test", **options).images, test.images)
    with pytest.raises(ValueError, match="test_fraction"):
        load_dataset(f"folder:{tmp_path}", "test", size=4)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_dataset(f"folder:{tmp_path / 'missing'}", "all")
    (tmp_path / "file.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a folder"):
        load_dataset(f"folder:{tmp_path / 'file.png'}", "all")
    with pytest.raises(ValueError, match=r"could not read image .*file\.png"):
        load_dataset(f"folder:{tmp_path}", "all")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no images found .*\.png, \.jpg"):
        load_dataset(f"folder:{empty}", "all")
    save_image(tmp_path / "class_a" / "x.png", (0, 0, 0))
    with pytest.raises(ValueError, match="both directly inside it"):
        load_dataset(f"folder:{tmp_path}", "all")
    with pytest.raises(ValueError, match="test_fraction"):
        load_dataset(f"folder:{tmp_path}", "all", test_fraction=1.5)
