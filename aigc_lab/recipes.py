"""Every trained model of the book by name: the settings it is trained with, in one place.

Several pages train the same model on the same data (chapter 4's sections, and its closing
comparison, which measures them all side by side; chapter 3's models, which section 3.5 compares).
Each page calls :func:`train_recipe` with a name from :data:`RECIPES`
(``python -m aigc_lab train --recipe NAME`` does the same from a terminal, and ``python -m aigc_lab
recipes`` lists them); the run directory is named after the recipe, and
:func:`aigc_lab.train.fit` resumes a finished run instead of training it again, so a model trained
on one page is loaded, not retrained, on the next, and each page still runs on its own.

A recipe is the model's name and settings, the training steps (full mode), the keyword
arguments its ``sample`` method is called with (for example the guidance scale), and what is
measured during training. The numbers of training steps were chosen so that each page that trains
them stays within five minutes on two CPU cores; :func:`train_recipes` trains independent recipes
side by side. Each page prints the wall-clock time its models took in the book's full-mode
execution, and ``tools/book_times.py`` lists every page's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigc_lab import runtime
from aigc_lab.data import load_dataset
from aigc_lab.models import build_model
from aigc_lab.train import History, TrainableModel, TrainConfig, fit

#: the data each recipe is trained on: dataset name and loader options
DATASETS: dict[str, dict[str, Any]] = {
    "digits": {"name": "digits"},
    "shapes": {"name": "shapes", "size": 16},
}


@dataclass(frozen=True)
class Recipe:
    """How one conditional model is trained and sampled in the book."""

    label: str  # how tables and figures name it
    data: str  # a key of DATASETS
    model: str  # a name in aigc_lab.models.MODELS
    hparams: dict[str, Any] = field(default_factory=dict)  # without image_shape and num_classes: the data sets them
    steps: int = 1500  # full mode
    quick_steps: int = 60  # AIGC_LAB_QUICK=1
    sample: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of model.sample
    quick_sample: dict[str, Any] = field(default_factory=dict)  # what quick mode changes in them
    conditional: bool = True  # conditioned on the data's labels (chapter 4) or not (chapter 3)
    batch_size: int = 64
    # Measured during training (the curves of section 4.1): the share of samples the dataset's
    # classifier reads as the asked-for label, on `eval_per_class` samples of every label, every
    # `eval_every` steps (20 in quick mode) and at the end; 0 samples: no measurement.
    eval_per_class: int = 0
    eval_every: int = 500

    def sample_options(self) -> dict[str, Any]:
        """The keyword arguments of ``model.sample`` in this mode (quick mode: e.g. fewer sampler steps)."""
        return {**self.sample, **runtime.budget({}, self.quick_sample)}


CONDITIONAL_RECIPES: dict[str, Recipe] = {
    # The source's L_cGAN with a gradient penalty, the label entering in three ways (section 4.1).
    "digits-cgan-concat": Recipe("cWGAN-GP, concat", "digits", "wgan", {"conditioning": "concat"}, 1500, eval_per_class=20, eval_every=250),
    "digits-cgan-embedding": Recipe("cWGAN-GP, embedding", "digits", "wgan", {"conditioning": "embedding"}, 1500, eval_per_class=20, eval_every=250),
    "digits-cgan-projection": Recipe("cWGAN-GP, projection", "digits", "wgan", {"conditioning": "projection"}, 1500, eval_per_class=20, eval_every=250),
    # The conditional VAE (section 4.3).
    "digits-cvae": Recipe("conditional VAE", "digits", "vae", {}, 4000, 200),
    # Classifier-free guided diffusion (section 4.4); the guidance scale is the sampler's.
    "digits-cfg": Recipe("CFG diffusion", "digits", "ddpm", {}, 1000, 60, {"method": "ddim", "steps": 20, "guidance": 1.0}, {"steps": 10}),
    # The same families on the 30 shape-and-colour classes at 16 x 16.
    "shapes-cgan-projection": Recipe(
        "cWGAN-GP, projection", "shapes", "wgan", {"conditioning": "projection"}, 400, 40, eval_per_class=10, eval_every=100
    ),
    # Section 4.2: the same with a critic that can see outlines (a full-resolution layer, a faster
    # learning rate: two time-scale updates, one critic step per generator step), AC-GAN's
    # classifier term, factored labels (class k embedded as e_shape(k // 6) + e_colour(k % 6) in
    # both networks, so each shape is learnt from all six colours) and the sampler keeping the best
    # of 8 candidates by the critic's classifier. Chosen on 300 samples after 2,000 steps, in short
    # runs outside the book (one thread each; "best of" on 1,020 samples). Without factored labels
    # (the generator's lr 5e-4): critic_lr 2e-3 and aux_weight 1 65%, aux_weight 3 72%, the lr too
    # 80% (the book measured 77.6% for that recipe before section 4.2 was cut to fit its budget),
    # aux_weight 5 74%. With factored labels: 83-85% in four runs, without the auxiliary classifier
    # 44%; a factored classifier head too 84%; the lrs decaying to 0 over the second half 85%;
    # 20,000 training images 85%; two critic layers at full resolution 81% (and 35% dearer steps); a
    # batch of 128 82% after 1,500 steps (more time than 2,000 of 64); lazy gradient penalty (every
    # 4th step, x4) 37% after 1,500. The generator's lr 1e-3: 84, 85 and 80% in three seeds; best
    # of 8: 92, 93 and 89% (three lr 5e-4 runs of the variants above: 88, 90 and 92%).
    "shapes-cgan-factored": Recipe(
        "cWGAN-GP + AC, factored, best of 8",
        "shapes",
        "wgan",
        {"conditioning": "projection", "aux_weight": 3.0, "d_full_res": 1, "critic_lr": 2e-3, "n_critic": 1, "lr": 1e-3, "label_factors": [5, 6]},
        1000,
        40,
        {"best_of": 8},
        eval_per_class=10,
        eval_every=200,
    ),
    # Section 4.3's first act: the digits' conditional VAE on the shapes. It draws blobs of the
    # right colour, shape right at chance (20%), at every length of training measured: 20.9% of
    # 1,020 samples after 4,000 steps, 20.6% after 1,500. Short runs outside the book (one thread
    # each, two at a time; 300 samples, 10 per class) changed the network or the loss and stayed at
    # the same level: the conv architecture 20.0%, conv with beta 0.5 20.7%, beta 0.1 24.3%, one
    # logistic component 21.0%, KL warm-up with free bits 20.0%, a Gaussian likelihood 20.0%, labels
    # factored 20.0%, a spatial VAE (the decoder turned by an angle the encoder reports) 21.3%; beta
    # 0.03 diverged. So the page trains it for 400 steps, enough to show the failure.
    "shapes-cvae-plain": Recipe("conditional VAE, plain decoder", "shapes", "vae", {"levels": 256}, 400, 20),
    # Section 4.3's second act: the rotation summed out (aigc_lab.models.rotation_vae.RotationVAE, K = 16
    # angles). Measured with tools/shapes_cvae.py on 1,020 samples after 800 steps: 85.3% right (one
    # thread, beside the plain VAE), 89.1% alone on two threads; with K = 8 61% and with the shift
    # scale 0.25 77% (300 samples).
    "shapes-cvae": Recipe("conditional VAE, rotation summed out", "shapes", "rotation-vae", {"levels": 256}, 800, 30),
    # Section 4.4. Short runs outside the book (as above; DDIM 20 steps, 300 samples; w = 1 and
    # w = 3): eps-prediction after 600 steps 35.3% and 48.3%; v-prediction 44.3% and 56.3%;
    # v-prediction after 1,000 steps 50.0% and 64.7%, but 320 s of training on two threads and 0.59 s
    # a step on one thread beside another run (over the page's budget); the same with a batch of
    # 32 for 1,500 steps 44.7% and 64.7% (471 s on one thread); half the channels
    # (base_channels 16) for 1,000 steps 45.7% and 59.0% (231 s on one thread beside another run,
    # and a quarter of the sampling time).
    "shapes-cfg": Recipe(
        "CFG diffusion", "shapes", "ddpm", {"prediction": "v", "base_channels": 16}, 1000, 30, {"method": "ddim", "steps": 20, "guidance": 1.0}, {"steps": 10}
    ),
}


#: Chapter 3's models: each family's defaults on the digits, for its default number of steps (the
#: sections train them with ``fit`` in the open, with these settings; section 3.5 loads their runs).
UNCONDITIONAL_RECIPES: dict[str, Recipe] = {
    "vae": Recipe("VAE", "digits", "vae", {}, 4000, 150, conditional=False),
    "row-rnn": Recipe("row-by-row RNN", "digits", "row-rnn", {}, 2000, 60, conditional=False),
    "pixelcnn": Recipe("PixelCNN", "digits", "pixelcnn", {}, 1200, 60, conditional=False),
    "dcgan": Recipe("DCGAN", "digits", "dcgan", {}, 3000, 60, conditional=False),
    "wgan-gp": Recipe("WGAN-GP (the source's objective)", "digits", "wgan", {"constraint": "gp"}, 2000, 60, conditional=False),
    "ddpm": Recipe("DDPM", "digits", "ddpm", {}, 1500, 60, conditional=False),
}

#: Every recipe of the book, chapter 3's and chapter 4's.
RECIPES: dict[str, Recipe] = {**UNCONDITIONAL_RECIPES, **CONDITIONAL_RECIPES}


def dataset_classifier(dataset: str):
    """The feature classifier that judges samples of ``dataset`` (a key of :data:`DATASETS`).

    :func:`aigc_lab.metrics.feature_classifier` with the dataset's options; in quick mode the
    shapes classifier trains for 200 steps instead of its recipe's 3,000 (a rougher judge, cached
    apart from the real one), so that a fresh machine runs the chapter's notebooks in minutes.
    """
    from aigc_lab.metrics import feature_classifier

    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; chapter 4 uses: {', '.join(DATASETS)}")
    spec = dict(DATASETS[dataset])
    name = spec.pop("name")
    steps = runtime.budget(None, 200) if name == "shapes" else None
    return feature_classifier(name, steps=steps, **spec)


def recipe_data(recipe: Recipe | str, split: str = "train"):
    """The dataset a recipe trains on (``split="train"``) or is measured against."""
    recipe = _recipe(recipe)
    spec = dict(DATASETS[recipe.data])
    return load_dataset(spec.pop("name"), split, **spec)


def build_recipe_model(recipe: Recipe | str) -> TrainableModel:
    """The recipe's model, untrained, sized for its data (image shape and number of classes)."""
    recipe = _recipe(recipe)
    return _build(recipe, recipe_data(recipe))


