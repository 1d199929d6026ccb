import pytest
import torch

from aigc_lab.metrics import nearest_neighbor_distance, nearest_neighbors, pixel_diversity

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pixel_diversity_by_hand():
    same = torch.full((5, 1, 2, 2), 0.3)
    assert pixel_diversity(same) == pytest.approx(0.0)
    two = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    assert pixel_diversity(two) == pytest.approx(torch.tensor([0.0, 1.0]).std().item())
    with pytest.raises(ValueError, match="at least 2"):
        pixel_diversity(same[:1])


def test_nearest_neighbor_distance_by_hand():
    reference = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    images = torch.stack([torch.full((1, 2, 2), 0.25), torch.ones(1, 2, 2)])
    d = nearest_neighbor_distance(images, reference, batch_size=1)
    assert d.tolist() == pytest.approx([0.25, 0.0])
    _, index = nearest_neighbors(images, reference)
    assert index.tolist() == [0, 1]


def test_nearest_neighbor_distance_checks_shapes():
    with pytest.raises(ValueError, match="same C x H x W"):
        nearest_neighbor_distance(torch.rand(2, 1, 2, 2), torch.rand(2, 1, 3, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nearest_neighbor_distance(torch.rand(2, 1, 2, 2) - 1, torch.rand(2, 1, 2, 2))


# ---------------------------------------------------------------- chapter 3: likelihood units and Frechet distance

import math  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402

from aigc_lab import metrics  # noqa: E402
from aigc_lab.metrics import (  # noqa: E402
    bits_per_dim,
    class_coverage,
    classifier_accuracy,
    feature_classifier,
    frechet_distance,
    frechet_distance_from_features,
    frechet_distance_to_test,
    nats_per_image,
    real_vs_real_frechet,
)


def test_bits_per_dim_by_hand():
    assert bits_per_dim(64 * math.log(2), 64) == pytest.approx(1.0)
    assert bits_per_dim(86.3, 64) == pytest.approx(86.3 / 64 / 0.6931471805599453)
    assert nats_per_image(1.0, 64) == pytest.approx(64 * math.log(2))
    assert nats_per_image(bits_per_dim(95.0, 64), 64) == pytest.approx(95.0)
    with pytest.raises(ValueError, match="dims"):
        bits_per_dim(1.0, 0)


def _frechet_with_scipy(a: np.ndarray, b: np.ndarray) -> float:
    """The reference formula, written the way pytorch-fid does, with scipy.linalg.sqrtm."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(loc=0.5, size=(150, 6)) @ rng.normal(size=(6, 6))
    got = frechet_distance_from_features(torch.from_numpy(a), torch.from_numpy(b).float())
    assert got == pytest.approx(_frechet_with_scipy(a, b), rel=1e-5)


def _with_moments(x: torch.Tensor, mean: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """Rows whose sample mean and unbiased sample covariance are exactly ``mean`` and ``diag(variances)``."""
    x = x.double() - x.double().mean(0)
    whitened = x @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(x.T))).T
    return whitened * variances.sqrt() + mean


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    g = torch.Generator().manual_seed(0)
    mu_a, var_a = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)
    mu_b, var_b = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), torch.tensor([4.0, 1.0, 1.0], dtype=torch.float64)
    a = _with_moments(torch.randn(50, 3, generator=g), mu_a, var_a)
    b = _with_moments(torch.randn(80, 3, generator=g), mu_b, var_b)
    # ||mu_a - mu_b||^2 + sum_d (sqrt(var_a) - sqrt(var_b))^2 = (1 + 0 + 4) + (1 + 1 + 4)
    assert frechet_distance_from_features(a, b) == pytest.approx(11.0, rel=1e-9)


def test_frechet_distance_symmetric_zero_for_identical_and_finite_when_singular():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(40, 8, generator=g), torch.randn(30, 8, generator=g) * 2
    assert frechet_distance_from_features(a, b) == pytest.approx(frechet_distance_from_features(b, a), rel=1e-9)
    assert frechet_distance_from_features(a, a) == pytest.approx(0.0, abs=1e-9)
    # More features than rows, and a feature that never changes (a dead ReLU): singular covariances.
    wide = torch.randn(5, 20, generator=g).clamp_min(0)
    wide[:, 0] = 0
    d = frechet_distance_from_features(wide, torch.randn(6, 20, generator=g).clamp_min(0))
    assert math.isfinite(d) and d > 0
    assert frechet_distance_from_features(wide, wide) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_checks_its_inputs():
    with pytest.raises(ValueError, match="must match"):
        frechet_distance_from_features(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="at least 2 rows"):
        frechet_distance_from_features(torch.randn(1, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="N x D"):
        frechet_distance_from_features(torch.randn(5), torch.randn(5, 3))


# ---------------------------------------------------------------- the feature classifier


@pytest.fixture(scope="module")
def digits():
    from aigc_lab.data import load_dataset

    return {split: load_dataset("digits", split) for split in ("train", "val", "test")}


@pytest.fixture(scope="module")
def trained_classifier(tmp_path_factory):
    """The real recipe, trained once for this module (about 10 s on one core)."""
    return feature_classifier("digits", cache_dir=tmp_path_factory.mktemp("classifiers"))


@pytest.fixture
def quick_recipe(monkeypatch):
    """A few training steps: enough to test caching and determinism, not accuracy."""
    monkeypatch.setitem(metrics.CLASSIFIER_RECIPE, "steps", 3)


def test_feature_classifier_is_accurate_and_its_measures_agree(trained_classifier, digits):
    clf = trained_classifier
    assert clf.held_out_split == "val" and clf.held_out_accuracy > 0.97
    val = digits["val"]
    assert classifier_accuracy(val.images, val.labels, classifier=clf) == pytest.approx(clf.held_out_accuracy)
    assert clf.features(val.images).shape == (350, metrics.CLASSIFIER_RECIPE["features"])
    probabilities = clf.probabilities(val.images[:7])
    assert probabilities.shape == (7, 10) and torch.allclose(probabilities.sum(1), torch.ones(7))
    assert torch.equal(clf.predict(val.images[:7]), probabilities.argmax(1))

    coverage = class_coverage(digits["test"].images, classifier=clf)
    assert coverage["classes_covered"] == 10 and sum(coverage["shares"]) == pytest.approx(1.0)
    assert 0.95 * math.log(10) < coverage["entropy_nats"] <= coverage["max_entropy_nats"] == pytest.approx(math.log(10))
    collapsed = class_coverage(digits["test"].images[digits["test"].labels == 3], classifier=clf)
    assert collapsed["entropy_nats"] < 0.25 * math.log(10) and max(collapsed["shares"]) > 0.8


def test_frechet_floor_is_below_a_blurred_copy(trained_classifier, digits):
    floor = real_vs_real_frechet("digits", classifier=trained_classifier)
    assert floor == pytest.approx(frechet_distance(digits["train"].images, digits["test"].images, classifier=trained_classifier))
    blurred = torch.nn.functional.avg_pool2d(digits["train"].images, 3, stride=1, padding=1)
    assert frechet_distance_to_test(blurred, classifier=trained_classifier) > 2 * floor
    with pytest.raises(ValueError, match="n must be"):
        real_vs_real_frechet("digits", 5000, classifier=trained_classifier)


def test_feature_classifier_checks_images(trained_classifier):
    with pytest.raises(ValueError, match="8 x 8"):
        trained_classifier.features(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="1 channel"):
        trained_classifier.features(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        trained_classifier.predict(torch.rand(2, 1, 8, 8) * 2 - 1)
    with pytest.raises(ValueError, match="empty"):
        trained_classifier.features(torch.rand(0, 1, 8, 8))


def test_feature_classifier_is_cached_and_deterministic(quick_recipe, tmp_path, monkeypatch):
    before = torch.get_rng_state()
    first = feature_classifier("digits", cache_dir=tmp_path / "a")
    assert torch.equal(torch.get_rng_state(), before)  # training uses its own random stream
    files = list((tmp_path / "a").glob("digits-*.pt"))
    assert [first.cache_path] == files
    second = feature_classifier("digits", cache_dir=tmp_path / "b")
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been loaded")

    monkeypatch.setattr(metrics, "_train_classifier", no_training)
    loaded = feature_classifier("digits", cache_dir=tmp_path / "a")
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.features(x), first.features(x))
    assert loaded.held_out_accuracy == first.held_out_accuracy

    monkeypatch.setenv(metrics.CACHE_ENV, str(tmp_path / "env"))
    assert metrics.classifier_cache_dir() == tmp_path / "env" / "classifiers"
    assert metrics.classifier_cache_dir(tmp_path / "x") == tmp_path / "x"


def test_feature_classifier_retrains_a_corrupt_or_outdated_cache(quick_recipe, tmp_path, monkeypatch):
    path = feature_classifier("digits", cache_dir=tmp_path).cache_path
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unusable"):
        feature_classifier("digits", cache_dir=tmp_path)
    monkeypatch.setitem(metrics.CLASSIFIER_RECIPE, "features", 32)
    with pytest.warns(UserWarning, match="another version"):
        clf = feature_classifier("digits", cache_dir=tmp_path)
    assert clf.features(torch.rand(2, 1, 8, 8)).shape == (2, 32)
    assert feature_classifier("digits", cache_dir=tmp_path).cache_path == path  # replaced in place, loads again


def test_feature_classifier_is_generic_over_datasets(quick_recipe, tmp_path):
    clf = feature_classifier("objects3d", size=8, n=20, cache_dir=tmp_path)
    assert clf.held_out_split == "test"  # objects3d has no val split
    assert clf.num_classes == 8 and clf.options == {"size": 8, "n": 20}
    other = feature_classifier("objects3d", size=8, n=24, cache_dir=tmp_path)
    assert other.cache_path != clf.cache_path  # the options are part of the cache key
    assert clf.features(torch.rand(3, 1, 8, 8)).shape == (3, metrics.CLASSIFIER_RECIPE["features"])


def test_classifier_accuracy_checks_labels(trained_classifier):
    with pytest.raises(ValueError, match="labels"):
        classifier_accuracy(torch.rand(3, 1, 8, 8), torch.zeros(2, dtype=torch.long), classifier=trained_classifier)


def test_larger_images_get_the_deeper_recipe_and_steps_are_part_of_the_key(tmp_path):
    assert metrics.classifier_recipe((1, 8, 8)) is metrics.CLASSIFIER_RECIPE
    assert metrics.classifier_recipe((3, 16, 16)) is metrics.LARGE_CLASSIFIER_RECIPE
    clf = feature_classifier("shapes", size=16, n=40, steps=2, cache_dir=tmp_path)
    convolutions = [m for m in clf.body if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convolutions] == metrics.LARGE_CLASSIFIER_RECIPE["conv_channels"]
    assert clf.features(torch.rand(2, 3, 16, 16)).shape == (2, metrics.LARGE_CLASSIFIER_RECIPE["features"])
    other = feature_classifier("shapes", size=16, n=40, steps=3, cache_dir=tmp_path)
    assert other.cache_path != clf.cache_path
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        feature_classifier("shapes", size=16, steps=0, cache_dir=tmp_path)


def test_frechet_distance_per_class_rewards_spread_not_prototypes(trained_classifier, digits):
    from aigc_lab.metrics import frechet_distance_per_class

    train = digits["train"]
    real = frechet_distance_per_class(train.images, train.labels, classifier=trained_classifier)
    assert set(real) == {str(k) for k in range(10)} | {"mean"}
    # one prototype per class (the class mean, repeated): perfectly "accurate", no spread
    prototypes = torch.stack([train.images[train.labels == k].mean(0) for k in range(10)])
    labels = torch.arange(10).repeat_interleave(50)
    copies = prototypes.repeat_interleave(50, dim=0) + 1e-3 * torch.rand(500, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    collapsed = frechet_distance_per_class(copies.clamp(0, 1), labels, classifier=trained_classifier)
    assert collapsed["mean"] > 2 * real["mean"]
    with pytest.raises(ValueError, match="labels must lie in"):
        frechet_distance_per_class(train.images[:3], torch.tensor([0, 1, 10]), classifier=trained_classifier)


def test_within_class_diversity_is_the_mean_of_per_class_pixel_std(digits):
    from aigc_lab.metrics import pixel_diversity, within_class_diversity

    train = digits["train"]
    expected = sum(pixel_diversity(train.images[train.labels == k]) for k in range(10)) / 10
    assert within_class_diversity(train.images, train.labels) == pytest.approx(expected)
    # within a class there is less spread than across classes
    assert within_class_diversity(train.images, train.labels) < pixel_diversity(train.images)
    # one image per class, repeated: no spread at all
    prototypes = torch.stack([train.images[train.labels == k][0] for k in range(10)]).repeat(5, 1, 1, 1)
    assert within_class_diversity(prototypes, torch.arange(10).repeat(5)) == 0.0
    # a class with a single image is left out; none with two is an error
    assert within_class_diversity(prototypes[:11], torch.arange(11) % 10, num_classes=10) == 0.0
    with pytest.raises(ValueError, match="at least two images"):
        within_class_diversity(train.images[:3], torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        within_class_diversity(train.images[:3], torch.tensor([0.0, 1.0, 2.0]))
