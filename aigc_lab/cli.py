"""The command line: ``python -m aigc_lab train|sample|eval|apply|models|recipes|datasets``.

Examples::

    python -m aigc_lab train wgan-gp-mlp --data digits --steps 3000 --run-dir runs/wgan
    python -m aigc_lab sample runs/wgan --n 1000 --out samples.npz
    python -m aigc_lab eval runs/wgan
    python -m aigc_lab train --recipe shapes-cfg --runs-dir runs/book   # any model of the book, exactly
    python -m aigc_lab train denoiser --data photos --data-option channels=1 --run-dir runs/denoiser
    python -m aigc_lab apply runs/denoiser noisy1.png noisy2.jpg --out restored/
    python -m aigc_lab train super-resolution --data photos --param scale=3 --run-dir runs/sr3
    python -m aigc_lab apply runs/inpainter photo.png --mask holes.png --out restored/
    python -m aigc_lab train vae --data digits --precision bfloat16          # bfloat16 autocast, any device
    torchrun --standalone --nproc_per_node=2 -m aigc_lab train vae --data digits   # data-parallel, 2 processes

Under ``torchrun`` the same ``train`` command runs data-parallel (:mod:`aigc_lab.distributed`):
one process per device (``--nproc_per_node=gpu``: every GPU; add ``--nnodes`` and
``--rdzv-endpoint=HOST:PORT`` for several machines), each computing its slice of the global
``--batch-size``, gradients averaged before every step, rank 0 alone writing logs and
checkpoints. A stopped run resumes with the same command and the same number of processes.

The image-to-image models (``denoiser``, ``super-resolution``, ``inpainter``, ``low-light``,
``low-light-paired``) train on random patches of the clean images (``--data-option patch_size=48`` by default) and
damage them themselves; ``apply`` restores a reader's own files of any size, gray or colour.

Conditional runs (``train ... --conditional``) sample one class with ``--label``, given as an
index (``--label 3``), a class name (``--label "red triangle"``) or, for datasets whose classes
combine several attributes, as KEY=VALUE pairs (``--label shape=triangle,colour=red``).

``train --seed S`` builds the model and trains it under the seed, so two identical commands
write the same checkpoint, bit for bit, on one machine with the same ``AIGC_LAB_THREADS``; a
run that is killed and started again with the same command resumes from its last checkpoint
(``--checkpoint-every``) and ends with those same bits. What the seed does not cover is listed
in :class:`aigc_lab.train.TrainConfig`.

A sample file is ``np.savez(path, images=float32 N x C x H x W in [0, 1], labels=int64 N)``;
``labels`` holds the condition of each image, or -1 for an unconditional model.
``eval`` prints its measurements as JSON.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value  # a bare string, e.g. shapes=cube


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aigc_lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model on a dataset, or one of the book's models (--recipe)")
    train.add_argument("model", nargs="?", help="a model name (see `python -m aigc_lab models`)")
    train.add_argument("--recipe", help="train one of the book's models with its exact settings (see `python -m aigc_lab recipes`) into RUNS_DIR/RECIPE")
    train.add_argument("--runs-dir", type=Path, default=Path("runs"), help="--recipe: the directory of the book's runs (default runs)")
    train.add_argument("--data", help="a dataset name (see `python -m aigc_lab datasets`) or folder:PATH")
    train.add_argument("--size", type=int, help="resize the images to SIZE x SIZE")
    train.add_argument("--data-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE", help="another dataset option, e.g. channels=1")
    train.add_argument("--conditional", action="store_true", help="condition the model on the dataset's labels")
    train.add_argument("--param", type=_key_value, action="append", default=[], metavar="KEY=VALUE", help="a model setting, e.g. z_dim=32 or lr=0.0002")
    train.add_argument("--steps", type=int, help="optimisation steps (default: the model's tuned number, see `models`)")
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--seed", type=int, default=0, help="fixes the weights' initialisation, the batch order and the training noise (default 0)")
    train.add_argument("--checkpoint-every", type=int, default=250, metavar="N", help="save a checkpoint every N steps (default 250) and at the end")
    train.add_argument("--run-dir", type=Path, help="where logs and checkpoints go (default runs/MODEL-DATA)")
    train.add_argument("--fresh", action="store_true", help="start over instead of resuming from RUN_DIR's checkpoint")
    train.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    train.add_argument(
        "--precision", choices=["auto", "float32", "float16", "bfloat16"], default="auto",
        help="mixed precision: auto (float16 on CUDA, float32 elsewhere), float32, float16 (CUDA), bfloat16",
    )

    sample = sub.add_parser("sample", help="write samples of a trained run to an .npz file")
    sample.add_argument("run_dir", type=Path)
    sample.add_argument("--n", type=int, required=True, help="how many images")
    sample.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    sample.add_argument(
        "--label",
        help='the class to generate, for a conditional model: an index, a class name ("red triangle") or KEY=VALUE pairs '
        "(shape=triangle,colour=red); default: all classes in turn",
    )
    sample.add_argument("--guidance", type=float, help="classifier-free guidance scale w for a conditional diffusion model (0: none)")
    sample.add_argument(
        "--best-of", type=int, help="a GAN trained with aux_weight > 0: keep the best of K candidates per image, by its critic's classifier"
    )
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device")

    evaluate = sub.add_parser("eval", help="measure a trained run and print JSON")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--n", type=int, default=1000, help="samples to measure (default 1000)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--no-fd", action="store_true", help="skip the Frechet distance (it trains the dataset's classifier once, ~10 s)")
    evaluate.add_argument("--out", type=Path, help="also write the samples it measured to this .npz file (as `sample` does)")
    evaluate.add_argument("--device")

    apply = sub.add_parser("apply", help="restore image files with a trained image-to-image run (denoiser, super-resolution, inpainter, low-light)")
    apply.add_argument("run_dir", type=Path)
    apply.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...), gray or colour, any size")
    apply.add_argument("--out", type=Path, required=True, help="the folder to write the restored images into, under their input file names")
    apply.add_argument("--mask", type=Path, help="an inpainter's mask: a file of the images' size, white = missing")
    apply.add_argument("--device")

    sub.add_parser("models", help="list the models")
    sub.add_parser("recipes", help="list the book's trained models (train one with `train --recipe NAME`)")
    sub.add_parser("datasets", help="list the datasets")
    return parser


def _load_data(spec: dict[str, Any], split: str):
    from aigc_lab.data import load_dataset

    options = {k: v for k, v in spec.items() if k not in ("name", "split")}
    return load_dataset(spec["name"], split, **options)


def _train(args: argparse.Namespace) -> int:
    from aigc_lab import distributed
    from aigc_lab.models import build_model
    from aigc_lab.train import TrainConfig, build_under_seed, fit

    if args.recipe is not None:
        return _train_recipe(args)
    if args.model is None or args.data is None:
        raise ValueError("train needs a MODEL and --data DATASET (or --recipe NAME for one of the book's models)")
    spec: dict[str, Any] = {"name": args.data, **dict(args.data_option)}
    if args.size is not None:
        spec["size"] = args.size
    _add_patch_options(spec, args.model)
    dataset = _load_data(spec, "train")
    hparams = dict(args.param)
    hparams.setdefault("image_shape", list(dataset.images.shape[1:]))
    if args.conditional:
        hparams.setdefault("num_classes", len(dataset.classes))
    # Built under the seed, so that two identical commands start from the same weights.
    model = build_under_seed(args.seed, build_model, args.model, **hparams)
    steps = args.steps if args.steps is not None else model.default_steps
    run_dir = args.run_dir or Path("runs") / f"{args.model}-{args.data.replace(':', '_').replace('/', '_')}"
    config = TrainConfig(steps=steps, batch_size=args.batch_size, seed=args.seed, checkpoint_every=args.checkpoint_every, precision=args.precision)
    # Under torchrun every process runs this command; fit() makes them one data-parallel run.
    try:
        history = fit(model, dataset, run_dir, config, device=args.device, resume=not args.fresh, data_spec=spec)
        group = distributed.from_environment()
    finally:
        distributed.shutdown()
    if group.is_main:
        last = {name: history.last(name) for name in history.scalars}
        summary = {"run_dir": str(run_dir), "steps": history.steps, "train_seconds": round(history.train_seconds, 2), "processes": group.world_size, "last": last}
        print(json.dumps(summary))
    return 0


def _add_patch_options(spec: dict[str, Any], model_name: str) -> None:
    """An image-to-image model trains on random patches: add its data options the dataset accepts and the reader did not set."""
    from aigc_lab.contract import ImageToImageModel
    from aigc_lab.data import dataset_options
    from aigc_lab.models import MODELS

    cls = MODELS[model_name] if model_name in MODELS else None
    if cls is None or not issubclass(cls, ImageToImageModel):
        return
    accepted = dataset_options(spec["name"])
    for key, value in cls.train_data_options.items():
        if key in accepted:
            spec.setdefault(key, value)


def _apply(args: argparse.Namespace) -> int:
    from aigc_lab.contract import ImageToImageModel
    from aigc_lab.models import MODELS
    from aigc_lab.restore import apply_to_files, image_to_image_models
    from aigc_lab.runs import load_run, read_run_config

    config = read_run_config(args.run_dir)
    # only the run's own family is imported; the list of the others (which imports them all) only on error
    if config["model"] not in MODELS or not issubclass(MODELS[config["model"]], ImageToImageModel):
        raise ValueError(f"{args.run_dir} is a {config['model']!r} run; apply needs an image-to-image model ({', '.join(image_to_image_models())})")
    model, _ = load_run(args.run_dir, device=args.device)
    assert isinstance(model, ImageToImageModel)
    written = apply_to_files(model, args.images, args.out, mask=args.mask)
    print(f"wrote {len(written)} restored image{'s' if len(written) != 1 else ''} to {args.out}")
    return 0


def _train_recipe(args: argparse.Namespace) -> int:
    from aigc_lab.recipes import train_recipe

    ignored = [flag for flag, value in (("MODEL", args.model), ("--data", args.data), ("--size", args.size), ("--conditional", args.conditional),
                                         ("--param", args.param), ("--data-option", args.data_option), ("--run-dir", args.run_dir), ("--fresh", args.fresh)) if value]
    if ignored:
        raise ValueError(f"--recipe fixes the model, data and settings; drop {', '.join(ignored)} (or train without --recipe)")
    if args.batch_size != 64 or args.checkpoint_every != 250 or args.seed != 0:
        raise ValueError("--recipe trains with the book's batch size, seed and checkpoints; drop --batch-size, --seed and --checkpoint-every")
    _, history = train_recipe(args.recipe, args.runs_dir, steps=args.steps, device=args.device)
    last = {name: history.last(name) for name in history.scalars}
    print(json.dumps({"run_dir": str(history.run_dir), "steps": history.steps, "train_seconds": round(history.train_seconds, 2), "last": last}))
    return 0


def _list_recipes() -> int:
    from aigc_lab.recipes import RECIPES

    for name, recipe in RECIPES.items():
        data = recipe.data + (", conditional" if recipe.conditional else "")
        print(f"{name:24s} {recipe.model:10s} {recipe.steps:6d} steps  {data:20s} {recipe.label}")
    return 0


def _class_names(spec: dict[str, Any], num_classes: int) -> list[str]:
    """The class names of the run's dataset (indices as names when it cannot be loaded)."""
    try:
        classes = list(_load_data(spec, "train").classes)
    except Exception:  # an online set that is gone, a moved folder: indices still work
        classes = []
    return classes if len(classes) == num_classes else [str(k) for k in range(num_classes)]