def _build(recipe: Recipe, train) -> TrainableModel:
    classes = {"num_classes": len(train.classes)} if recipe.conditional else {}
    return build_model(recipe.model, image_shape=tuple(train.images.shape[1:]), **classes, **recipe.hparams)


def train_recipe(
    name: str,
    runs_dir: str | os.PathLike,
    *,
    seed: int = 0,
    steps: int | None = None,
    device: str | None = None,
) -> tuple[TrainableModel, History]:
    """Train the recipe ``name`` into ``runs_dir/name`` (or load it, when a finished run is there).

    ``steps`` defaults to the recipe's full or quick number (:func:`aigc_lab.runtime.budget`).
    A recipe with ``eval_per_class`` is measured during training by :func:`label_accuracy`
    (logged as ``eval/accuracy``), so its curve is the same whether a page or the command line
    (:func:`train_recipes`) trained it.
    Returns the model, in eval mode, and the :class:`~aigc_lab.train.History` of its run, whose
    ``train_seconds`` is the time the training took when it ran.
    """
    recipe = _recipe(name)
    steps = runtime.budget(recipe.steps, recipe.quick_steps) if steps is None else steps
    import torch

    train = recipe_data(recipe)  # loaded once: it sizes the model and is trained on
    torch.manual_seed(seed)
    model = _build(recipe, train)
    measured = recipe.eval_per_class > 0
    history = fit(
        model,
        train,
        Path(runs_dir) / name,
        TrainConfig(
            steps=steps, batch_size=recipe.batch_size, seed=seed, checkpoint_every=500, eval_every=runtime.budget(recipe.eval_every, 20) if measured else 0
        ),
        data_spec=dict(DATASETS[recipe.data]),
        eval_fn=(lambda m: {"accuracy": label_accuracy(m, recipe)}) if measured else None,
        device=device,
    )
    return model.eval(), history


