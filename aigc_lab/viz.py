"""Looking at results: image grids, training curves, and the package's own source code.

* :func:`image_grid` / :func:`show_images` lay images out with torchvision's ``make_grid``.
* :func:`read_scalars` reads the scalars a run logged back from its TensorBoard event files,
  and :func:`plot_curves` draws them, so a notebook shows the same curves TensorBoard does.
* :func:`show_source` displays the real source of a package function in a notebook: the
  book never pastes a copy that could drift from the code it runs.
"""

from __future__ import annotations

import html
import inspect
import os
import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import Tensor

from aigc_lab.images import check_images


def image_grid(images: Tensor, nrow: int = 8, padding: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile ``N x C x H x W`` images in ``[0, 1]`` into one ``H' x W' x 3`` array (``make_grid``)."""
    from torchvision.utils import make_grid

    check_images(images, channels=(1, 3))
    if images.shape[0] == 0:
        raise ValueError("images is empty: nothing to show")
    grid = make_grid(images.detach().float().cpu(), nrow=nrow, padding=padding, pad_value=pad_value)
    return grid.permute(1, 2, 0).numpy()


def show_images(
    images: Tensor,
    nrow: int = 8,
    *,
    title: str | None = None,
    ax: Any = None,
    scale: float = 0.6,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
) -> Any:
    """Show a grid of images in ``[0, 1]`` with matplotlib; returns the axes.

    ``row_labels`` / ``col_labels`` name the grid's rows and columns (e.g. one row per class).
    """
    import matplotlib.pyplot as plt

    grid = image_grid(images, nrow=nrow)
    if ax is None:
        rows = -(-images.shape[0] // nrow)
        cols = min(nrow, images.shape[0])
        aspect = (images.shape[-2] * rows) / (images.shape[-1] * cols)
        width = max(2.5, min(12.0, scale * cols * max(1.0, images.shape[-1] / 16)))
        _, ax = plt.subplots(figsize=(width, max(1.2, width * aspect)))
    ax.imshow(grid, interpolation="nearest", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    h, w = images.shape[-2] + 1, images.shape[-1] + 1
    if row_labels is not None:
        ax.set_yticks([1 + h * i + h / 2 - 1 for i in range(len(row_labels))], labels=list(row_labels))
        ax.tick_params(axis="y", length=0)
    if col_labels is not None:
        ax.set_xticks([1 + w * i + w / 2 - 1 for i in range(len(col_labels))], labels=list(col_labels))
        ax.tick_params(axis="x", length=0)
    if title:
        ax.set_title(title)
    return ax


def read_scalars(run_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar a run logged to TensorBoard: ``{tag: (steps, values)}``.

    When a run was resumed, a step logged twice keeps its latest value.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not any(run_dir.glob("events.out.tfevents.*")):
        raise FileNotFoundError(f"no TensorBoard event files in {run_dir}")
    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(run_dir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for event in acc.Scalars(tag):
                scalars.setdefault(tag, {})[event.step] = event.value
    return {tag: (np.array(sorted(d)), np.array([d[s] for s in sorted(d)])) for tag, d in scalars.items()}


def plot_curves(
    run_dir: str | os.PathLike,
    tags: Sequence[str] | None = None,
    *,
    ax: Any = None,
    title: str | None = None,
    logy: bool = False,
    label_prefix: str = "",
) -> Any:
    """Plot training curves read back from ``run_dir``'s TensorBoard events; returns the axes."""
    import matplotlib.pyplot as plt

    scalars = read_scalars(run_dir)
    tags = list(tags) if tags is not None else sorted(scalars)
    missing = [t for t in tags if t not in scalars]
    if missing:
        raise KeyError(f"{run_dir} logged no scalar {missing[0]!r}; it has {sorted(scalars)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    for tag in tags:
        steps, values = scalars[tag]
        ax.plot(steps, values, label=label_prefix + tag.split("/", 1)[-1])
    ax.set_xlabel("step")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    return ax


def source(obj: Any) -> str:
    """The source code of a package function, class or method, dedented."""
    try:
        return textwrap.dedent(inspect.getsource(obj))
    except (TypeError, OSError) as exc:
        raise ValueError(f"cannot show the source of {obj!r}: {exc}") from None


def show_source(obj: Any) -> Any:
    """Display the real source of ``obj`` in a notebook as highlighted Python.

    Returns an ``IPython.display.Markdown`` object holding a fenced code block, which both
    JupyterLab and the HTML book render with syntax highlighting.
    """
    from IPython.display import Markdown

    module = getattr(inspect.getmodule(obj), "__name__", "")
    header = f"*Source: `{module}.{obj.__qualname__}`*\n\n" if module and hasattr(obj, "__qualname__") else ""
    return Markdown(f"{header}```python\n{source(obj)}```")


class Table:
    """Rows of measurements that display as a table in JupyterLab and in the HTML book.

    It offers HTML (what both Jupyter and the book render first) and Markdown (``.data``,
    also handy for copying into prose).
    """

    def __init__(self, rows: Sequence[dict[str, Any]], digits: int = 3):
        if not rows:
            raise ValueError("a table needs at least one row")
        self.rows = [dict(row) for row in rows]
        self.columns = list(dict.fromkeys(key for row in rows for key in row))
        self.digits = digits

    def _cell(self, value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.{self.digits}g}"
        return "" if value is None else str(value)

    @property
    def data(self) -> str:
        """The table as Markdown."""
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(self._cell(row.get(c)) for c in self.columns) + " |" for row in self.rows]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.data

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(self._cell(row.get(c)))}</td>" for c in self.columns) + "</tr>"
            for row in self.rows
        )
        return f'<table class="table aigc-lab-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def show_table(rows: Sequence[dict[str, Any]], *, digits: int = 3) -> Table:
    """Display measurements as a table (one dict per row, keys as columns).

    Floats are rounded to ``digits`` significant digits, so the numbers in the book are exactly
    those the cell computed, rounded once.
    """
    return Table(rows, digits)


def to_numpy_image(image: Tensor) -> np.ndarray:
    """A single ``C x H x W`` image in ``[0, 1]`` as an ``H x W`` or ``H x W x 3`` array for ``imshow``."""
    check_images(image, batched=False, channels=(1, 3))
    array = image.detach().float().cpu().numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


__all__ = ["image_grid", "show_images", "read_scalars", "plot_curves", "source", "show_source", "show_table", "Table", "to_numpy_image"]