def _sample_images(model, n: int, label: int | None, seed: int, **options: Any):
    import torch

    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    num_classes = getattr(model, "num_classes", 0)
    if label is not None:
        labels = torch.full((n,), label, dtype=torch.long)
    elif num_classes:
        labels = torch.arange(n) % num_classes
    else:
        labels = None
    generator = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, n, 500):  # bounded memory for large n
        chunk_labels = labels[start : start + 500] if labels is not None else None
        chunks.append(model.sample(min(500, n - start), labels=chunk_labels, generator=generator, **options).cpu())
    images = torch.cat(chunks)
    return images, labels if labels is not None else torch.full((n,), -1, dtype=torch.long)


def _write_samples(path: Path, images, labels) -> None:
    """The sample file format: ``np.savez(path, images=float32 N x C x H x W in [0, 1], labels=int64 N)``."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images.numpy().astype(np.float32), labels=labels.numpy().astype(np.int64))


def _sample(args: argparse.Namespace) -> int:
    from aigc_lab.models.conditioning import resolve_label
    from aigc_lab.runs import load_run

    model, config = load_run(args.run_dir, device=args.device)
    label = None
    if args.label is not None:
        num_classes = getattr(model, "num_classes", 0)
        if not num_classes:
            raise ValueError("--label needs a conditional model; this run was trained without --conditional")
        label = resolve_label(args.label, _class_names(config["data"], num_classes))
    options = {}
    if args.guidance is not None:
        if "guidance" not in inspect.signature(model.sample).parameters or not getattr(model, "num_classes", 0):
            raise ValueError(f"--guidance needs a conditional diffusion model (ddpm trained with --conditional); this run is {config['model']!r}")
        options["guidance"] = args.guidance
    if args.best_of is not None:
        if "best_of" not in inspect.signature(model.sample).parameters:
            raise ValueError(f"--best-of needs a conditional GAN whose critic has an auxiliary classifier (wgan with aux_weight > 0); this run is {config['model']!r}")
        options["best_of"] = args.best_of
    images, labels = _sample_images(model, args.n, label, args.seed, **options)
    _write_samples(args.out, images, labels)
    print(f"wrote {len(images)} images of shape {tuple(images.shape[1:])} to {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import time

    from aigc_lab.metrics import (
        nearest_neighbor_distance,
        pixel_diversity,
        within_class_diversity,
    )
    from aigc_lab.contract import ImageToImageModel
    from aigc_lab.runs import load_run

    model, config = load_run(args.run_dir, device=args.device)
    spec = config["data"]
    if isinstance(model, ImageToImageModel):
        return _eval_image_to_image(model, config, args)
    train_set = _load_data(spec, "train")
    start = time.perf_counter()
    images, labels = _sample_images(model, args.n, None, args.seed)
    sample_seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "run_dir": str(args.run_dir),
        "model": config["model"],
        "data": spec,
        "steps": config["step"],
        "train_seconds": round(config["train_seconds"], 2),
        "parameters": sum(p.numel() for p in model.parameters()),
        "n_samples": args.n,
        f"seconds_to_sample_{args.n}": round(sample_seconds, 4),
        "pixel_diversity": pixel_diversity(images),
        "nn_distance_to_train": float(nearest_neighbor_distance(images, train_set.images).mean()),
        "last_logged": {name: values[1][-1] for name, values in config["history"].items()},
    }
    try:
        test_set = _load_data(spec, "test")
    except ValueError:
        test_set = None  # a folder of one's own images may have no test split
    if test_set is not None:
        result.update(model.evaluate(test_set))
        result["real_test_pixel_diversity"] = pixel_diversity(test_set.images)
        if int(labels[0]) >= 0:  # a conditional model: how varied are the samples of one class, and the real ones
            result["within_class_diversity"] = within_class_diversity(images, labels, len(test_set.classes))
            result["real_test_within_class_diversity"] = within_class_diversity(test_set.images, test_set.labels, len(test_set.classes))
        result["real_test_nn_distance_to_train"] = float(nearest_neighbor_distance(test_set.images, train_set.images).mean())
        if not args.no_fd and len(train_set.classes) > 1:
            result.update(_classifier_measures(spec, images, labels))
    if args.out is not None:
        _write_samples(args.out, images, labels)
        result["samples_file"] = str(args.out)
    print(json.dumps(result, indent=2))
    return 0


def _eval_image_to_image(model, config: dict[str, Any], args: argparse.Namespace) -> int:
    """``eval`` of a restoration run: PSNR and SSIM on the test split's images, damaged with ``--seed``."""
    from aigc_lab.restore import evaluate_restoration

    if args.out is not None:
        raise ValueError("--out writes generated samples; an image-to-image run generates none (use `apply` to restore files)")
    spec = dict(config["data"])
    try:
        test_set = _load_data(spec, "test")
    except ValueError:
        raise ValueError(f"the run's dataset {spec['name']!r} has no test split to measure on") from None
    clean = test_set.images[: args.n]
    result = {
        "run_dir": str(args.run_dir),
        "model": config["model"],
        "data": spec,
        "steps": config["step"],
        "train_seconds": round(config["train_seconds"], 2),
        "parameters": sum(p.numel() for p in model.parameters()),
        "n_test_images": len(clean),
        **evaluate_restoration(model, clean, seed=args.seed),
    }
    print(json.dumps(result, indent=2))
    return 0


