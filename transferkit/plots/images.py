"""Images side by side for similarity search: queries with their neighbours, and image pairs.

:func:`plot_neighbours` draws one row per query image: the query, framed, then its
nearest neighbours left to right, each captioned with its similarity.
:func:`plot_image_pairs` draws a grid of pairs (``a | b``) captioned with their
similarity, e.g. the near-duplicate test/train pairs found by a leak search.

Images are RGB arrays, uint8 or floats in [0, 255] (floats are clipped); the two sides
(queries and neighbours, ``a`` and ``b``) may have different sizes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import describe
from ..exceptions import InvalidInputError, InvalidTypeError
from ._figure import (
    check_path,
    check_positive_int,
    check_title,
    figure,
    grid_shape,
    save,
    show_image,
)

__all__ = ["plot_image_pairs", "plot_neighbours"]

_QUERY = "#1f77b4"  # the frame around each query image
_CELL = 1.5  # inches per image
_CAPTION = 24  # characters of a caption line; longer ones are cut with "..."


def _images(name: str, value: Any, ndim: int, shape: str) -> np.ndarray:
    """``value`` as an array of RGB images with ``ndim`` axes, the last of size 3."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged nested lists
        raise InvalidInputError(
            f"`{name}` must be an array of shape {shape}; received {describe(value)}."
        ) from None
    if arr.ndim != ndim or arr.shape[-1] != 3 or arr.dtype.kind not in "fiu":
        raise InvalidInputError(
            f"`{name}` must have shape {shape} (RGB images, uint8 or floats in [0, 255]); "
            f"received {describe(arr)}."
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InvalidInputError(f"`{name}` must hold finite pixel values; received NaN or inf.")
    if 0 in arr.shape:
        raise InvalidInputError(
            f"`{name}` is empty (shape {arr.shape}); pass at least one image of at least "
            "one pixel."
        )
    return arr


def _similarities(value: Any, shape: tuple[int, ...], expected: str) -> np.ndarray | None:
    """``value`` as finite floats of ``shape``, or None."""
    if value is None:
        return None
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != shape:
        received = describe(value) if arr is None else f"shape {arr.shape}"
        raise InvalidInputError(
            f"`similarities` must have shape {expected} = {shape}, one per image shown; "
            f"received {received}."
        )
    if arr.dtype.kind not in "fiu" or not np.isfinite(arr).all():
        raise InvalidInputError(
            f"`similarities` must hold finite numbers; received {describe(arr)}."
        )
    return arr.astype(np.float64)


def _titles(name: str, value: Any, n: int, what: str) -> list[str] | None:
    """``value`` as ``n`` strings (one per ``what``), or None."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise InvalidTypeError(
            f"`{name}` must be a list of {n} strings (one per {what}) or None; received "
            f"{describe(value)}."
        )
    if len(value) != n:
        raise InvalidInputError(
            f"`{name}` must have one string per {what} ({n}); received {len(value)}."
        )
    return [str(t) for t in value]


def _nested_titles(value: Any, q: int, k: int) -> list[list[str]] | None:
    """``neighbour_titles`` as ``q`` lists of ``k`` strings, or None."""
    rows = _titles("neighbour_titles", value, q, "query")
    if rows is None:
        return None
    out = []
    for i, row in enumerate(value):
        if isinstance(row, str | bytes) or not isinstance(row, Sequence | np.ndarray):
            raise InvalidTypeError(
                f"`neighbour_titles[{i}]` must be a list of {k} strings (one per neighbour); "
                f"received {describe(row)}."
            )
        if len(row) != k:
            raise InvalidInputError(
                f"`neighbour_titles[{i}]` must have one string per neighbour ({k}); received "
                f"{len(row)}."
            )
        out.append([str(t) for t in row])
    return out


def _shorten(text: str) -> str:
    """Each line of ``text`` cut to :data:`_CAPTION` characters."""
    return "\n".join(
        line if len(line) <= _CAPTION else line[: _CAPTION - 3] + "..."
        for line in text.split("\n")
    )


def plot_neighbours(
    query_images: Any,
    neighbour_images: Any,
    path: str | os.PathLike[str],
    *,
    similarities: Any = None,
    query_titles: Sequence[str] | None = None,
    neighbour_titles: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
) -> Path:
    """Plot query images, each followed by its nearest neighbours, one row per query.

    Each row shows the query (framed, titled ``"query"`` or its ``query_titles``
    entry), then its ``k`` neighbours from left to right (nearest first, as passed),
    each titled with its similarity (e.g. ``0.93``; its rank ``#1``, ``#2``... without
    ``similarities``) and its ``neighbour_titles`` entry, such as a class or file name.

    Parameters
    ----------
    query_images : array-like of shape (q, height, width, 3)
        The query images, RGB, uint8 or floats in [0, 255].
    neighbour_images : array-like of shape (q, k, height2, width2, 3)
        The ``k`` neighbours of each query, nearest first; their size may differ from
        the queries'.
    path : str or path-like
        The ``.png`` file to write.
    similarities : array-like of shape (q, k), optional
        The similarity of each neighbour to its query (e.g. cosine similarity).
    query_titles : list of str, optional
        A title per query, instead of ``"query"``.
    neighbour_titles : list of list of str, optional
        ``q`` lists of ``k`` captions, one per neighbour.
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InvalidInputError
        For images of the wrong shape or empty, a number of queries that differs between
        the arguments, ``similarities`` or titles of the wrong shape, or a ``path`` not
        ending in ``.png``.
    InvalidTypeError
        For titles that are not lists of strings.
    MissingDependencyError
        If matplotlib is not installed.

    Examples
    --------
    >>> plot_neighbours(x_query, x_gallery[neighbour_rows], "neighbours.png",
    ...                 similarities=scores,
    ...                 neighbour_titles=class_names[y_gallery[neighbour_rows]].tolist())
    ... # doctest: +SKIP
    PosixPath('neighbours.png')
    """
    out = check_path(path)
    title = check_title(title)
    queries = _images("query_images", query_images, 4, "(q, height, width, 3)")
    q = len(queries)
    neighbours = _images("neighbour_images", neighbour_images, 5, "(q, k, height, width, 3)")
    if len(neighbours) != q:
        raise InvalidInputError(
            f"`neighbour_images` must hold the neighbours of each of the {q} queries, shape "
            f"({q}, k, height, width, 3); received shape {neighbours.shape}."
        )
    k = neighbours.shape[1]
    sims = _similarities(similarities, (q, k), "(q, k)")
    q_titles = _titles("query_titles", query_titles, q, "query image")
    n_titles = _nested_titles(neighbour_titles, q, k)

    lines = 1 + (sims is not None and n_titles is not None)
    fig = figure(_CELL * (k + 1.25), q * (_CELL + 0.2 + 0.15 * lines))
    grid = fig.add_gridspec(q, k + 2, width_ratios=[1.0, 0.25] + [1.0] * k,
                            wspace=0.08, hspace=0.25 + 0.12 * lines)
    for i in range(q):
        ax = fig.add_subplot(grid[i, 0])
        show_image(ax, queries[i])
        for spine in ax.spines.values():
            spine.set_edgecolor(_QUERY)
            spine.set_linewidth(3)
        ax.set_title(_shorten(q_titles[i] if q_titles else "query"), fontsize="small",
                     color=_QUERY, fontweight="bold")
        for j in range(k):
            ax = fig.add_subplot(grid[i, j + 2])
            show_image(ax, neighbours[i, j])
            parts = [f"{sims[i, j]:.2f}" if sims is not None else ""]
            if n_titles is not None:
                parts.append(n_titles[i][j])
            caption = "\n".join(p for p in parts if p) or f"#{j + 1}"
            ax.set_title(_shorten(caption), fontsize="x-small")
    return save(fig, out, suptitle=title)


def plot_image_pairs(
    images_a: Any,
    images_b: Any,
    path: str | os.PathLike[str],
    *,
    similarities: Any = None,
    titles_a: Sequence[str] | None = None,
    titles_b: Sequence[str] | None = None,
    ncols: int = 4,
    max_pairs: int = 32,
    title: str | None = None,
) -> Path:
    """Plot pairs of images side by side (``a | b``) in a grid, captioned with their similarity.

    Meant for the pairs a similarity search finds, such as near-duplicates between a
    test and a training set: pass them sorted by similarity (most similar first), as
    only the first ``max_pairs`` are drawn.

    Parameters
    ----------
    images_a, images_b : array-like of shape (n, height, width, 3)
        The two images of each pair, RGB, uint8 or floats in [0, 255]; the sizes of
        ``a`` and ``b`` may differ.
    path : str or path-like
        The ``.png`` file to write.
    similarities : array-like of shape (n,), optional
        The similarity of each pair, shown above it (its number ``#1``, ``#2``...
        without).
    titles_a, titles_b : list of str, optional
        A caption per image, shown under it (e.g. ``"test 1234 cat"``).
    ncols : int, default=4
        Pairs per row.
    max_pairs : int, default=32
        Only the first ``max_pairs`` pairs are drawn.
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InvalidInputError
        For images of the wrong shape or empty, different numbers of images in
        ``images_a`` and ``images_b``, ``similarities`` or titles of another length,
        ``ncols`` or ``max_pairs`` below 1, or a ``path`` not ending in ``.png``.
    InvalidTypeError
        For titles that are not lists of strings.
    MissingDependencyError
        If matplotlib is not installed.

    Examples
    --------
    >>> plot_image_pairs(x_test[test_rows], x_train[train_rows], "leaks.png",
    ...                  similarities=scores, titles_a=test_names, titles_b=train_names)
    ... # doctest: +SKIP
    PosixPath('leaks.png')
    """
    out = check_path(path)
    title = check_title(title)
    a = _images("images_a", images_a, 4, "(n, height, width, 3)")
    n = len(a)
    b = _images("images_b", images_b, 4, "(n, height, width, 3)")
    if len(b) != n:
        raise InvalidInputError(
            f"`images_b` must hold one image per image of `images_a` ({n}); received "
            f"{len(b)} (shape {b.shape})."
        )
    sims = _similarities(similarities, (n,), "(n,)")
    names_a = _titles("titles_a", titles_a, n, "pair")
    names_b = _titles("titles_b", titles_b, n, "pair")
    most = check_positive_int("max_pairs", max_pairs)
    shown, cols, rows = grid_shape(n, check_positive_int("ncols", ncols), most)

    captions = (names_a is not None) or (names_b is not None)
    fig = figure(cols * (2 * _CELL + 0.4), rows * (_CELL + 0.45 + 0.2 * captions))
    outer = fig.add_gridspec(rows, cols, wspace=0.15, hspace=0.35 + 0.2 * captions)
    for i in range(shown):
        r, c = divmod(i, cols)
        frame = fig.add_subplot(outer[r, c])  # holds the caption above the pair
        frame.axis("off")
        frame.set_title(f"{sims[i]:.2f}" if sims is not None else f"#{i + 1}",
                        fontsize="small")
        inner = outer[r, c].subgridspec(1, 2, wspace=0.05)
        for side, (images, names) in enumerate(((a, names_a), (b, names_b))):
            ax = fig.add_subplot(inner[0, side])
            show_image(ax, images[i])
            if names is not None:
                ax.set_xlabel(_shorten(names[i]), fontsize="x-small")
    return save(fig, out, suptitle=title)
