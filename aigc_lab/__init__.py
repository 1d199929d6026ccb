"""aigc_lab: the companion package of the AIGC Lab book.

Image generation with deep learning (AIGC, 人工智能生成内容) that runs on any machine:
datasets that need no download, small models that train in minutes on a CPU, one training
loop with TensorBoard logging and resumable checkpoints, and the measurements the book reports.

The modules follow the book::

    runtime      device, seeds, quick mode
    data         datasets: digits, photos, objects3d, online sets, your own folder
    models       one file per model family
    losses       the losses the book teaches
    train        the training loop
    checkpoint   atomic save, safe load
    viz          image grids, training curves, showing source code
    provenance   which package code made a notebook's outputs or a run's weights
    cli          python -m aigc_lab train|sample|eval
"""

__version__ = "0.1.0"

# Imported first so that, while the book is executed, every process of the package reports the
# code it ran (a no-op otherwise; see aigc_lab.provenance).
from aigc_lab import provenance as _provenance  # noqa: E402,F401