def label_accuracy(model: TrainableModel, recipe: Recipe | str, per_class: int | None = None, seed: int = 0) -> float:
    """The share of ``per_class`` samples of every label that the dataset's classifier reads as that label.

    The measurement during training of the recipes with ``eval_per_class`` (its default): the
    model's plain sampler (without the recipe's options, e.g. no best-of-k: the generator alone),
    with a fixed seed, so that every point of a curve samples the same noise. :func:`measure_conditional` is the full measurement, after training.
    """
    import torch

    from aigc_lab.metrics import classifier_accuracy

    recipe = _recipe(recipe)
    per_class = per_class or recipe.eval_per_class
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    labels = torch.arange(model.num_classes).repeat(per_class)
    with torch.no_grad():
        images = model.sample(len(labels), labels=labels, generator=torch.Generator().manual_seed(seed))
    return classifier_accuracy(images.cpu(), labels, classifier=dataset_classifier(recipe.data))


def train_recipes(names: list[str], runs_dir: str | os.PathLike, *, workers: int = 2, steps: int | None = None) -> dict[str, float]:
    """Train several recipes at once, each in a process of its own with one CPU thread.

    Each runs ``python -m aigc_lab train --recipe NAME --runs-dir RUNS_DIR`` (the same run as
    :func:`train_recipe` would train in this process: same settings, seed and directory), at most
    ``workers`` at a time; recipes whose run is already complete are skipped. Afterwards
    :func:`train_recipe` loads each of them. Why: the book's small models keep two CPU threads
    busy only part of the time. Measured on a quiet 2-core machine (``train_recipe`` with
    ``fit``'s settings): the digits cGAN takes 0.066 s a step with two threads and 0.080-0.082 s with
    one while a second run trains on the other core, 1.6 times the throughput of training them one
    after the other; the shapes diffusion model (wider convolutions) 0.32 s against 0.52-0.55 s, 1.2
    times. Each run's ``train_seconds`` is then its own time on one core, next to another run.

    Returns the wall-clock seconds each recipe's process took (0 for those skipped).
    """
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from aigc_lab.runs import run_is_complete

    for name in names:
        _recipe(name)  # unknown names fail here, before anything starts
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    env = {**os.environ, runtime.THREADS_ENV: "1", "AIGC_LAB_PROGRESS": "0"}
    extra = [] if steps is None else ["--steps", str(steps)]

    def train_one(name: str) -> tuple[float, str | None]:
        """Wall seconds of the recipe's process, and the last line of its error if it failed."""
        start = time.perf_counter()
        command = [sys.executable, "-m", "aigc_lab", "train", "--recipe", name, "--runs-dir", str(runs_dir), *extra]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        error = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1] if done.returncode else None
        return time.perf_counter() - start, error

    pending = [n for n in names if not run_is_complete(Path(runs_dir) / n)]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # threads only wait: the work is in the processes
        outcomes = dict(zip(pending, pool.map(train_one, pending)))
    failures = [f"{name}: {error}" for name, (_, error) in outcomes.items() if error]
    if failures:
        raise RuntimeError("training failed for " + "; ".join(failures))
    return {n: outcomes[n][0] if n in outcomes else 0.0 for n in names}


