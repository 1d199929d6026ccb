"""Execute the book's notebooks and check the outputs committed with them.

The book is published from the outputs stored in its notebooks, so two things must hold for every
chapter listed in ``_toc.yml``:

* its outputs were made in *full* mode (quick mode, ``AIGC_LAB_QUICK=1``, is for tests only), and
* they were made by the code the notebook holds now, not by an earlier version of it, and by the
  package code on the branch, including the code that trained every run the notebook used.

``execute`` runs notebooks top to bottom in a fresh kernel, in full mode, writes the outputs back
and records in ``nb.metadata["aigc_lab"]`` where and how they were made: :func:`code_hash` of the
code cells, every package file the kernel (and the command-line processes it started) imported,
with its hash, and every run it trained or loaded, with the code that trained it and the page that
did (:mod:`aigc_lab.provenance`). ``check`` reads a committed notebook and lists what is wrong
with it, stale package code and stale runs included. From the command line (``make notebooks``
runs the first)::

    python -m aigc_lab.notebooks execute              # the stale notebooks of _toc.yml, in book order
    python -m aigc_lab.notebooks execute --all        # every notebook of _toc.yml
    python -m aigc_lab.notebooks execute NOTEBOOK ... # these
    python -m aigc_lab.notebooks check [NOTEBOOK ...] # exit code 1 when a problem is found

Before a notebook runs, the runs it trained last time whose training code has changed since are
deleted, so it trains them again; runs whose code is current are loaded, not retrained.

Needs the book's extras (``nbclient``, ``nbformat``, ``pyyaml``): ``pip install -e ".[book]"``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from aigc_lab import provenance
from aigc_lab.runtime import QUICK_ENV
from aigc_lab.train import PROGRESS_ENV

METADATA_KEY = "aigc_lab"
HASH_PREFIX = "sha256:"
# Separates cells in the hashed text; a control character no code cell contains.
CELL_DELIMITER = "\n\x1e\n"
PAGE_SUFFIXES = (".ipynb", ".md", ".rst")
# A cell with this tag is expected to raise (nbclient and nbmake let it): its error output is fine.
RAISES_TAG = "raises-exception"
# Output text that names a place on the machine that ran the notebook.
MACHINE_PATH = re.compile(
    r"/root/|/home/[^/\s]+/|/Users/[^/\s]+/|/work/|/tmp/|[A-Za-z]:\\\\?Users\\|site-packages"
)
TEXT_MIME_TYPES = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")
STALE_MESSAGE = "code cells changed after the outputs were made; run make notebooks"
STALE_PACKAGE_MESSAGE = "package code changed after the outputs were made"
STALE_RUN_MESSAGE = "was trained by package code that changed since"
NO_PROVENANCE_MESSAGE = "no record of the package code that made the outputs"
_DESCRIBE_MARKER = "AIGC_LAB_DESCRIBE="
_DESCRIBE_SOURCE = (
    "import json as _aigc_json\n"
    "from aigc_lab import provenance as _aigc_provenance, runtime as _aigc_runtime\n"
    "_aigc_provenance.log_imports()\n"
    f"print({_DESCRIBE_MARKER!r} + _aigc_json.dumps(_aigc_runtime.describe()))"
)


class NotebookExecutionError(RuntimeError):
    """A notebook failed to run top to bottom; it was not written."""


def _source(cell: NotebookNode | dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def code_hash(nb: NotebookNode | dict[str, Any]) -> str:
    """``"sha256:<hex>"`` of the notebook's code, so outputs can be tied to the code that made them.

    The hashed text is every non-empty code cell's source, with line endings normalised to
    ``\\n`` and trailing whitespace removed, joined by :data:`CELL_DELIMITER`. Markdown cells,
    outputs and metadata do not enter it, so editing prose keeps the outputs valid.
    """
    sources = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        text = _source(cell).replace("\r\n", "\n").rstrip()
        if text:
            sources.append(text)
    digest = hashlib.sha256(CELL_DELIMITER.join(sources).encode("utf-8")).hexdigest()
    return HASH_PREFIX + digest


# ----------------------------------------------------------------------------- the table of contents


def find_root(start: Path | None = None) -> Path:
    """The book's root: the nearest folder at or above ``start`` (default: cwd) holding ``_toc.yml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    raise FileNotFoundError(f"no _toc.yml in {here} or any folder above it; run from the repository")


