"""Loading a trained run: the model :func:`aigc_lab.train.fit` saved in a run directory, rebuilt.

This sits above both the models (it rebuilds a model by its registered name,
:func:`aigc_lab.models.build_model`) and the loop (it reads the files :func:`~aigc_lab.train.fit`
writes), so that neither of them imports the other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from aigc_lab import provenance, runtime
from aigc_lab.checkpoint import CheckpointError, load_checkpoint, load_state_dict_checked
from aigc_lab.contract import TrainableModel
from aigc_lab.models import build_model
from aigc_lab.train import CHECKPOINT_NAME, CONFIG_NAME


def load_run(run_dir: str | os.PathLike, *, device: torch.device | str | None = None) -> tuple[TrainableModel, dict[str, Any]]:
    """Rebuild the trained model of ``run_dir`` and return it with the run's ``config.json``."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    state = load_checkpoint(run_dir / CHECKPOINT_NAME, map_location="cpu")
    model = build_model(state["model_name"], **state["hparams"])
    load_state_dict_checked(model, state["model"], what="model", path=run_dir / CHECKPOINT_NAME)
    config["step"] = int(state["step"])
    config["train_seconds"] = float(state["train_seconds"])
    config["history"] = state["history"]
    dev = torch.device(device) if device is not None else runtime.device()
    provenance.log_run(run_dir, "loaded")
    return model.to(dev).eval(), config


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` that :func:`fit` wrote into ``run_dir``.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.json``: it is not a training run.
        CheckpointError: the file cannot be read or is not a run's configuration; the message
            names it and says how to rewrite it.
    """
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run: no {CONFIG_NAME} in it (train one with `python -m aigc_lab train`)")
    rewrite = "training it again with the same command resumes from its checkpoint and rewrites the file"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not a text file: the run directory is damaged; {rewrite}") from None
    except OSError as exc:
        raise CheckpointError(f"could not read {path}: {exc.strerror or exc}") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path} is not valid JSON ({exc.msg}: line {exc.lineno}, column {exc.colno}): the run directory is damaged; {rewrite}"
        ) from None
    missing = [key for key in ("model", "data") if not isinstance(config, dict) or key not in config]
    if missing:
        raise CheckpointError(f"{path} is JSON but not a run's configuration (it lacks {', '.join(map(repr, missing))}): the run directory is damaged; {rewrite}")
    return config


def run_is_complete(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a finished run that the code on the branch would train the same way.

    True when its checkpoint reached the step count its ``config.json`` asked for and its
    provenance record matches the package files as they are (:func:`aigc_lab.provenance.run_is_stale`).
    A page that shows a model another page trained loads it when this holds and trains it otherwise,
    so each model is trained once per execution of the book, and a reader who opens that page
    first still gets a run.
    """
    run_dir = Path(run_dir)
    try:
        config = read_run_config(run_dir)
        state = load_checkpoint(run_dir / CHECKPOINT_NAME, map_location="cpu")
    except (FileNotFoundError, CheckpointError):
        return False
    wanted = config.get("train", {}).get("steps")
    if wanted is None or int(state.get("step", -1)) < int(wanted):
        return False
    try:
        return not provenance.run_is_stale(run_dir)
    except ValueError:  # a damaged record: train again
        return False
