"""Deterministic class-balanced subsets of labelled examples.

:func:`balanced_subset` picks by turns over the classes (in increasing label
order), each class giving its earliest examples first, and returns the chosen
examples in their original order. It draws no random numbers: the same inputs
always give the same subset, and a larger ``n`` keeps every example a smaller
``n`` chose.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_positive_int, describe
from ..exceptions import InvalidInputError

__all__ = ["balanced_subset"]


def balanced_subset(x: Any, y: Any, n: int | None) -> tuple[Any, np.ndarray]:
    """Keep ``n`` examples spread evenly over the classes, in their original order.

    Classes take turns, each giving its first examples in order, until ``n`` are
    chosen (a class that runs out leaves its turn to the others). The result is
    deterministic, and ``n`` at least ``len(y)`` (or None) returns the inputs.

    Parameters
    ----------
    x : array-like of shape (m, ...)
        Examples; anything indexable by an integer array (NumPy array,
        :class:`ImageFolderDataset`...).
    y : array-like of shape (m,)
        Integer labels.
    n : int or None
        Number of examples to keep.

    Returns
    -------
    x_subset, y_subset
        ``x[keep]`` and ``y[keep]`` for sorted indices ``keep``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(8)
    >>> balanced_subset(x, np.array([0, 0, 0, 0, 0, 1, 1, 2]), 5)[0]
    array([0, 1, 5, 6, 7])
    """
    labels = np.asarray(y)
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise InvalidInputError(
            f"`y` must be a 1-D array of integer labels; received {describe(labels)}."
        )
    if len(x) != len(labels):
        raise InvalidInputError(
            f"`x` and `y` must have the same length; received {len(x)} examples and "
            f"{len(labels)} labels."
        )
    count = check_positive_int("n", n, allow_none=True)
    if count is None or count >= len(labels):
        return x, labels
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    longest = max(len(idx) for idx in per_class)
    grid = np.full((longest, len(per_class)), -1, dtype=np.int64)
    for column, idx in enumerate(per_class):
        grid[: len(idx), column] = idx
    turns = grid.reshape(-1)
    keep = np.sort(turns[turns >= 0][:count])
    return x[keep], labels[keep]
