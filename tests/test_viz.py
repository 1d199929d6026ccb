import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from aigc_lab import viz
from aigc_lab.losses import wgan_critic_loss


def test_image_grid_tiles_images():
    grid = viz.image_grid(torch.ones(6, 1, 4, 4), nrow=3, padding=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        viz.image_grid(torch.full((2, 1, 4, 4), -1.0))
    with pytest.raises(ValueError, match="empty"):
        viz.image_grid(torch.zeros(0, 1, 4, 4))


def test_show_images_labels_rows_and_columns():
    ax = viz.show_images(torch.rand(6, 3, 4, 4), nrow=3, title="t", row_labels=["a", "b"], col_labels=["x", "y", "z"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert ax.get_title() == "t"


def test_read_scalars_and_plot_curves(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path)) as w:
        for step in (1, 2, 3):
            w.add_scalar("train/loss", 1.0 / step, step)
    with SummaryWriter(str(tmp_path)) as w:  # a resumed run logs step 3 again
        w.add_scalar("train/loss", 0.125, 3)
    steps, values = viz.read_scalars(tmp_path)["train/loss"]
    assert steps.tolist() == [1, 2, 3]
    assert np.allclose(values, [1.0, 0.5, 0.125])
    ax = viz.plot_curves(tmp_path, ["train/loss"])
    assert ax.get_lines()[0].get_label() == "loss"
    with pytest.raises(KeyError, match="no scalar"):
        viz.plot_curves(tmp_path, ["train/other"])
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        viz.read_scalars(tmp_path / "empty")


def test_show_source_shows_the_real_function():
    shown = viz.show_source(wgan_critic_loss)
    assert "def wgan_critic_loss" in shown.data and shown.data.startswith("*Source: `aigc_lab.losses.wgan_critic_loss`")
    assert "```python" in shown.data
    with pytest.raises(ValueError, match="cannot show the source"):
        viz.source(42)


def test_to_numpy_image():
    assert viz.to_numpy_image(torch.rand(1, 4, 5)).shape == (4, 5)
    assert viz.to_numpy_image(torch.rand(3, 4, 5)).shape == (4, 5, 3)


def test_show_table_formats_rows():
    table = viz.show_table([{"model": "a", "score": 0.123456}, {"model": "b", "score": 2.0, "extra": 3}], digits=2)
    assert table.data.splitlines() == ["| model | score | extra |", "|---|---|---|", "| a | 0.12 |  |", "| b | 2 | 3 |"]
    assert "<th>model</th>" in table._repr_html_() and "<td>0.12</td>" in table._repr_html_()
    assert "&lt;b&gt;" in viz.show_table([{"x": "<b>"}])._repr_html_(), "cells are escaped"
    with pytest.raises(ValueError, match="at least one row"):
        viz.show_table([])
