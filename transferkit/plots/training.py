"""Training curves: per-epoch metrics of a Keras ``History`` or a fitted model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import describe
from ..exceptions import InvalidInputError, InvalidTypeError
from ._figure import check_path, check_title, figure, save

__all__ = ["plot_training_curves"]


def _history_dict(history: Any) -> dict[str, list[float]]:
    """The non-empty per-epoch metric lists of ``history`` (a dict, or what holds one)."""
    source = history
    for attr in ("history_", "history"):  # a fitted estimator, or keras' History
        inner = getattr(source, attr, None)
        if isinstance(inner, Mapping):
            source = inner
            break
    if not isinstance(source, Mapping):
        raise InvalidTypeError(
            "`history` must be a dict of per-epoch metric lists (e.g. `model.fit(...).history` "
            f"or a fitted model's `history_`); received {describe(history)}."
        )
    out: dict[str, list[float]] = {}
    for key, values in source.items():
        try:
            arr = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"`history[{key!r}]` must be a list of numbers; received {describe(values)}."
            ) from None
        if arr.size:
            out[str(key)] = arr.tolist()
    if not out:
        raise InvalidInputError(
            "`history` must hold at least one metric with at least one epoch; received "
            f"{describe(history)}."
        )
    return out


def plot_training_curves(
    history: Any, path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Plot per-epoch training metrics, each next to its validation counterpart.

    One panel per metric (loss first, then accuracy, then any other), training in
    solid lines and ``val_*`` in dashed lines, the best validation epoch marked.

    Parameters
    ----------
    history : dict of str to list of float, or an object with ``history_``/``history``
        Per-epoch metrics: ``model.fit(...).history``, or ``CifarCNN.history_`` /
        ``DenseHead.history_`` (the fitted estimator itself works too).
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
    InvalidTypeError, InvalidInputError
        For a ``history`` without metrics or a ``path`` not ending in ``.png``.
    MissingDependencyError
        If matplotlib is not installed.
    """
    out = check_path(path)
    title = check_title(title)
    hist = _history_dict(history)
    bases = [k for k in hist if not k.startswith("val_")]
    bases += [k[4:] for k in hist if k.startswith("val_") and k[4:] not in hist]
    order = {"loss": 0, "accuracy": 1, "acc": 1}
    bases = sorted(dict.fromkeys(bases), key=lambda k: (order.get(k, 2), k))
    fig = figure(5.0 * len(bases), 3.8)
    axes = fig.subplots(1, len(bases), squeeze=False)[0]
    for ax, base in zip(axes, bases, strict=True):
        for key, style, label in ((base, "-", "training"), (f"val_{base}", "--", "validation")):
            values = hist.get(key)
            if values is None:
                continue
            epochs = np.arange(1, len(values) + 1)
            ax.plot(epochs, values, style, marker="o", markersize=3, label=label)
            if key.startswith("val_") and len(values) > 1:
                best = int(np.argmin(values) if "loss" in base else np.argmax(values))
                ax.scatter([best + 1], [values[best]], s=60, facecolors="none",
                           edgecolors="black", zorder=3, label=f"best (epoch {best + 1})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(base)
        ax.set_title(base)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize="small")
    return save(fig, out, suptitle=title)
