"""The HTML book builds from the committed notebook outputs, with warnings as errors, and without
running any notebook (the build must never re-train a model; see DESIGN.md section 4).

This is the same build as ``make book``, into a temporary folder. It takes about ten seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aigc_lab import notebooks

ROOT = Path(__file__).resolve().parents[1]
BUILD_ARGS = ("--all", "-W", "-n", "--keep-going")  # fresh environment, warnings are errors
RUN_DIRS = (ROOT / "book" / "runs", ROOT / "runs")
MAX_SECONDS = 240  # far below what executing even one notebook in full mode takes
# MathJax from a CDN (cdn.jsdelivr.net/npm/mathjax@3, cdnjs.cloudflare.com/ajax/libs/mathjax/...,
# unpkg.com/mathjax@3, ...): an offline reader would see raw LaTeX.
MATHJAX_URL = re.compile(r"""(?:https?:)?//[^\s"'<>]*/mathjax\b""", re.IGNORECASE)
SCRIPT_SRC = re.compile(r"""<script\b[^>]*\bsrc=["']([^"']+)["']""", re.IGNORECASE)


def _snapshot() -> dict[str, str]:
    """Hashes of the notebooks and the names of the run folders, to show the build changed nothing."""
    state = {
        str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (ROOT / "book").rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts
    }
    for runs in RUN_DIRS:
        if runs.is_dir():
            state.update({str(p.relative_to(ROOT)): "run" for p in runs.rglob("*")})
    return state


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, float]:
    missing = []
    for entry in notebooks.toc_entries(ROOT):
        try:
            notebooks.resolve_entry(ROOT, entry)
        except (FileNotFoundError, ValueError) as error:
            missing.append(str(error))
    if missing:
        pytest.fail("the book cannot be built yet:\n" + "\n".join(missing), pytrace=False)

    out = tmp_path_factory.mktemp("book")
    env = {k: v for k, v in os.environ.items() if k != "AIGC_LAB_QUICK"}
    command = [
        sys.executable,
        "-c",
        "from jupyter_book.cli.main import main; main()",
        "build",
        str(ROOT),
        "--path-output",
        str(out),
        *BUILD_ARGS,
    ]
    before = _snapshot()
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    log = result.stdout + result.stderr
    if result.returncode != 0:
        problems = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
        pytest.fail(
            f"jupyter-book build failed (exit code {result.returncode}):\n"
            + "\n".join(problems or log.splitlines()[-40:]),
            pytrace=False,
        )
    assert _snapshot() == before, "the build changed a notebook or wrote a run folder"
    return out / "_build" / "html", log, seconds


def test_book_builds_every_page(built: tuple[Path, str, float]) -> None:
    html, _, _ = built
    assert (html / "index.html").is_file()
    for page in notebooks.toc_files(ROOT):
        target = html / page.relative_to(ROOT).with_suffix(".html")
        assert target.is_file(), f"{target.relative_to(html)} was not built"


def test_book_shows_committed_outputs_without_executing(built: tuple[Path, str, float]) -> None:
    html, log, seconds = built
    assert "Executing notebook" not in log and "Executed notebook" not in log, "the build ran a notebook"
    assert seconds < MAX_SECONDS, f"the build took {seconds:.0f} s; is it executing notebooks?"
    no_outputs, no_colab = [], []
    for nb in notebooks.toc_notebooks(ROOT):
        page = (html / nb.relative_to(ROOT).with_suffix(".html")).read_text(encoding="utf-8")
        if 'class="cell_output' not in page:
            no_outputs.append(nb.name)
        if "colab.research.google.com/github/" not in page:
            no_colab.append(nb.name)
    assert not no_outputs, f"pages built without outputs (run make notebooks): {no_outputs}"
    assert not no_colab, f"pages without a Colab launch button: {no_colab}"


def test_book_serves_its_own_mathjax(built: tuple[Path, str, float]) -> None:
    """Math renders without internet: every page with math loads MathJax from the book's _static/."""
    html, _, _ = built
    cdn, remote, missing, without = [], [], [], []
    pages_with_math = 0
    for page in sorted(html.rglob("*.html")):
        if "_static" in page.relative_to(html).parts:
            continue
        text = page.read_text(encoding="utf-8")
        name = str(page.relative_to(html))
        cdn += [f"{name}: {m.group(0)}" for m in MATHJAX_URL.finditer(text)]
        mathjax = [src for src in SCRIPT_SRC.findall(text) if "mathjax" in src.lower()]
        for src in mathjax:
            if "//" in src:
                remote.append(f"{name}: {src}")
            elif not (page.parent / src.split("?")[0]).resolve().is_file():
                missing.append(f"{name}: {src}")
        if 'class="math' in text:
            pages_with_math += 1
            if not mathjax:
                without.append(name)
    assert not cdn, "pages reference MathJax on a CDN:\n" + "\n".join(cdn)
    assert not remote, "pages load MathJax from another site:\n" + "\n".join(remote)
    assert not missing, "pages load a MathJax file the build lacks:\n" + "\n".join(missing)
    assert not without, f"pages with math that load no MathJax: {without}"
    assert pages_with_math, "no page has math: is dollarmath still enabled?"
    fonts = html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert any(fonts.glob("*.woff")), f"MathJax's fonts are missing from {fonts.relative_to(html)}"
