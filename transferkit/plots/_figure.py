"""What every plot shares: the figure on an Agg canvas, saving, grids, the common argument checks.

matplotlib is imported by :func:`figure` only, when a plot is drawn (after its
arguments are checked), so that importing :mod:`transferkit.plots` needs no matplotlib
and its absence raises :class:`~transferkit.exceptions.MissingDependencyError` saying
what to install. Figures are drawn with matplotlib's Agg renderer on a
:class:`~matplotlib.figure.Figure` of their own: no window, no display, and pyplot's
global state (and backend) untouched.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import describe
from ..exceptions import InvalidInputError, InvalidTypeError, MissingDependencyError

__all__ = [
    "BAD",
    "DPI",
    "GOOD",
    "NEUTRAL",
    "check_path",
    "check_positive_int",
    "check_title",
    "figure",
    "grid_shape",
    "save",
    "show_image",
]

#: Resolution of the saved PNG files, in dots per inch.
DPI = 100
#: Colours: a correct prediction, a wrong one, anything else.
GOOD = "#2ca02c"
BAD = "#d62728"
NEUTRAL = "#7f7f7f"


def figure(width: float, height: float) -> Any:
    """A matplotlib Figure attached to an Agg canvas (no pyplot, no backend switch).

    Parameters
    ----------
    width, height : float
        Size in inches.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    MissingDependencyError
        If matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "Plotting needs matplotlib, which is not installed: expected the `matplotlib` "
            'package; install it with `pip install "transferkit[plots]"` (or `pip install '
            f'matplotlib`). ({exc})'
        ) from exc
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def check_path(path: Any) -> Path:
    """``path`` as a :class:`~pathlib.Path`, refused unless it names a ``.png`` file.

    Raises
    ------
    InvalidTypeError
        For anything but a string or path-like.
    InvalidInputError
        For a path not ending in ``.png``.
    """
    if isinstance(path, bool) or not isinstance(path, str | os.PathLike):
        raise InvalidTypeError(
            f"`path` must be a file path ending in '.png'; received {describe(path)}."
        )
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise InvalidInputError(
            f"`path` must end in '.png' (plots are saved as PNG); received {str(out)!r}."
        )
    return out


def save(fig: Any, path: Path, *, suptitle: str | None = None) -> Path:
    """Write ``fig`` to ``path`` as PNG (creating missing folders) and return ``path``.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure, from :func:`figure`.
    path : pathlib.Path
        The ``.png`` file, from :func:`check_path`.
    suptitle : str, optional
        A title over the whole figure, set first when given (not empty).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    if suptitle:
        fig.suptitle(suptitle)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    return path


def grid_shape(n: int, ncols: int, most: int) -> tuple[int, int, int]:
    """How a grid of at most ``most`` of ``n`` items, ``ncols`` per row, is laid out.

    Parameters
    ----------
    n : int
        Number of items given (>= 1).
    ncols : int
        Items per row asked for (>= 1, already checked).
    most : int
        Most items drawn (>= 1, already checked): the first ``most``.

    Returns
    -------
    shown : int
        Items drawn: ``min(n, most)``.
    cols : int
        Columns: ``min(ncols, shown)``, so that a short grid is not padded.
    rows : int
        Rows needed for ``shown`` items in ``cols`` columns.
    """
    shown = min(n, most)
    cols = min(ncols, shown)
    return shown, cols, math.ceil(shown / cols)


def check_title(title: Any) -> str | None:
    """``title``, refused unless it is a string or None."""
    if title is not None and not isinstance(title, str):
        raise InvalidTypeError(f"`title` must be a string or None; received {describe(title)}.")
    return title


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int, refused (naming ``name``) unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InvalidInputError(
            f"`{name}` must be a positive integer; received {describe(value)}."
        )
    return int(value)


def show_image(ax: Any, image: np.ndarray) -> None:
    """Draw one (height, width, 3) RGB image, uint8 or floats in [0, 255], without ticks.

    Floats are clipped to [0, 255]; small images are drawn with sharp pixels.
    """
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    ax.imshow(image, interpolation="nearest" if image.shape[0] <= 64 else "antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
