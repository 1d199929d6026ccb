"""Which package code made a result: a notebook's outputs, or a run's weights.

The book is published from outputs committed with its notebooks, and chapter 4's pages load models
that another page trained. Both are only honest while the code that made them is the code on the
branch, so each records it as ``{"aigc_lab/models/vae.py": "sha256:...", ...}``:

* a **run** (:func:`aigc_lab.train.fit`) stores, in ``RUN_DIR/provenance.json``, the hash of every
  package file its training depended on: the files of the model's family, the training loop and
  the dataset, with everything they import from the package (:func:`code_closure`, read from the
  source, so it does not depend on what else the process happened to import), and the page that
  trained it;
* a **notebook** (:func:`aigc_lab.notebooks.execute_one`) records every package file its kernel and
  the command-line processes it started imported, and each run it trained or loaded with that
  run's record.

While a notebook is executed for the book, :data:`LOG_ENV` names a file; every process of the
package that sees it appends what it imported and which runs it used, one JSON object per line.
:func:`changed_files` compares a record with the files on disk.
"""

from __future__ import annotations

import ast
import atexit
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name
LOG_ENV = "AIGC_LAB_PROVENANCE_LOG"
NOTEBOOK_ENV = "AIGC_LAB_NOTEBOOK"
RUN_FILE = "provenance.json"
HASH_PREFIX = "sha256:"


def file_hash(path: str | os.PathLike) -> str:
    """``"sha256:<hex>"`` of a source file, with ``\\r\\n`` read as ``\\n`` (a Windows checkout hashes alike)."""
    data = Path(path).read_bytes().replace(b"\r\n", b"\n")
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def _relative(path: Path) -> str:
    """``aigc_lab/models/vae.py``: the path inside the repository, the same on every machine."""
    return path.resolve().relative_to(PACKAGE_DIR.parent).as_posix()


def module_file(module: str) -> Path | None:
    """The source file of package module ``module`` (``aigc_lab.models.vae``), or None outside the package."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    parts = module.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, module: str) -> set[str]:
    """The package modules ``path`` imports anywhere in it (also inside functions), by name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            names.add(base)
            # `from aigc_lab import runtime` imports the module aigc_lab.runtime
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in names if module_file(name) is not None}


def code_closure(modules: Iterable[str]) -> dict[str, str]:
    """The package files ``modules`` need: their own and, transitively, every package module they import.

    Read from the source with :mod:`ast` (imports inside functions count), plus the ``__init__.py``
    of every package on the way. Returns ``{relative path: file_hash}``, sorted.
    """
    todo = [m for m in modules if module_file(m) is not None]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run first
        todo.extend(_imported_modules(module_file(module), module) - seen)
    files = {module_file(m) for m in seen}
    return {_relative(f): file_hash(f) for f in sorted(files)}


def imported_files(modules: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Every package file among the imported modules (default: ``sys.modules``), with its hash."""
    modules = sys.modules if modules is None else modules
    files = {module_file(name) for name in list(modules)}
    return {_relative(f): file_hash(f) for f in sorted(f for f in files if f is not None)}


def changed_files(recorded: Mapping[str, str], root: str | os.PathLike | None = None) -> list[str]:
    """The recorded files whose content differs from the file in ``root`` (default: this package's repository)."""
    root = Path(root) if root is not None else PACKAGE_DIR.parent
    changed = []
    for name, digest in sorted(recorded.items()):
        path = root / name
        if not path.is_file():
            changed.append(f"{name} (deleted)")
        elif file_hash(path) != digest:
            changed.append(name)
    return changed


# ----------------------------------------------------------------------------- runs


def write_run_record(run_dir: str | os.PathLike, modules: Iterable[str]) -> dict[str, Any]:
    """Store in ``run_dir`` the code a run was trained with (:func:`code_closure` of ``modules``) and by which page."""
    record = {"code": code_closure(modules), "trained_by": os.environ.get(NOTEBOOK_ENV)}
    path = Path(run_dir) / RUN_FILE
    tmp = path.with_name(f".{RUN_FILE}.tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, path)  # atomic, like the checkpoint it describes
    return record


def read_run_record(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's stored record, or None when it has none (trained before runs recorded their code)."""
    path = Path(run_dir) / RUN_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is damaged ({error}); delete the run directory to train it again") from None
    if not isinstance(record, dict) or not isinstance(record.get("code"), dict):
        raise ValueError(f"{path} is not a run record (no 'code'); delete the run directory to train it again")
    return record


def run_is_stale(run_dir: str | os.PathLike) -> bool:
    """True when the run has no record, or its training code differs from the package's files now."""
    record = read_run_record(run_dir)
    return record is None or bool(changed_files(record["code"]))


# ----------------------------------------------------------------------------- the execution log


def log(kind: str, **data: Any) -> None:
    """Append ``{"kind": kind, "pid": ..., **data}`` to the file :data:`LOG_ENV` names; nothing when unset."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:  # one short write per line: processes may share the file
        f.write(json.dumps({"kind": kind, "pid": os.getpid(), **data}) + "\n")


def log_run(run_dir: str | os.PathLike, event: str) -> None:
    """Log that this process ``"trained"`` or ``"loaded"`` the run in ``run_dir``."""
    if os.environ.get(LOG_ENV):
        log("run", run_dir=str(Path(run_dir).resolve()), event=event, record=read_run_record(run_dir))


def log_imports() -> None:
    """Log the package files this process has imported."""
    log("imports", files=imported_files())


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of an execution log, in order."""
    text = Path(path).read_text(encoding="utf-8") if Path(path).is_file() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


if os.environ.get(LOG_ENV):
    # A command-line process started by a notebook (3.5 trains through `python -m aigc_lab`)
    # reports what it imported when it ends; the kernel is asked explicitly at the end.
    atexit.register(log_imports)
