"""Plots saved as PNG files: training curves, confusion matrices, predictions, costs.

Each function draws one figure with matplotlib's Agg renderer (no window, no display
needed, pyplot's global state untouched), writes it to ``path`` (a ``.png`` file;
missing folders are created) and returns the path.

matplotlib is an optional dependency: ``pip install "transferkit[plots]"``. It is
imported when a plot is drawn, and its absence raises
:class:`MissingDependencyError` saying what to install.

Examples
--------
>>> from transferkit.plots import plot_confusion_matrix
>>> plot_confusion_matrix(y_test, head.predict(f_test), class_names,
...                       "confusion.png", normalize="true")  # doctest: +SKIP
PosixPath('confusion.png')
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import describe
from .exceptions import InvalidInputError, InvalidTypeError, MissingDependencyError

__all__ = [
    "MissingDependencyError",
    "plot_accuracy_vs_cost",
    "plot_confusion_matrix",
    "plot_label_efficiency",
    "plot_predictions_grid",
    "plot_training_curves",
]

_NORMALIZE = (None, "true", "pred", "all")
_DPI = 100
_GOOD = "#2ca02c"
_BAD = "#d62728"
_NEUTRAL = "#7f7f7f"


# --------------------------------------------------------------------------- helpers


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure attached to an Agg canvas (no pyplot, no backend switch)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "Plotting needs matplotlib, which is not installed: expected the `matplotlib` "
            'package; install it with `pip install "transferkit[plots]"` (or `pip install '
            f'matplotlib`). ({exc})'
        ) from exc
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _check_path(path: Any) -> Path:
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


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI, bbox_inches="tight")
    return path


def _check_title(title: Any) -> str | None:
    if title is not None and not isinstance(title, str):
        raise InvalidTypeError(f"`title` must be a string or None; received {describe(title)}.")
    return title


def _check_class_names(class_names: Any, name: str = "class_names") -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence | np.ndarray):
        raise InvalidTypeError(
            f"`{name}` must be a list of class names or None; received {describe(class_names)}."
        )
    names = [str(c) for c in class_names]
    if not names:
        raise InvalidInputError(f"`{name}` must not be empty; received {describe(class_names)}.")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"`{name}` must not repeat names; received {names}.")
    return names


def _labels_to_indices(
    y: Any, names: list[str], name: str
) -> np.ndarray:
    """Map labels (indices into ``names``, or the names themselves) to indices."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise InvalidInputError(f"`{name}` must be 1-D labels; received shape {arr.shape}.")
    if arr.dtype.kind in "iu":
        bad = arr[(arr < 0) | (arr >= len(names))]
        if bad.size:
            raise InvalidInputError(
                f"`{name}` must hold class indices in 0..{len(names) - 1} (one per class "
                f"name) or class names; received {int(bad[0])}."
            )
        return arr.astype(np.int64)
    lookup = {n: i for i, n in enumerate(names)}
    out = np.empty(len(arr), dtype=np.int64)
    for i, value in enumerate(arr.tolist()):
        key = str(value)
        if key not in lookup:
            raise InvalidInputError(
                f"`{name}` must hold class names from `class_names` ({names}) or class "
                f"indices; received {value!r}."
            )
        out[i] = lookup[key]
    return out


# --------------------------------------------------------------------------- curves


def _check_rows(rows: Any, keys: str) -> None:
    """Refuse ``rows`` unless it is a non-empty list (of dicts with ``keys``)."""
    if isinstance(rows, Mapping | str) or not isinstance(rows, Sequence) or not rows:
        raise InvalidInputError(
            f"`rows` must be a non-empty list of dicts with {keys}; received {describe(rows)}."
        )


def _history_dict(history: Any) -> dict[str, list[float]]:
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
    out = _check_path(path)
    title = _check_title(title)
    hist = _history_dict(history)
    bases = [k for k in hist if not k.startswith("val_")]
    bases += [k[4:] for k in hist if k.startswith("val_") and k[4:] not in hist]
    order = {"loss": 0, "accuracy": 1, "acc": 1}
    bases = sorted(dict.fromkeys(bases), key=lambda k: (order.get(k, 2), k))
    fig = _figure(5.0 * len(bases), 3.8)
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
    if title:
        fig.suptitle(title)
    return _save(fig, out)


# --------------------------------------------------------------------------- confusion