def toc_entries(root: Path) -> list[str]:
    """The ``root`` and ``file`` entries of ``root/_toc.yml``, in book order, as written there."""
    import yaml  # a dependency of jupyter-book; only the book tooling needs it

    toc_path = Path(root) / "_toc.yml"
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    if not isinstance(toc, dict) or "root" not in toc:
        raise ValueError(f"{toc_path} has no 'root' entry; is it a Jupyter Book table of contents?")
    entries: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    entries.append(str(node[key]))
            for key, value in node.items():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return entries


def resolve_entry(root: Path, entry: str) -> Path:
    """The file a toc entry names: ``book/intro`` -> ``book/intro.md`` or ``book/intro.ipynb``."""
    base = Path(root) / entry
    if base.suffix in PAGE_SUFFIXES and base.is_file():
        return base
    found = [base.with_name(base.name + suffix) for suffix in PAGE_SUFFIXES]
    found = [path for path in found if path.is_file()]
    if not found:
        raise FileNotFoundError(
            f"_toc.yml lists {entry!r}, but none of {', '.join(entry + s for s in PAGE_SUFFIXES)} exists"
        )
    if len(found) > 1:
        names = " and ".join(str(p.relative_to(root)) for p in found)
        raise ValueError(f"_toc.yml entry {entry!r} is ambiguous: both {names} exist")
    return found[0]


def toc_files(root: Path) -> list[Path]:
    """Every page listed in ``root/_toc.yml``, resolved to its ``.md``/``.ipynb`` file."""
    return [resolve_entry(Path(root), entry) for entry in toc_entries(root)]


def toc_notebooks(root: Path) -> list[Path]:
    """The ``.ipynb`` pages of ``root/_toc.yml``, in book order."""
    return [path for path in toc_files(root) if path.suffix == ".ipynb"]


# ----------------------------------------------------------------------------- executing


def _kernel_env() -> dict[str, str]:
    """The parent's environment without quick mode: the book shows full-mode outputs only.

    Progress bars are turned off: a tqdm widget saved in a notebook shows nothing in the static
    HTML book; ``fit`` prints nothing else, and the notebooks print their own summaries.
    """
    env = dict(os.environ)
    env.pop(QUICK_ENV, None)
    env[PROGRESS_ENV] = "0"
    return env


def _read_describe(cell: NotebookNode) -> dict[str, str]:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            for line in output.get("text", "").splitlines():
                if line.startswith(_DESCRIBE_MARKER):
                    return json.loads(line[len(_DESCRIBE_MARKER) :])
    raise NotebookExecutionError(
        "could not read aigc_lab.runtime.describe() from the kernel; is aigc_lab installed "
        f"for the python3 kernel? outputs: {cell.get('outputs')}"
    )


def _repo_path(path: str | os.PathLike, root: Path) -> str:
    """``path`` relative to the repository root, with ``/``: the same on every machine."""
    resolved = Path(path).resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else resolved.as_posix()


def _discard_stale_runs(nb: NotebookNode, path: Path, root: Path) -> list[str]:
    """Delete the runs this notebook trained last time whose training code changed since.

    They are trained again when the notebook runs; runs another page trained are left to that
    page, which comes earlier in the book. Returns the deleted runs.
    """
    record = nb.metadata.get(METADATA_KEY, {})
    me = _repo_path(path, root)
    deleted = []
    for run, used in record.get("runs", {}).items():
        run_dir = root / run
        if used.get("trained_by") == me and run_dir.is_dir() and provenance.run_is_stale(run_dir):
            shutil.rmtree(run_dir)
            deleted.append(run)
    return deleted


