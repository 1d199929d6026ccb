"""Numbers in the prose come from the cells: a check of a notebook's Markdown against its own outputs.

The book reports measurements, so a number in a sentence must be one that an executed cell of the
same page computed. :func:`prose_problems` reads a notebook and lists

* **placeholders** never filled in: an ALL-CAPS name with an underscore (``SHAPES_CLF_ACC``), a
  ``{name}`` template, ``TODO``/``TBD``/``XX``/``FIXME``, ``TO BE WRITTEN``, ``??``;
* **glue references** (``{glue}`key```, ``{glue:text}`key:.1f```, ``{glue:figure}``, ...) whose key no
  output of the page (or of the page named as ``page.ipynb::key``) glued;
* **numbers** in the prose that appear in no code cell and no output of the page.

The rule for numbers, so that a reader would count what it checks as a measurement:

1. Text that is not prose is skipped: code spans and blocks, math (``$...$``, ``$$...$$``,
   ``\\begin{..}...\\end{..}``), MyST roles (``{term}`...```, ``{cite}`...```, ``{ref}``, ``{glue}``),
   link targets, URLs and HTML tags.
2. A sentence that cites a paper (``{cite}``, ``{cite:p}``, ``{cite:t}``) may quote the paper's numbers.
3. Not measurements: integers up to :data:`SMALL_INTEGER` without a percent sign (counts such as
   "3 seeds", exercise numbers), years 1900-2099, the book's own section numbers (``3.1``,
   ``4.4``, taken from the pages' numbered headings and the table of contents) unless a unit or a
   percent sign follows them, and the settings an exercise asks the reader to try (the text under
   an "Exercises" heading, up to the next heading).
4. Every other number must equal, at the precision it is written with, a number printed by an
   output or written in a code cell of the same notebook: ``86.0`` matches ``86.04``, ``1,480``
   matches ``1480.3``, ``90.5%`` matches ``90.5%`` or ``0.905``. Signs are ignored (a minus sign
   is often typeset as a word: "0.44 below").

It does not prove a sentence right, only that its numbers were computed on the page; that is
enough to catch a number typed from memory, copied from another page, or read off a figure by eye.

Why the book writes its numbers out instead of gluing them: a ``{glue:text}`` role renders as its
value only in the HTML book. JupyterLab (with jupyterlab-myst) shows the key, ``vae_nll:.1f``, and
Colab, which renders plain Markdown, shows the raw role; in both the number is gone. A number written
into the sentence reads the same in all three places, and this check ties it to the page's outputs:
when a re-execution changes a result, the test fails until the sentence is read and rewritten,
which is also when a claim such as "A beats B" has to be checked again. Glue still works and is
checked (rule above) where a page prefers it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nbformat

SMALL_INTEGER = 16
UNITS = r"(?:%|\s?(?:s|ms|min|nats?|bits?|px|steps|GB|MB|KB|x|times|dB)\b)"

_PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]\b|\b(?:TODO|TBD|XX+|FIXME)\b|\bTO BE WRITTEN\b|\?\?+")
# {name} or {name:format}, not a MyST role ({term}`x`) nor a directive (```{note} / :::{note})
_TEMPLATE = re.compile(r"(?<![`:{])\{[A-Za-z_][A-Za-z0-9_.]*(?::[^{}`]*)?\}(?!`)")
_GLUE_ROLE = re.compile(r"\{glue(?::[a-z]+)?\}`([^`]+)`")
_GLUE_DIRECTIVE = re.compile(r"^\s*(?:```|:::)\{glue(?::[a-z]+)?\}\s+(\S+)", re.M)
CITATION = " \u2020cited\u2020 "  # what strip_non_prose leaves of a {cite} role
_HEADING_NUMBER = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)+)\b", re.M)
# the whole part, the fraction, a scientific exponent (2.98e-08, as tables print small numbers), the unit
_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?((?:[eE][-+]?\d+)?)(?![\w.]?\d)(" + UNITS + ")?")
_OUTPUT_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")
TEXT_MIME_TYPES = ("text/plain", "text/html", "text/markdown", "text/latex")


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def strip_non_prose(markdown: str) -> str:
    """The Markdown with code, math, roles, link targets, URLs and HTML tags replaced by spaces.

    A citation role becomes :data:`CITATION` so that the sentence holding it can still be told apart.
    """
    text = re.sub(r"(```|~~~).*?\1", " ", markdown, flags=re.S)
    text = re.sub(r"\{cite(?::[a-z]+)?\}`[^`]*`", CITATION, text)
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"\\begin\{([^}]*)\}.*?\\end\{\1\}", " ", text, flags=re.S)
    text = re.sub(r"(?<!\\)\$[^$\n]+\$", " ", text)
    text = re.sub(r"\{[a-z:-]+\}`[^`]*`", " ", text)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"<[^>\n]+>", " ", text)
    return text


def _sentences(text: str) -> list[str]:
    # A full stop ends a sentence, except after an initial ("J. Tomczak") or an abbreviation.
    end = r"(?<=[.!?])(?<!\b[A-Z]\.)(?<!\bal\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bvs\.)(?<!\bcf\.)\s+(?=[A-Z(*_])"
    return re.split(end + r"|\n\s*\n|\n(?=\s*(?:[-*]|\d+\.)\s)", text)


def _output_texts(cell: Any) -> list[str]:
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append(_source({"source": output.get("text", "")}))
        for mime in TEXT_MIME_TYPES:
            value = output.get("data", {}).get(mime)
            if value is not None:
                texts.append(value if isinstance(value, str) else "".join(value))
    return texts


def computed_numbers(nb: Any) -> set[float]:
    """Every number (absolute value) written in a code cell or printed by an output of ``nb``."""
    numbers: set[float] = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for text in [_source(cell), *_output_texts(cell)]:
            for match in _OUTPUT_NUMBER.finditer(text):
                try:
                    numbers.add(abs(float(match.group(0).replace(",", ""))))
                except ValueError:
                    continue
    return numbers


def glued_keys(nb: Any) -> set[str]:
    """The names myst-nb's ``glue`` stored in the outputs of ``nb``."""
    keys = set()
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                keys.add(name)
    return keys