def plot_confusion_matrix(
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str] | None,
    path: str | os.PathLike[str],
    *,
    normalize: str | None = None,
    title: str | None = None,
) -> Path:
    """Plot a confusion matrix: true classes in rows, predicted classes in columns.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        True and predicted labels: class indices into ``class_names``, or the
        class names themselves.
    class_names : list of str or None
        Class names in label order; None uses the sorted labels found in
        ``y_true`` and ``y_pred``.
    path : str or path-like
        The ``.png`` file to write.
    normalize : {None, "true", "pred", "all"}, default=None
        As in :func:`sklearn.metrics.confusion_matrix`: None shows counts, ``"true"``
        the fraction of each true class (rows sum to 1, the diagonal is the recall),
        ``"pred"`` of each predicted class, ``"all"`` of all samples.
    title : str, optional
        Figure title; by default the accuracy.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InvalidInputError
        For labels outside ``class_names``, mismatched lengths or a bad ``normalize``.
    MissingDependencyError
        If matplotlib is not installed.
    """
    out = _check_path(path)
    title = _check_title(title)
    if normalize not in _NORMALIZE:
        raise InvalidInputError(
            f"`normalize` must be one of {list(_NORMALIZE)}; received {describe(normalize)}."
        )
    true_arr, pred_arr = np.asarray(y_true), np.asarray(y_pred)
    if true_arr.ndim != 1 or pred_arr.ndim != 1 or len(true_arr) != len(pred_arr):
        raise InvalidInputError(
            "`y_true` and `y_pred` must be 1-D with one label per sample each; received "
            f"shapes {true_arr.shape} and {pred_arr.shape}."
        )
    if len(true_arr) == 0:
        raise InvalidInputError("`y_true` is empty; pass at least one sample.")
    names = _check_class_names(class_names)
    if names is None:
        found = np.unique(np.concatenate([true_arr.astype(str), pred_arr.astype(str)]))
        if true_arr.dtype.kind in "iu" and pred_arr.dtype.kind in "iu":
            found = np.unique(np.concatenate([true_arr, pred_arr]))
            names = [str(v) for v in found]
            lookup = {int(v): i for i, v in enumerate(found)}
            t = np.asarray([lookup[int(v)] for v in true_arr])
            p = np.asarray([lookup[int(v)] for v in pred_arr])
        else:
            names = found.tolist()
            t = _labels_to_indices(true_arr.astype(str), names, "y_true")
            p = _labels_to_indices(pred_arr.astype(str), names, "y_pred")
    else:
        t = _labels_to_indices(true_arr, names, "y_true")
        p = _labels_to_indices(pred_arr, names, "y_pred")
    k = len(names)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (t, p), 1)
    if normalize is None:
        values = counts.astype(np.float64)
    else:
        axis = {"true": 1, "pred": 0}.get(normalize)
        denom = counts.sum() if axis is None else counts.sum(axis=axis, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(denom > 0, counts / np.maximum(denom, 1), 0.0)
    accuracy = float(np.trace(counts) / counts.sum())

    side = max(4.5, 0.55 * k + 2.5)
    fig = _figure(side + 1.0, side)
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 25:
        threshold = values.max() / 2.0 if values.max() > 0 else 1.0
        for i in range(k):
            for j in range(k):
                text = f"{values[i, j]:.2f}" if normalize else f"{counts[i, j]:d}"
                ax.text(j, i, text, ha="center", va="center", fontsize="x-small" if k > 12
                        else "small", color="white" if values[i, j] > threshold else "black")
    label = {None: "counts", "true": "normalized over true classes",
             "pred": "normalized over predictions", "all": "normalized over all samples"}
    ax.set_title(title or f"accuracy {accuracy:.3f} ({len(t)} samples; {label[normalize]})")
    return _save(fig, out)


# --------------------------------------------------------------------------- predictions


def plot_predictions_grid(
    images: Any,
    probs: Any,
    class_names: Sequence[str] | None,
    path: str | os.PathLike[str],
    top_k: int = 3,
    true_labels: Any = None,
    *,
    ncols: int = 4,
    max_images: int = 32,
    titles: Sequence[str] | None = None,
) -> Path:
    """Plot sample images, each beside its top predictions as horizontal bars.

    Parameters
    ----------
    images : array-like of shape (n, height, width, 3)
        RGB images, uint8 or floats in [0, 255].
    probs : array-like of shape (n, n_classes)
        Predicted class probabilities (``predict_proba``), columns in label order.
    class_names : list of str or None
        Names of the ``n_classes`` columns; None numbers them.
    path : str or path-like
        The ``.png`` file to write.
    top_k : int, default=3
        Bars per image (at most ``n_classes``).
    true_labels : array-like of shape (n,), optional
        True classes (column indices or class names). Correct top predictions are
        then drawn green and wrong ones red, and the true class is named.
    ncols : int, default=4
        Images per row.
    max_images : int, default=32
        Only the first ``max_images`` images are drawn.
    titles : list of str, optional
        A caption per image (e.g. file names).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InvalidInputError
        For mismatched shapes, probabilities that are not finite, ``top_k`` out of
        range or labels outside ``class_names``.
    MissingDependencyError
        If matplotlib is not installed.
    """
    out = _check_path(path)
    x = np.asarray(images)
    p = np.asarray(probs)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InvalidInputError(
            f"`images` must have shape (n, height, width, 3); received {describe(x)}."
        )
    if p.ndim != 2 or p.shape[0] != x.shape[0]:
        raise InvalidInputError(
            f"`probs` must have shape (n_images, n_classes) = ({x.shape[0]}, n_classes); "
            f"received shape {p.shape}."
        )
    if p.dtype.kind not in "fiu" or not np.isfinite(p).all():
        raise InvalidInputError(f"`probs` must hold finite numbers; received {describe(p)}.")
    if len(x) == 0:
        raise InvalidInputError("`images` is empty; pass at least one image.")
    n_classes = p.shape[1]
    names = _check_class_names(class_names)
    if names is None:
        names = [str(i) for i in range(n_classes)]
    if len(names) != n_classes:
        raise InvalidInputError(
            f"`class_names` must name the {n_classes} columns of `probs`; received "
            f"{len(names)} names."
        )
    for name, value in (("top_k", top_k), ("ncols", ncols), ("max_images", max_images)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InvalidInputError(
                f"`{name}` must be a positive integer; received {describe(value)}."
            )
    if top_k > n_classes:
        raise InvalidInputError(
            f"`top_k` must be at most the number of classes ({n_classes}); received {top_k}."
        )
    truth = None
    if true_labels is not None:
        truth = _labels_to_indices(np.asarray(true_labels), names, "true_labels")
        if len(truth) != len(x):
            raise InvalidInputError(
                f"`true_labels` must have one label per image ({len(x)}); received {len(truth)}."
            )
    if titles is not None:
        if isinstance(titles, str) or len(titles) != len(x):
            raise InvalidInputError(
                f"`titles` must be a list of {len(x)} strings (one per image); received "
                f"{describe(titles)}."
            )
    n = min(len(x), int(max_images))
    cols = min(int(ncols), n)
    rows = math.ceil(n / cols)
    label_width = min(max(len(s) for s in names), 14)
    fig = _figure(cols * (3.4 + 0.07 * label_width), rows * 1.9)
    grid = fig.add_gridspec(rows, 2 * cols, width_ratios=[1.0, 1.2] * cols,
                            wspace=0.2 + 0.06 * label_width, hspace=0.55)
    for i in range(n):
        r, c = divmod(i, cols)
        ax_img = fig.add_subplot(grid[r, 2 * c])
        image = x[i]
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        ax_img.imshow(image, interpolation="nearest" if image.shape[0] <= 64 else "antialiased")
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        caption = titles[i] if titles is not None else ""
        if truth is not None:
            caption = (caption + "\n" if caption else "") + f"true: {names[truth[i]]}"
        if caption:
            ax_img.set_title(caption, fontsize="x-small")
        order = np.argsort(-p[i], kind="stable")[: int(top_k)]
        colors = []
        for rank, cls in enumerate(order):
            if truth is None:
                colors.append("#1f77b4" if rank == 0 else _NEUTRAL)
            elif cls == truth[i]:
                colors.append(_GOOD)
            else:
                colors.append(_BAD if rank == 0 else _NEUTRAL)
        ax_bar = fig.add_subplot(grid[r, 2 * c + 1])
        ypos = np.arange(len(order))[::-1]
        ax_bar.barh(ypos, p[i][order], color=colors)
        ax_bar.set_yticks(ypos, labels=[names[j][:label_width] for j in order], fontsize="x-small")
        ax_bar.set_xlim(0, 1)
        ax_bar.set_xticks([0, 0.5, 1], labels=["0", "50%", "100%"])
        ax_bar.tick_params(axis="x", labelsize="xx-small")
        for y, v in zip(ypos, p[i][order], strict=True):
            ax_bar.text(min(float(v), 1.0) + 0.02, y, f"{float(v):.0%}", va="center",
                        fontsize="xx-small")
        for side in ("top", "right"):
            ax_bar.spines[side].set_visible(False)
    return _save(fig, out)


# --------------------------------------------------------------------------- cost


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
    out = _check_path(path)
    title = _check_title(title)
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
        if not isinstance(row, Mapping):
            raise InvalidTypeError(f"`rows[{i}]` must be a dict; received {describe(row)}.")
        missing = [k for k in ("label", "accuracy", cost) if k not in row]
        if missing:
            raise InvalidInputError(
                f"`rows[{i}]` must have keys 'label', 'accuracy' and {cost!r}; it lacks "
                f"{missing} (received keys {sorted(map(str, row))})."
            )
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
    fig = _figure(7.0, 4.8)
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
    return _save(fig, out)


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
    out = _check_path(path)
    title = _check_title(title)
    _check_rows(rows, "'method', 'per_class' and 'accuracy'")
    runs: dict[str, dict[int, list[float]]] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidTypeError(f"`rows[{i}]` must be a dict; received {describe(row)}.")
        missing = [k for k in ("method", "per_class", "accuracy") if k not in row]
        if missing:
            raise InvalidInputError(
                f"`rows[{i}]` must have keys 'method', 'per_class' and 'accuracy'; it lacks "
                f"{missing}."
            )
        count, acc = row["per_class"], row["accuracy"]
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
            raise InvalidInputError(
                f"`rows[{i}]['per_class']` must be a positive integer; received "
                f"{describe(count)}.")
        if isinstance(acc, bool) or not isinstance(acc, int | float) or not 0 <= acc <= 1:
            raise InvalidInputError(
                f"`rows[{i}]['accuracy']` must be a number in [0, 1]; received {describe(acc)}.")
        runs.setdefault(str(row["method"]), {}).setdefault(int(count), []).append(float(acc))
    fig = _figure(7.0, 4.8)
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
    return _save(fig, out)
