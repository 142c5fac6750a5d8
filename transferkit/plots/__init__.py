"""Plots saved as PNG files: training curves, confusion matrices, predictions, costs, neighbours.

Each function draws one figure with matplotlib's Agg renderer (no window, no display
needed, pyplot's global state untouched), writes it to ``path`` (a ``.png`` file;
missing folders are created) and returns the path.

matplotlib is an optional dependency: ``pip install "transferkit[plots]"``. It is
imported when a plot is drawn, and its absence raises
:class:`MissingDependencyError` saying what to install.

The package's modules:

* ``training``: :func:`plot_training_curves` (per-epoch metrics);
* ``classification``: :func:`plot_confusion_matrix` and :func:`plot_predictions_grid`
  (images beside their top predictions);
* ``benchmarks``: :func:`plot_accuracy_vs_cost` and :func:`plot_label_efficiency`;
* ``images``: :func:`plot_neighbours` (queries and their nearest neighbours) and
  :func:`plot_image_pairs` (pairs side by side, e.g. near-duplicates);
* ``_figure``: what they share: the figure on an Agg canvas, saving (with an optional
  figure title), the layout of a grid, the checks of ``path``, ``title`` and positive
  integers, and drawing one image.

Examples
--------
>>> from transferkit.plots import plot_confusion_matrix
>>> plot_confusion_matrix(y_test, head.predict(f_test), class_names,
...                       "confusion.png", normalize="true")  # doctest: +SKIP
PosixPath('confusion.png')
"""

from __future__ import annotations

from ..exceptions import MissingDependencyError
from .benchmarks import plot_accuracy_vs_cost, plot_label_efficiency
from .classification import plot_confusion_matrix, plot_predictions_grid
from .images import plot_image_pairs, plot_neighbours
from .training import plot_training_curves

__all__ = [
    "MissingDependencyError",
    "plot_accuracy_vs_cost",
    "plot_confusion_matrix",
    "plot_image_pairs",
    "plot_label_efficiency",
    "plot_neighbours",
    "plot_predictions_grid",
    "plot_training_curves",
]
