"""Chapter 4's shared recipes: one definition per model, trained once, measured the same way."""

import pytest
import torch

from aigc_lab import recipes
from aigc_lab.metrics import feature_classifier
from aigc_lab.recipes import CONDITIONAL_RECIPES, build_recipe_model, measure_conditional, recipe_data, train_recipe

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory):
    return feature_classifier("digits", cache_dir=tmp_path_factory.mktemp("classifiers"), steps=200)


def test_every_recipe_builds_a_conditional_model_sized_for_its_data():
    for name, recipe in CONDITIONAL_RECIPES.items():
        model = build_recipe_model(name)
        train = recipe_data(name)
        assert model.num_classes == len(train.classes), name
        assert tuple(model.hparams["image_shape"]) == tuple(train.images.shape[1:]), name
        assert name.startswith(recipe.data)
    assert len(recipe_data("shapes-cvae").classes) == 30 and recipe_data("shapes-cvae").images.shape[-1] == 16


def test_chapter_3_recipes_are_each_familys_unconditional_defaults():
    from aigc_lab.models import MODELS

    assert set(recipes.UNCONDITIONAL_RECIPES) == {"vae", "row-rnn", "pixelcnn", "dcgan", "wgan-gp", "ddpm"}
    assert set(recipes.RECIPES) == set(recipes.UNCONDITIONAL_RECIPES) | set(CONDITIONAL_RECIPES)
    for name, recipe in recipes.UNCONDITIONAL_RECIPES.items():
        model = build_recipe_model(name)
        assert recipe.steps == MODELS[recipe.model].default_steps, name  # what `train MODEL` would train
        assert getattr(model, "num_classes", 0) == 0, name
        assert tuple(model.hparams["image_shape"]) == (1, 8, 8), name
    assert build_recipe_model("wgan-gp").hparams["constraint"] == "gp"


def test_a_finished_run_is_loaded_not_trained_again(tmp_path):
    model, history = train_recipe("digits-cgan-projection", tmp_path, steps=3)
    assert history.steps == 3 and (tmp_path / "digits-cgan-projection" / "checkpoint.pt").is_file()
    again, history_again = train_recipe("digits-cgan-projection", tmp_path, steps=3)
    assert history_again.train_seconds == pytest.approx(history.train_seconds)  # no new training time
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not again.training


def test_measure_conditional_reports_what_the_tables_show(tmp_path, digits_classifier):
    model, _ = train_recipe("digits-cgan-concat", tmp_path, steps=2)
    m = measure_conditional(model, "digits-cgan-concat", per_class=5, classifier=digits_classifier)
    assert m["images"].shape == (50, 1, 8, 8) and torch.equal(m["labels"], torch.arange(10).repeat(5))
    assert 0 <= m["accuracy"] <= 1 and m["fd_per_class"] > 0 and m["sample_s_per_1000"] > 0
    assert 0 <= m["diversity"] and 0 < m["real_diversity"] < 0.5
    assert "shape_accuracy" not in m
    # the same seed draws the same samples
    again = measure_conditional(model, "digits-cgan-concat", per_class=5, classifier=digits_classifier)
    assert torch.equal(again["images"], m["images"])


