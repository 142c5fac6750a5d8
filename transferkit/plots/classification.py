"""Classifier outputs: the confusion matrix, and images beside their top predictions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import describe
from ..exceptions import InvalidInputError, InvalidTypeError
from ._figure import (
    BAD,
    GOOD,
    NEUTRAL,
    check_path,
    check_positive_int,
    check_title,
    figure,
    grid_shape,
    save,
    show_image,
)

__all__ = ["plot_confusion_matrix", "plot_predictions_grid"]

_NORMALIZE = (None, "true", "pred", "all")


def _check_class_names(class_names: Any, name: str = "class_names") -> list[str] | None:
    """The class names as strings (None stays None); refused if empty or repeated."""
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
    out = check_path(path)
    title = check_title(title)
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
    fig = figure(side + 1.0, side)
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
    return save(fig, out)


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
    out = check_path(path)
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
        check_positive_int(name, value)
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
    n, cols, rows = grid_shape(len(x), int(ncols), int(max_images))
    label_width = min(max(len(s) for s in names), 14)
    fig = figure(cols * (3.4 + 0.07 * label_width), rows * 1.9)
    grid = fig.add_gridspec(rows, 2 * cols, width_ratios=[1.0, 1.2] * cols,
                            wspace=0.2 + 0.06 * label_width, hspace=0.55)
    for i in range(n):
        r, c = divmod(i, cols)
        ax_img = fig.add_subplot(grid[r, 2 * c])
        show_image(ax_img, x[i])
        caption = titles[i] if titles is not None else ""
        if truth is not None:
            caption = (caption + "\n" if caption else "") + f"true: {names[truth[i]]}"
        if caption:
            ax_img.set_title(caption, fontsize="x-small")
        order = np.argsort(-p[i], kind="stable")[: int(top_k)]
        colors = []
        for rank, cls in enumerate(order):
            if truth is None:
                colors.append("#1f77b4" if rank == 0 else NEUTRAL)
            elif cls == truth[i]:
                colors.append(GOOD)
            else:
                colors.append(BAD if rank == 0 else NEUTRAL)
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
    return save(fig, out)