def _provenance_record(log_path: Path, root: Path) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """The package files every process imported, and the runs used, from an execution log."""
    files: dict[str, str] = {}
    runs: dict[str, dict[str, Any]] = {}
    for entry in provenance.read_log(log_path):
        if entry["kind"] == "imports":
            files.update(entry["files"])
        elif entry["kind"] == "run":
            run = _repo_path(entry["run_dir"], root)
            record = entry.get("record") or {}
            trained = entry["event"] == "trained" or runs.get(run, {}).get("event") == "trained"
            runs[run] = {
                "event": "trained" if trained else "loaded",
                "trained_by": record.get("trained_by"),
                "code": record.get("code"),
            }
    return dict(sorted(files.items())), dict(sorted(runs.items()))


def execute_one(path: Path, *, timeout: int = 1800) -> dict[str, Any]:
    """Run one notebook top to bottom in full mode, write its outputs back, return its record.

    ``timeout`` is the longest one cell may run, in seconds. When a cell fails the notebook
    file is left as it was and :class:`NotebookExecutionError` says which cell failed. Runs the
    notebook trained last time with code that has changed since are deleted first (and so
    trained again); a run it loads that another page trained with outdated code is an error.
    """
    from nbclient import NotebookClient

    path = Path(path)
    root = _root_of(path)
    nb = nbformat.read(path, as_version=4)
    for run in _discard_stale_runs(nb, path, root):
        print(f"{path}: its run {run} was trained by code that changed since; training it again", flush=True)
    source_hash = code_hash(nb)
    work = nbformat.from_dict(nb)
    work.cells.append(nbformat.v4.new_code_cell(_DESCRIBE_SOURCE))
    failed: dict[str, int] = {}

    def on_cell_error(cell: NotebookNode, cell_index: int, execute_reply: dict[str, Any]) -> None:
        failed.setdefault("index", cell_index)

    client = NotebookClient(
        work,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(path.parent.resolve())}},
        on_cell_error=on_cell_error,
    )
    with tempfile.TemporaryDirectory(prefix="aigc_lab-provenance-") as folder:
        log_path = Path(folder) / "log.jsonl"
        env = _kernel_env()
        env[provenance.LOG_ENV] = str(log_path)
        env[provenance.NOTEBOOK_ENV] = _repo_path(path, root)
        start = time.perf_counter()
        try:
            client.execute(env=env)
        except Exception as error:
            index = failed.get("index")
            if index == len(nb.cells):
                where = "reading aigc_lab.runtime.describe() after the last cell (is aigc_lab installed?)"
            else:
                where = "the kernel" if index is None else f"cell {index}"
            raise NotebookExecutionError(
                f"{path}: {where} failed, so the notebook was not written.\n{error}"
            ) from error
        wall_time = time.perf_counter() - start
        package_code, runs = _provenance_record(log_path, root)

    stale = [
        f"{run} (trained by {used['trained_by'] or 'an unrecorded run'})"
        for run, used in runs.items()
        if used["code"] is None or provenance.changed_files(used["code"], root)
    ]
    if stale:
        raise NotebookExecutionError(
            f"{path}: loaded run(s) trained by package code that changed since: {', '.join(stale)}. "
            "Execute the page that trains them first (make notebooks does, in book order), or delete them; "
            "the notebook was not written."
        )
    described = _read_describe(work.cells.pop())
    record = {
        "mode": described["mode"],
        "device": described["device"],
        "device_name": described["device_name"],
        "wall_time_s": round(wall_time, 1),
        "aigc_lab_version": described["aigc_lab"],
        "torch": described["torch"],
        "code_hash": source_hash,
        "package_code": package_code,
        "runs": runs,
        "executed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    work.metadata[METADATA_KEY] = record
    # What JupyterLab writes for the python3 kernel; with another name, opening a page marks it modified.
    work.metadata.setdefault("kernelspec", {}).update(name="python3", display_name="Python 3 (ipykernel)", language="python")
    nbformat.validate(work)
    nbformat.write(work, path)
    return record


def execute(paths: Iterable[Path], *, timeout: int = 1800) -> list[dict[str, Any]]:
    """Execute notebooks with :func:`execute_one`, in the order given, printing one line per notebook.

    Every notebook is tried; those that ran are written. If any failed,
    :class:`NotebookExecutionError` lists them at the end.
    """
    if os.environ.get(QUICK_ENV):
        print(f"note: {QUICK_ENV} is ignored here; the book's notebooks always run in full mode")
    records, failures = [], []
    for path in paths:
        print(f"{path}: running ...", flush=True)
        try:
            record = execute_one(Path(path), timeout=timeout)
        except NotebookExecutionError as error:
            print(f"{path}: FAILED", flush=True)
            failures.append(str(error))
            continue
        records.append(record)
        print(
            f"{path}: {record['wall_time_s']:.1f} s, {record['mode']} mode on "
            f"{record['device']} ({record['device_name']})",
            flush=True,
        )
    if failures:
        raise NotebookExecutionError("\n\n".join(failures))
    return records


# ----------------------------------------------------------------------------- checking


TABLE_CLASS = "aigc-lab-table"  # the HTML class of aigc_lab.viz.Table


def _output_text(output: NotebookNode | dict[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return _source({"source": output.get("text", "")})
    if kind == "error":
        return "\n".join(output.get("traceback", [])) + output.get("evalue", "")
    data = output.get("data", {})
    texts = []
    for mime in TEXT_MIME_TYPES:
        value = data.get(mime)
        if isinstance(value, (dict, int, float)):
            texts.append(json.dumps(value))
        elif value is not None:
            texts.append(_source({"source": value}))
    return "\n".join(texts)


def _root_of(path: Path) -> Path:
    """The repository a notebook belongs to (the folder holding ``_toc.yml``), else this package's."""
    try:
        return find_root(path.parent)
    except FileNotFoundError:
        return provenance.PACKAGE_DIR.parent


def _provenance_problems(record: dict[str, Any], root: Path) -> list[str]:
    """Package files, or runs' training code, recorded in ``record`` that differ from ``root``'s files now."""
    if not isinstance(record.get("package_code"), dict) or not record["package_code"]:
        return [f"{NO_PROVENANCE_MESSAGE} (executed before it was recorded); run make notebooks"]
    problems = []
    changed = provenance.changed_files(record["package_code"], root)
    if changed:
        problems.append(f"{STALE_PACKAGE_MESSAGE}: {', '.join(changed)}; run make notebooks")
    for run, used in record.get("runs", {}).items():
        if not isinstance(used.get("code"), dict):
            problems.append(f"run {run} has no record of the code that trained it; run make notebooks")
            continue
        changed = provenance.changed_files(used["code"], root)
        if changed:
            by = used.get("trained_by") or "outside the book"
            problems.append(f"run {run} (trained by {by}) {STALE_RUN_MESSAGE}: {', '.join(changed)}; run make notebooks")
    return problems


def check(path: Path) -> list[str]:
    """What is wrong with a committed notebook's outputs; an empty list when nothing is.

    Looks for: missing ``aigc_lab`` metadata, outputs not made in full mode, code changed since
    the outputs were made, package code changed since (the files the notebook imported, and the
    code that trained each run it used), a notebook with no outputs, code cells that were never
    run or ran out of order, error outputs (except in cells tagged ``raises-exception``),
    outputs that show a path of the machine that ran them, and a cell that makes a table
    (``viz.show_table``) whose outputs hold none (the table was built but not displayed: only a
    cell's last expression is shown without ``display``).
    """
    nb = nbformat.read(Path(path), as_version=4)
    problems: list[str] = []

    record = nb.metadata.get(METADATA_KEY)
    if not isinstance(record, dict):
        problems.append(f"no '{METADATA_KEY}' metadata: the outputs were not made by `make notebooks`")
    else:
        mode = record.get("mode")
        if mode != "full":
            problems.append(f"outputs were made in {mode!r} mode, not 'full'; run make notebooks")
        if record.get("code_hash") != code_hash(nb):
            problems.append(STALE_MESSAGE)
        problems.extend(_provenance_problems(record, _root_of(Path(path))))

    code_cells = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and _source(c).strip()]
    if code_cells and not any(c.get("outputs") for _, c in code_cells):
        problems.append("no code cell has any output: the notebook was saved without its outputs")

    not_run = [str(i) for i, c in code_cells if c.get("execution_count") is None]
    if not_run:
        problems.append(f"code cell(s) {', '.join(not_run)} were not executed (execution_count is None)")
    previous = 0
    for index, cell in code_cells:
        count = cell.get("execution_count")
        if count is not None:
            if count <= previous:
                problems.append(f"cell {index} ran out of order (execution_count {count} after {previous})")
            previous = max(previous, count)
        tags = cell.get("metadata", {}).get("tags", [])
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and RAISES_TAG not in tags:
                problems.append(
                    f"cell {index} has an error output ({output.get('ename')}: {output.get('evalue')})"
                )
            match = MACHINE_PATH.search(_output_text(output))
            if match:
                problems.append(
                    f"cell {index} output shows a path of this machine ({match.group(0)!r}...); "
                    "print paths relative to the notebook and silence warnings that name files"
                )
        if "show_table(" in _source(cell) and count is not None:
            shown = any(TABLE_CLASS in _source({"source": o.get("data", {}).get("text/html", "")}) for o in cell.get("outputs", []))
            if not shown:
                problems.append(f"cell {index} builds a table (show_table) but shows none: make it the cell's last expression, or display() it")
    return problems


# ----------------------------------------------------------------------------- command line


def _paths(given: Sequence[str], root: Path | None) -> list[Path]:
    if given:
        return [Path(p) for p in given]
    cwd = Path.cwd()
    return [p.relative_to(cwd) if p.is_relative_to(cwd) else p for p in toc_notebooks(root or find_root())]


def stale_notebooks(paths: Iterable[Path]) -> list[Path]:
    """The notebooks, in the order given, that :func:`check` finds a problem with."""
    return [Path(p) for p in paths if check(Path(p))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aigc_lab.notebooks",
        description="Execute the book's notebooks in full mode, or check their committed outputs.",
    )
    parser.add_argument("--root", type=Path, help="the book's root, holding _toc.yml (default: found from cwd)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("execute", help="run notebooks in full mode and write their outputs back")
    run.add_argument("paths", nargs="*", help="notebooks (default: the stale notebooks of _toc.yml, in book order)")
    run.add_argument("--all", action="store_true", help="every notebook of _toc.yml, stale or not")
    run.add_argument("--timeout", type=int, default=1800, help="longest time one cell may run, in seconds")
    inspect = commands.add_parser("check", help="list problems with committed notebooks; exit 1 if any")
    inspect.add_argument("paths", nargs="*", help="notebooks (default: every notebook in _toc.yml)")
    args = parser.parse_args(argv)

    try:
        paths = _paths(args.paths, args.root)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "execute":
        todo = paths if args.paths or args.all else stale_notebooks(paths)
        if not todo:
            print("every notebook is up to date; nothing to execute (--all executes them anyway)")
        try:
            execute(todo, timeout=args.timeout)
        except NotebookExecutionError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    found = 0
    for path in paths:
        for problem in check(path):
            print(f"{path}: {problem}", file=sys.stderr)
            found += 1
    if found:
        print(f"{found} problem(s) in {len(paths)} notebook(s)", file=sys.stderr)
        return 1
    if args.command == "check":
        print(f"{len(paths)} notebook(s) OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
