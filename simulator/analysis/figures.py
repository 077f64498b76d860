"""Figures without a display: new axes, condition labels and saving to a file.

Core objects:
    new_axes, new_grid: axes on a fresh ``matplotlib.figure.Figure`` (never pyplot: no global
        figure state, no GUI backend, nothing shown; the caller saves or displays the figure).
    save_figure: write a figure as PNG, SVG or PDF, by the path's suffix, creating its folder.
    condition_labels: one readable label per row from the columns that name a condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

FORMATS = (".png", ".svg", ".pdf")


def new_axes(ax: Axes | None = None, figsize: tuple[float, float] = (6.4, 4.0)) -> Axes:
    """``ax`` itself, or the axes of a new figure of ``figsize`` inches."""
    if ax is not None:
        return ax
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def new_grid(panels: int, ncols: int = 2, panel_size: tuple[float, float] = (4.8, 3.2)
             ) -> tuple[Figure, list[Axes]]:
    """A new figure with ``panels`` axes in rows of ``ncols`` (the unused cells are hidden)."""
    ncols = max(1, min(ncols, panels))
    nrows = -(-panels // ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = list(np.asarray(fig.subplots(nrows, ncols, squeeze=False)).ravel())
    for extra in axes[panels:]:
        extra.set_visible(False)
    return fig, axes[:panels]


def save_figure(fig: Figure | Axes, path: str | Path, *, dpi: int = 150) -> Path:
    """Write ``fig`` (or the figure of axes ``fig``) to ``path``.

    Args:
        fig: a figure, or axes whose figure is written.
        path: the file; its suffix picks the format (``.png``, ``.svg`` or ``.pdf``). Missing
            folders are created.
        dpi: the resolution of a PNG (and of any raster part of an SVG or PDF).

    Returns:
        The path written.

    Raises:
        ValueError: the suffix is not one of the formats above.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot save a figure as {path.name!r}: give a path ending in "
                         f"{', '.join(FORMATS)}")
    figure = fig.figure if isinstance(fig, Axes) else fig
    path.parent.mkdir(parents=True, exist_ok=True)
    # no creation date in SVG and PDF files: the same figure gives the same bytes, so a
    # figure kept in git changes only when its content does
    metadata = {"Date": None} if suffix in (".svg", ".pdf") else None
    figure.savefig(path, dpi=dpi, format=suffix[1:], metadata=metadata)
    return path


def condition_labels(frame: pd.DataFrame, by: Sequence[str]) -> pd.Series:
    """Per row, the values of the ``by`` columns as one label (``"backfire=0.05,
    algorithm=random"``; a single column ``label`` gives its value as it is).

    Dotted parameter keys are shortened to their last part where that stays unambiguous.
    """
    by = list(by)
    if not by:
        return pd.Series("all runs", index=frame.index)
    if by == ["label"]:
        return frame["label"].astype(str)
    short = [key.rsplit(".", 1)[-1] for key in by]
    names = short if len(set(short)) == len(short) else by
    if len(by) == 1:
        return names[0] + "=" + frame[by[0]].astype(str)
    parts = [name + "=" + frame[key].astype(str) for name, key in zip(names, by, strict=True)]
    out = parts[0]
    for part in parts[1:]:
        out = out + ", " + part
    return out
