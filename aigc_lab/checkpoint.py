"""Checkpoints that survive interruptions and refuse to load the wrong thing.

A checkpoint is a plain dictionary of tensors, numbers and strings, so it loads with
``torch.load(..., weights_only=True)``: unpickling arbitrary objects from a file is how a
downloaded checkpoint can run code on your machine, and we never need it.

Writes are atomic: the dictionary goes to a temporary file in the same folder, is flushed
to disk, then renamed over the old file. A run killed half-way through a save leaves the
previous checkpoint intact instead of a truncated file, and a save that fails (a full disk)
removes its temporary file and says which file it could not write, in one sentence.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

FORMAT = "aigc_lab-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint (or a run's ``config.json``) is missing, corrupt, unwritable, or belongs to a different model."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Atomically write ``state`` (tensors, numbers, strings, lists, dicts) to ``path``.

    Raises:
        CheckpointError: the file could not be written (a full disk, no permission); the
            temporary file is removed and the previous checkpoint, if any, is left as it was.
    """
    payload = {"format": FORMAT, **state}
    return _write_atomically(path, lambda f: torch.save(payload, f), what="checkpoint")


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    """Atomically write ``obj`` as indented JSON to ``path`` (a run's ``config.json``), as :func:`save_checkpoint` does."""
    text = json.dumps(obj, indent=2)
    return _write_atomically(path, lambda f: f.write(text.encode()), what="file")


def _write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], Any], *, what: str) -> Path:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if not isinstance(exc, (OSError, RuntimeError)):
            raise  # KeyboardInterrupt and the like: interrupted, not failed
        kept = f"the previous {what} is kept" if path.is_file() else f"no {what} was written"
        raise CheckpointError(f"could not write {what} {path}: {_write_failure(exc, path.parent)}; {kept}") from exc
    return path


def _write_failure(exc: BaseException, folder: Path) -> str:
    """What went wrong while writing, in words: the OS's reason, or torch's zip writer's."""
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return "the disk is full (No space left on device)" if exc.errno == errno.ENOSPC else reason
    # torch's zip writer loses the OS's reason: "[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 4"
    detail = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", (str(exc).splitlines() or [""])[0]).strip()
    reason = f"torch's writer failed ({detail[:200] or type(exc).__name__})"
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return reason
    return f"{reason}, with {free / 2**20:.1f} MiB free on its disk" + (" (it is probably full)" if free < 2**20 else "")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, safely (``weights_only=True``).

    Raises:
        CheckpointError: the file is missing, unreadable, or not an aigc_lab checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a damaged file
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a PyTorch file ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "delete it to start the run again"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not an aigc_lab checkpoint (expected format {FORMAT!r})")
    return state


def load_state_dict_checked(module: torch.nn.Module, state_dict: dict[str, Any], *, what: str, path: str | os.PathLike) -> None:
    """``module.load_state_dict`` with an error that says which checkpoint does not fit which model."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong_shape = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state_dict))
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}")
        if wrong_shape:
            details.append(f"different shapes {wrong_shape[:5]}")
        raise CheckpointError(
            f"checkpoint {path} does not fit this {what} ({type(module).__name__}): {'; '.join(details)}. "
            "Was it written by a model with other settings?"
        )
    module.load_state_dict(state_dict)
