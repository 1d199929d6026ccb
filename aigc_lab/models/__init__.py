r"""The book's models, one file per family, and the registry the command line builds them from.

``build_model(name, **hparams)`` rebuilds any registered model; ``MODELS`` maps each name to its
class; :func:`describe_models` lists them with their one-line summaries.

A family registers a model by giving its class a ``name``: every top-level class in a file of this
folder whose body assigns ``name = "..."`` (a string literal) is registered under that name. The
registry reads the files' source (:func:`_scan`), it does not import them: a family's file is
imported only when one of its models is asked for (``build_model("vae")``, ``MODELS["vae"]``,
``from aigc_lab.models import VAE``). That keeps a notebook's imports, and so the package code its
outputs depend on (see :mod:`aigc_lab.provenance`), down to the families it uses: a change to the
diffusion file does not make the VAE chapter stale, and a new family's file makes no page stale.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aigc_lab.contract import TrainableModel

_FOLDER = Path(__file__).resolve().parent
# Building blocks importable from this package without naming their file (not registered models).
_EXTRA_EXPORTS: dict[str, str] = {
    "MLPCritic": "aigc_lab.models.mlp",
    "MLPGenerator": "aigc_lab.models.mlp",
}


@dataclass(frozen=True)
class ModelInfo:
    """What the source of a family's file says about one registered model, read without importing it."""

    name: str  # the registered name, e.g. "vae"
    module: str  # e.g. "aigc_lab.models.vae"
    cls: str  # the class name, e.g. "VAE"
    summary: str  # the first line of the class docstring
    default_steps: int | None  # the class's ``default_steps`` when the source states it as a number


def _class_constants(node: ast.ClassDef) -> dict[str, Any]:
    """The class-level assignments of ``node`` whose values are literals, or refer to such a literal
    (``default_steps = RECOMMENDED_STEPS["gp"]``), evaluated without running the file."""
    values: dict[str, Any] = {}
    for statement in node.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        if isinstance(value, ast.Name) and value.id in values:
            values[target.id] = values[value.id]
        elif isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name) and value.value.id in values:
            try:
                values[target.id] = values[value.value.id][ast.literal_eval(value.slice)]
            except (ValueError, KeyError, TypeError):
                pass
        else:
            try:
                values[target.id] = ast.literal_eval(value)
            except ValueError:
                pass
    return values


def _inherited_constants(node: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> dict[str, Any]:
    """:func:`_class_constants` of ``node`` over those of its bases defined in the same file."""
    merged: dict[str, Any] = {}
    for base in reversed(node.bases):
        if isinstance(base, ast.Name) and base.id in classes and base.id != node.name:
            merged.update(_inherited_constants(classes[base.id], classes))
    merged.pop("name", None)  # a subclass is registered only under a name of its own
    return {**merged, **_class_constants(node)}


@functools.cache
def _scan() -> dict[str, ModelInfo]:
    """``name -> ModelInfo`` for every registered model, from the source of this folder's files."""
    found: dict[str, ModelInfo] = {}
    for path in sorted(_FOLDER.glob("*.py")):
        if path.name == "__init__.py":
            continue
        module = f"{__name__}.{path.stem}"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
        for node in classes.values():
            constants = _inherited_constants(node, classes)
            name = constants.get("name")
            if not isinstance(name, str) or not name:
                continue
            if name in found:
                other = found[name]
                raise RuntimeError(f"two models are registered as {name!r}: {other.module}.{other.cls} and {module}.{node.name}")
            doc = ast.get_docstring(node) or ""
            steps = constants.get("default_steps")
            found[name] = ModelInfo(name, module, node.name, doc.strip().splitlines()[0] if doc else "", steps if isinstance(steps, int) else None)
    return dict(sorted(found.items()))


def describe_models() -> dict[str, ModelInfo]:
    """Every registered model, read from the source (nothing is imported): ``name -> ModelInfo``."""
    return dict(_scan())


def _load(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


class _LazyModels(Mapping):
    """``name -> model class``, importing a family's file the first time one of its names is read."""

    def __getitem__(self, name: str) -> type[TrainableModel]:
        info = _scan()[name]
        cls = _load(info.module, info.cls)
        if cls.name != name:  # the source scan and the class must agree, or the CLI builds the wrong model
            raise RuntimeError(f"{cls.__name__}.name is {cls.name!r} but its source registers it as {name!r}")
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(_scan())

    def __len__(self) -> int:
        return len(_scan())


MODELS: Mapping[str, type[TrainableModel]] = _LazyModels()


def build_model(name: str, **hparams: Any) -> TrainableModel:
    """Build the model registered as ``name`` with keyword arguments ``hparams``."""
    known = _scan()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; known models: {', '.join(known)}")
    try:
        return MODELS[name](**hparams)
    except TypeError as exc:
        raise ValueError(f"bad settings for model {name!r}: {exc}") from None


def _exports() -> dict[str, str]:
    return {**{info.cls: info.module for info in _scan().values()}, **_EXTRA_EXPORTS}


def __getattr__(name: str) -> Any:
    """``from aigc_lab.models import VAE`` imports the VAE's file, and only it (PEP 562)."""
    exports = _exports()
    if name in exports:
        return _load(exports[name], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_exports()])


__all__ = ["MODELS", "ModelInfo", "build_model", "describe_models"]