def section_numbers(pages: Iterable[str | Path], toc_numbers: Iterable[str] = ()) -> set[str]:
    """The book's section numbers: ``toc_numbers`` and every numbered heading of ``pages``."""
    numbers = set(toc_numbers)
    for page in pages:
        page = Path(page)
        if page.suffix == ".ipynb":
            nb = nbformat.read(page, as_version=4)
            text = "\n".join(_source(c) for c in nb.cells if c.cell_type == "markdown")
        else:
            text = page.read_text(encoding="utf-8")
        numbers.update(_HEADING_NUMBER.findall(text))
    return numbers


def _matches(value: float, decimals: int, percent: bool, computed: set[float], exponent: int = 0) -> bool:
    """Does some computed number, shown with ``decimals`` decimals (as a percentage too, for ``%``;
    times ``10**exponent`` in scientific notation), read ``value``?"""
    tolerance = 0.5 * 10 ** (exponent - decimals) * (1 + 1e-9)
    scales = (1, 100) if percent else (1,)
    return any(abs(number * scale - value) <= tolerance for number in computed for scale in scales)


_EXERCISES = re.compile(r"^#{1,6}\s+(?:\d+(?:\.\d+)*\s+)?Exercises\b.*?(?=^#{1,6}\s|\Z)", re.M | re.S | re.I)