def _recipe(recipe: Recipe | str) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[recipe]


def measure_conditional(
    model: TrainableModel,
    recipe: Recipe | str,
    *,
    per_class: int | None = None,
    seed: int = 0,
    classifier=None,
    **sample_options: Any,
) -> dict[str, Any]:
    """Draw ``per_class`` samples for every label and measure them as chapter 4's tables do.

    ``sample_options`` override the recipe's (e.g. ``guidance=3.0``). ``per_class`` defaults to
    100 for 10 classes and 34 for 30 (about 1,000 samples in all; a tenth in quick mode). Returns

    * ``accuracy``: :func:`aigc_lab.metrics.classifier_accuracy` with the asked-for labels;
    * ``label_accuracy`` and ``worst_label_accuracy``: the same for each label on its own (a list,
      label by label) and its minimum, for targets stated per label;
    * ``fd_per_class``: mean of :func:`aigc_lab.metrics.frechet_distance_per_class`;
    * ``diversity`` and ``real_diversity``: :func:`aigc_lab.metrics.within_class_diversity` of the
      samples and of the real test images;
    * ``sample_s_per_1000``: the sampling time, scaled to 1,000 images;
    * for ``shapes``, ``shape_accuracy`` and ``colour_accuracy``: each attribute on its own;
    * ``images`` and ``labels``: the samples themselves, for figures.
    """
    import torch

    from aigc_lab.metrics import classifier_accuracy, frechet_distance_per_class, within_class_diversity

    recipe = _recipe(recipe)
    spec = dict(DATASETS[recipe.data])
    name = spec.pop("name")
    test = recipe_data(recipe, "test")
    k = len(test.classes)
    per_class = per_class or max(2, round(runtime.budget(1000, 100) / k))
    classifier = classifier if classifier is not None else dataset_classifier(recipe.data)
    labels = torch.arange(k).repeat(per_class)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with torch.no_grad():
        images = torch.cat([
            model.sample(len(part), labels=part, generator=generator, **{**recipe.sample_options(), **sample_options}).cpu()
            for part in labels.split(500)
        ])
    seconds = time.perf_counter() - start
    predicted = classifier.predict(images)
    label_accuracy = [float((predicted[labels == c] == c).double().mean()) for c in range(k)]
    result: dict[str, Any] = {
        "accuracy": classifier_accuracy(images, labels, classifier=classifier),
        "label_accuracy": label_accuracy,
        "worst_label_accuracy": min(label_accuracy),
        "fd_per_class": frechet_distance_per_class(images, labels, name, classifier=classifier, **spec)["mean"],
        "diversity": within_class_diversity(images, labels, k),
        "real_diversity": within_class_diversity(test.images, test.labels, k),
        "sample_s_per_1000": seconds * 1000 / len(labels),
    }
    if name == "shapes":
        from aigc_lab.data.shapes import COLOUR_NAMES

        n_colours = len(COLOUR_NAMES)
        result["shape_accuracy"] = float((predicted // n_colours == labels // n_colours).double().mean())
        result["colour_accuracy"] = float((predicted % n_colours == labels % n_colours).double().mean())
    result["images"], result["labels"] = images, labels
    return result