def test_shapes_measures_split_shape_and_colour(tmp_path, monkeypatch):
    model, _ = train_recipe("shapes-cvae", tmp_path, steps=2)
    test = recipe_data("shapes-cvae", "test")

    class Oracle:  # predicts the class asked for, with the colour always wrong: shape right, colour wrong
        num_classes = 30

        def predict(self, images):
            return (Oracle.asked // 6) * 6 + (Oracle.asked % 6 + 1) % 6

        def features(self, images, name=None):
            return images.flatten(1)[:, :8].double()

    Oracle.asked = torch.arange(30).repeat(2)
    m = measure_conditional(model, "shapes-cvae", per_class=2, classifier=Oracle())
    assert m["shape_accuracy"] == 1.0 and m["colour_accuracy"] == 0.0 and m["accuracy"] == 0.0
    assert m["label_accuracy"] == [0.0] * 30 and m["worst_label_accuracy"] == 0.0
    assert len(test.classes) == 30


def test_label_accuracy_is_per_label_and_its_minimum(tmp_path):
    model, _ = train_recipe("shapes-cvae", tmp_path, steps=2)

    class RightExceptClassThree:  # right for every label but 3, and right for 3 one time in two
        num_classes = 30

        def predict(self, images):
            predicted = RightExceptClassThree.asked.clone()
            three = torch.nonzero(predicted == 3)[:, 0]
            predicted[three[::2]] = 4
            return predicted

        def features(self, images, name=None):
            return images.flatten(1)[:, :8].double()

    RightExceptClassThree.asked = torch.arange(30).repeat(4)
    m = measure_conditional(model, "shapes-cvae", per_class=4, classifier=RightExceptClassThree())
    assert m["label_accuracy"][3] == 0.5 and m["worst_label_accuracy"] == 0.5
    assert all(a == 1.0 for c, a in enumerate(m["label_accuracy"]) if c != 3)
    assert m["accuracy"] == pytest.approx(1 - 2 / 120)


def test_unknown_names_are_explained():
    with pytest.raises(ValueError, match="unknown recipe 'digits-gan'; known recipes: vae, row-rnn, .*digits-cgan-concat"):
        train_recipe("digits-gan", "runs")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        recipes.dataset_classifier("mnist")


def test_train_recipes_trains_in_processes_of_their_own_then_loads(tmp_path):
    seconds = recipes.train_recipes(["digits-cgan-concat", "dcgan"], tmp_path, workers=2, steps=2)
    assert set(seconds) == {"digits-cgan-concat", "dcgan"} and all(s > 0 for s in seconds.values())
    for name in seconds:
        assert (tmp_path / name / "checkpoint.pt").is_file()
    again = recipes.train_recipes(["digits-cgan-concat", "dcgan"], tmp_path, steps=2)
    assert again == {"digits-cgan-concat": 0.0, "dcgan": 0.0}, "complete runs are not trained again"
    model, history = train_recipe("dcgan", tmp_path, steps=2)
    assert history.steps == 2 and not model.training
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        recipes.train_recipes(["dcgan", "nope"], tmp_path)


class _Oracle:
    """A "model" that answers every label with real test digits of that label."""

    num_classes = 10

    def __init__(self):
        test = recipe_data("digits-cgan-concat", "test")
        self.by_label = [test.images[test.labels == c] for c in range(10)]

    def sample(self, n, labels, generator=None):
        seen = [0] * 10
        images = []
        for y in labels.tolist():
            images.append(self.by_label[y][seen[y]])
            seen[y] += 1
        return torch.stack(images)


def test_label_accuracy_is_the_classifiers_verdict_on_samples_of_every_label(monkeypatch, digits_classifier):
    from aigc_lab.metrics import classifier_accuracy

    monkeypatch.setattr(recipes, "dataset_classifier", lambda name: digits_classifier)
    oracle = _Oracle()
    labels = torch.arange(10).repeat(4)
    expected = classifier_accuracy(oracle.sample(40, labels), labels, classifier=digits_classifier)
    assert recipes.label_accuracy(oracle, "digits-cgan-concat", per_class=4) == pytest.approx(expected)
    assert expected > 0.5  # real digits: the classifier's held-out accuracy, not chance
    with pytest.raises(ValueError, match="per_class must be >= 1"):
        recipes.label_accuracy(oracle, "shapes-cvae")  # a recipe without eval_per_class needs one


def test_the_curve_during_training_survives_a_run_trained_in_another_process(tmp_path):
    assert CONDITIONAL_RECIPES["digits-cgan-projection"].eval_per_class > 0
    assert CONDITIONAL_RECIPES["shapes-cvae"].eval_per_class == 0
    recipes.train_recipes(["digits-cgan-projection"], tmp_path, steps=3)
    _, history = train_recipe("digits-cgan-projection", tmp_path, steps=3)  # loaded, not trained
    steps, values = history.scalars["eval/accuracy"]
    assert steps == [3] and 0 <= values[0] <= 1  # measured at the end (every 250 steps: not before)