def _classifier_measures(spec: dict[str, Any], images, labels) -> dict[str, Any]:
    """Frechet distance to the test split and what the dataset's classifier says about the samples."""
    from aigc_lab.metrics import (
        class_coverage,
        classifier_accuracy,
        feature_classifier,
        frechet_distance_per_class,
        frechet_distance_to_test,
    )

    options = {k: v for k, v in spec.items() if k not in ("name", "split")}
    classifier = feature_classifier(spec["name"], **options)
    result: dict[str, Any] = {"frechet_distance_to_test": frechet_distance_to_test(images, spec["name"], classifier=classifier, **options)}
    if int(labels[0]) >= 0:  # a conditional model, asked for every class in turn
        result["conditional_accuracy"] = classifier_accuracy(images, labels, classifier=classifier)
        result["frechet_distance_per_class"] = frechet_distance_per_class(images, labels, spec["name"], classifier=classifier, **options)
    else:
        coverage = class_coverage(images, classifier=classifier)
        result["classes_covered"] = coverage["classes_covered"]
        result["class_entropy_nats"] = coverage["entropy_nats"]
        result["max_class_entropy_nats"] = coverage["max_entropy_nats"]
    return result


def _list_models() -> int:
    from aigc_lab.models import describe_models

    for name, info in describe_models().items():  # read from the source: no family is imported
        summary = re.sub(r":class:`~?(?:\w+\.)*(\w+)`", r"\1", info.summary)  # :class:`~a.b.Name` -> Name
        summary = re.sub(r":math:|`", "", summary)
        steps = f"{info.default_steps:6d} steps" if info.default_steps is not None else " " * 12
        print(f"{name:16s} {steps}  {summary}")
    return 0


def _list_datasets() -> int:
    from aigc_lab.data import available_datasets

    for name, description in available_datasets().items():
        print(f"{name:16s} {description}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 with a one-line message on bad input)."""
    args = _parser().parse_args(argv)
    from aigc_lab import runtime
    from aigc_lab.checkpoint import CheckpointError

    handlers = {"train": _train, "sample": _sample, "eval": _eval, "apply": _apply}
    try:
        runtime.cpu_threads()  # AIGC_LAB_THREADS, when set
        if args.command == "models":
            return _list_models()
        if args.command == "datasets":
            return _list_datasets()
        if args.command == "recipes":
            return _list_recipes()
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError, CheckpointError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