def unexplained_numbers(markdown: str, computed: set[float], sections: set[str]) -> list[str]:
    """The numbers of ``markdown`` that rule 4 of the module docstring finds nowhere in ``computed``."""
    found = []
    for sentence in _sentences(strip_non_prose(_EXERCISES.sub(" ", markdown))):
        if CITATION.strip() in sentence:
            continue
        for match in _NUMBER.finditer(sentence):
            whole, fraction, exponent, unit = match.group(1), match.group(2) or "", match.group(3), match.group(4)
            token = whole + fraction
            value = float((token + exponent).replace(",", ""))
            percent = bool(unit and unit.strip() == "%")
            if not fraction and "," not in whole and not percent and float(whole) <= SMALL_INTEGER:
                # a small integer, or a setting written as a power of ten (a learning rate of 1e-3)
                continue
            if not fraction and "," not in whole and 1900 <= value <= 2099:
                continue
            if token in sections and not unit:
                continue
            if not _matches(value, len(fraction) - 1 if fraction else 0, percent, computed, int(exponent[1:]) if exponent else 0):
                found.append(match.group(0).strip())
    return found


def _check_glue(markdown: str, glued: set[str], path: Path | None) -> list[str]:
    problems = []
    references = _GLUE_ROLE.findall(markdown) + _GLUE_DIRECTIVE.findall(markdown)
    for reference in references:
        page, _, key = reference.rpartition("::")
        key = key.split(":")[0].strip()
        keys = glued
        if page:
            other = (path.parent / page) if path is not None else Path(page)
            keys = glued_keys(nbformat.read(other, as_version=4)) if other.is_file() else set()
        if key not in keys:
            problems.append(f"glue reference {reference!r} has no glued value" + (f" in {page}" if page else " in the outputs"))
    return problems


def prose_problems(nb: Any, sections: set[str] = frozenset(), path: Path | None = None) -> list[str]:
    """Placeholders, glue references without a value, and numbers no cell computed, cell by cell."""
    computed = computed_numbers(nb)
    glued = glued_keys(nb)
    problems = []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        markdown = _source(cell)
        prose = strip_non_prose(markdown)
        for match in _PLACEHOLDER.finditer(prose):
            problems.append(f"cell {index}: placeholder {match.group(0)!r}")
        for match in _TEMPLATE.finditer(prose):
            problems.append(f"cell {index}: unfilled template {match.group(0)!r}")
        problems.extend(f"cell {index}: {p}" for p in _check_glue(markdown, glued, path))
        numbers = unexplained_numbers(markdown, computed, set(sections))
        if numbers:
            problems.append(
                f"cell {index}: number(s) {', '.join(repr(n) for n in numbers)} appear in no code cell or output "
                "of this notebook and carry no citation (print them from a cell, glue them, or cite the paper)"
            )
    return problems


def toc_section_numbers(root: str | Path) -> set[str]:
    """``"3.1"``, ``"4.4"``, ...: the numbers Jupyter Book gives the sections of ``root/_toc.yml``'s chapters."""
    import yaml  # a dependency of jupyter-book; only the book tooling needs it

    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text(encoding="utf-8"))
    numbers = set()
    for part in toc.get("parts", []):
        for i, chapter in enumerate(part.get("chapters", []), start=1):
            for j, _ in enumerate(chapter.get("sections", []), start=1):
                numbers.add(f"{i}.{j}")
        break  # only the first part ("Chapters") is numbered by chapter
    return numbers


def book_section_numbers(root: str | Path) -> set[str]:
    """Every section number of the book at ``root``: the table of contents' and the pages' numbered headings."""
    from aigc_lab.notebooks import toc_files

    return section_numbers(toc_files(Path(root)), toc_section_numbers(root))


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m aigc_lab.prose [NOTEBOOK ...]``: print each notebook's problems (default: the book's)."""
    import sys

    from aigc_lab.notebooks import find_root, toc_notebooks

    argv = list(sys.argv[1:] if argv is None else argv)
    root = find_root(Path(argv[0]).parent if argv else None)
    paths = [Path(p) for p in argv] or toc_notebooks(root)
    sections = book_section_numbers(root)
    found = 0
    for path in paths:
        for problem in prose_problems(nbformat.read(path, as_version=4), sections, path):
            print(f"{path}: {problem}")
            found += 1
    print(f"{found} problem(s) in {len(paths)} notebook(s)")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
