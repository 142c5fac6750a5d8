"""Benchmark results: accuracy against extraction cost, and against labelled images."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import describe
from ..exceptions import InvalidInputError, InvalidTypeError
from ._figure import check_path, check_title, figure, save

__all__ = ["plot_accuracy_vs_cost", "plot_label_efficiency"]


def _check_rows(rows: Any, keys: str) -> None:
    """Refuse ``rows`` unless it is a non-empty list (of dicts with ``keys``)."""
    if isinstance(rows, Mapping | str) or not isinstance(rows, Sequence) or not rows:
        raise InvalidInputError(
            f"`rows` must be a non-empty list of dicts with {keys}; received {describe(rows)}."
        )


def _check_row(i: int, row: Any, keys: tuple[str, ...]) -> None:
    """Refuse ``rows[i]`` unless it is a dict with every one of ``keys``."""
    if not isinstance(row, Mapping):
        raise InvalidTypeError(f"`rows[{i}]` must be a dict; received {describe(row)}.")
    missing = [k for k in keys if k not in row]
    if missing:
        names = ", ".join(repr(k) for k in keys[:-1]) + f" and {keys[-1]!r}"
        raise InvalidInputError(
            f"`rows[{i}]` must have keys {names}; it lacks {missing} (received keys "
            f"{sorted(map(str, row))})."
        )


def plot_accuracy_vs_cost(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    cost: str | None = None,
    title: str | None = None,
) -> Path:
    """Plot accuracy against extraction cost, one labelled point per configuration.

    Parameters
    ----------
    rows : list of dict
        Benchmark results, one per configuration (backbone, input size...), each with
        ``"label"`` (str), ``"accuracy"`` (in [0, 1]) and a cost: ``"seconds"``
        (extraction time; lower is better) or ``"images_per_s"`` (throughput; higher
        is better).
    path : str or path-like
        The ``.png`` file to write.
    cost : {"seconds", "images_per_s"}, optional
        Which cost to put on the x axis; by default ``"seconds"`` when every row has
        it, else ``"images_per_s"``.
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InvalidInputError
        For empty ``rows``, a row without a label, accuracy or the chosen cost, or
        values out of range.
    MissingDependencyError
        If matplotlib is not installed.

    Examples
    --------
    >>> plot_accuracy_vs_cost([
    ...     {"label": "VGG-16 @64", "accuracy": 0.71, "seconds": 95.0},
    ...     {"label": "VGG-16 @224", "accuracy": 0.84, "seconds": 1180.0},
    ... ], "cost.png")  # doctest: +SKIP
    """
    out = check_path(path)
    title = check_title(title)
    _check_rows(rows, "'label', 'accuracy' and 'seconds' or 'images_per_s'")
    costs = ("seconds", "images_per_s")
    if cost is None:
        cost = "seconds" if all(isinstance(r, Mapping) and "seconds" in r for r in rows) else (
            "images_per_s"
        )
    elif cost not in costs:
        raise InvalidInputError(f"`cost` must be one of {list(costs)}; received {describe(cost)}.")
    labels, accs, xs = [], [], []
    for i, row in enumerate(rows):
        _check_row(i, row, ("label", "accuracy", cost))
        try:
            acc, value = float(row["accuracy"]), float(row[cost])
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"`rows[{i}]` must have numeric 'accuracy' and {cost!r}; received "
                f"{describe(row['accuracy'])} and {describe(row[cost])}."
            ) from None
        if not 0.0 <= acc <= 1.0:
            raise InvalidInputError(
                f"`rows[{i}]['accuracy']` must be in [0, 1]; received {acc!r}."
            )
        if not math.isfinite(value) or value <= 0:
            raise InvalidInputError(
                f"`rows[{i}][{cost!r}]` must be a positive number; received {value!r}."
            )
        labels.append(str(row["label"]))
        accs.append(acc)
        xs.append(value)
    fig = figure(7.0, 4.8)
    ax = fig.subplots()
    ax.scatter(xs, accs, s=70, c=range(len(xs)), cmap="viridis", edgecolors="black", zorder=3)
    for label, xv, yv in zip(labels, xs, accs, strict=True):
        ax.annotate(label, (xv, yv), textcoords="offset points", xytext=(6, 6), fontsize="small")
    if max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    if cost == "seconds":
        ax.set_xlabel("extraction time (s, lower is cheaper)")
    else:
        ax.set_xlabel("throughput (images/s, higher is cheaper)")
    ax.set_ylabel("test accuracy")
    low, high = min(accs), max(accs)
    margin = max(0.02, 0.15 * (high - low))
    ax.set_ylim(max(0.0, low - margin), min(1.0, high + margin))
    ax.grid(alpha=0.3)
    ax.set_title(title or "accuracy vs extraction cost")
    return save(fig, out)


def plot_label_efficiency(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Plot test accuracy against labelled images per class, one line per method.

    Parameters
    ----------
    rows : list of dict
        One per run, each with ``"method"`` (str), ``"per_class"`` (positive int) and
        ``"accuracy"`` (in [0, 1]); several runs (seeds) of one method and count are
        drawn as their mean with a bar from the lowest to the highest.
    path : str or path-like
        The ``.png`` file to write.
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InvalidInputError
        For empty ``rows``, a row without those keys, or values out of range.
    MissingDependencyError
        If matplotlib is not installed.

    Examples
    --------
    >>> plot_label_efficiency([
    ...     {"method": "frozen + logreg", "per_class": 10, "accuracy": 0.52},
    ...     {"method": "frozen + logreg", "per_class": 100, "accuracy": 0.71},
    ... ], "label_efficiency.png")  # doctest: +SKIP
    """
    out = check_path(path)
    title = check_title(title)
    _check_rows(rows, "'method', 'per_class' and 'accuracy'")
    runs: dict[str, dict[int, list[float]]] = {}
    for i, row in enumerate(rows):
        _check_row(i, row, ("method", "per_class", "accuracy"))
        count, acc = row["per_class"], row["accuracy"]
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
            raise InvalidInputError(
                f"`rows[{i}]['per_class']` must be a positive integer; received "
                f"{describe(count)}.")
        if isinstance(acc, bool) or not isinstance(acc, int | float) or not 0 <= acc <= 1:
            raise InvalidInputError(
                f"`rows[{i}]['accuracy']` must be a number in [0, 1]; received {describe(acc)}.")
        runs.setdefault(str(row["method"]), {}).setdefault(int(count), []).append(float(acc))
    fig = figure(7.0, 4.8)
    ax = fig.subplots()
    for method, by_count in runs.items():
        counts = sorted(by_count)
        means = [float(np.mean(by_count[c])) for c in counts]
        low = [m - min(by_count[c]) for m, c in zip(means, counts, strict=True)]
        high = [max(by_count[c]) - m for m, c in zip(means, counts, strict=True)]
        ax.errorbar(counts, means, yerr=[low, high], marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("labelled images per class")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    ax.set_title(title or "accuracy vs labelled images")
    return save(fig, out)
