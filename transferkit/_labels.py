"""Class labels: one reader, one rule set, for everything in transferkit that takes labels.

The heads (:class:`~transferkit.heads.DenseHead`, :class:`~transferkit.heads.SklearnHead`)
and :class:`~transferkit.extractors.CifarCNN` read their training labels with
:func:`encode_labels`, and the labels they are scored or validated on with
:func:`labels_to_indices`; :func:`check_labels` validates labels that are only stored
(e.g. beside cached features). So the same ``y`` is accepted, or refused with the same
message, everywhere.

:func:`labels_to_names` maps class indices stored with their names (as the feature cache
stores them) back to the names.

Rules
-----
``y`` is one of

* **class labels**, one per sample, of shape ``(n_samples,)``: integers, strings,
  booleans, or floats with integral values (scikit-learn's ``"binary"`` and
  ``"multiclass"`` targets). A column of shape ``(n_samples, 1)`` is read as 1-D labels,
  with scikit-learn's ``DataConversionWarning``. Continuous values (``0.5``), NaN or
  infinity are refused, as are labels of types that do not compare (``[1, "a"]``);
* **one-hot rows** of shape ``(n_samples, n_classes)`` with ``n_classes >= 2``: numbers
  or booleans, every entry 0 or 1, exactly one 1 per row. The class of a row is the index
  of its 1, and the classes are ``arange(n_classes)``: a column that no row uses is still
  a class.

**Soft labels are refused**: probability rows (``[0.7, 0.2, 0.1]``), label-smoothed rows
(``[0.9, 0.05, 0.05]``) and multi-label rows (``[1, 0, 1]``) raise
:class:`~transferkit.exceptions.InvalidInputError`, whose message says to pass
``y.argmax(axis=1)`` if the most likely class is what is meant. Taking the argmax
silently would train on different targets than the caller holds (and label smoothing
is a training option, e.g. ``CifarCNN(label_smoothing=...)``, not a label format).

Training (:func:`encode_labels`) also needs at least two classes. Scoring and validation
(:func:`labels_to_indices`) need labels of the classes seen in training; one-hot rows
there have one column per fitted class, in the order of ``classes_``.

Every error is an :class:`~transferkit.exceptions.InvalidInputError` (a ``ValueError``)
or, for labels of types that do not compare, an
:class:`~transferkit.exceptions.InvalidTypeError` (a ``TypeError``), naming the argument,
what was expected and what was received.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ._validation import describe
from .exceptions import InvalidInputError, InvalidTypeError

__all__ = ["check_labels", "encode_labels", "labels_to_indices", "labels_to_names"]

#: How many unknown classes (or rows) an error message lists.
_SHOWN = 10


def _expected(n_samples: int | None) -> str:
    n = "n_samples" if n_samples is None else str(n_samples)
    return (
        f"class labels of shape ({n},) (integers or strings) or one-hot labels of shape "
        f"({n}, n_classes)"
    )


def _read(
    y: Any, n_samples: int | None, *, name: str, per: str, owner: str | None
) -> tuple[np.ndarray, int | None]:
    """Apply the rules; return 1-D labels and, for one-hot ``y``, its number of columns."""
    expected = _expected(n_samples)
    if y is None:
        # scikit-learn's estimator checks recognise this wording.
        raise InvalidInputError(
            f"{owner or 'This estimator'} requires {name} to be passed, but the target "
            f"{name} is None: `{name}` must be {expected}."
        )
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"`{name}` must be {expected}; received {describe(y)}. {exc}"
        ) from exc
    if arr.ndim == 0 or arr.ndim > 2:
        raise InvalidInputError(f"`{name}` must be {expected}; received an array of shape "
                                f"{arr.shape}.")
    if n_samples is not None and len(arr) != n_samples:
        raise InvalidInputError(
            f"`{name}` must have one label per {per}: expected {n_samples}, received "
            f"{len(arr)}."
        )
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = column_or_1d(arr, warn=True)  # DataConversionWarning, like scikit-learn
    if arr.ndim == 2:
        return _one_hot_columns(arr, name=name, expected=expected), arr.shape[1]
    try:
        check_classification_targets(arr)
    except TypeError as exc:
        raise InvalidTypeError(
            f"`{name}` must be {expected}, all of one comparable type; received "
            f"{describe(arr)}. {exc}"
        ) from exc
    except ValueError as exc:
        raise InvalidInputError(f"`{name}` must be {expected}; received {describe(arr)}. "
                                f"{exc}") from exc
    return arr, None


def _one_hot_columns(arr: np.ndarray, *, name: str, expected: str) -> np.ndarray:
    """The column of the 1 in each one-hot row; refuse any other 2-D labels."""
    numeric = np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    if numeric and arr.shape[1] >= 2:
        values = arr.astype(np.float64)
        binary = np.isin(values, (0.0, 1.0)).all(axis=1)
        bad = np.flatnonzero(~(binary & (values.sum(axis=1) == 1.0)))
        if not bad.size:
            return np.argmax(values, axis=1).astype(np.int64)
        row = np.array2string(values[bad[0]][:_SHOWN], precision=3, separator=", ")
        raise InvalidInputError(
            f"`{name}` must be {expected}; received a 2-D array of shape {arr.shape} whose "
            f"rows are not one-hot (exactly one 1, all other entries 0): row {bad[0]} is "
            f"{row}{' ...' if arr.shape[1] > _SHOWN else ''} ({bad.size} such rows). Soft "
            "(probability or label-smoothed) and multi-label rows are not accepted; if "
            f"each row's largest entry is the class you mean, pass `{name}.argmax(axis=1)`."
        )
    raise InvalidInputError(
        f"`{name}` must be {expected} (multi-label and multi-output targets are not "
        f"supported); received a 2-D array of shape {arr.shape} and dtype {arr.dtype} whose "
        "rows are not one-hot (exactly one 1, all other entries 0)."
    )


def check_labels(
    y: Any, n_samples: int | None, *, name: str = "y", per: str = "sample"
) -> np.ndarray:
    """Validate labels by the rules of this module and return them as a 1-D array.

    Use it for labels that are stored or passed on rather than trained on (no class
    count is required).

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, n_classes)
        Class labels, or one-hot rows.
    n_samples : int or None
        Number of labels expected (one per sample); None skips the check.
    name : str, default="y"
        Argument name for error messages (e.g. ``"labels"``).
    per : str, default="sample"
        What there is one label per, for error messages (e.g. ``"image"``).

    Returns
    -------
    labels : ndarray of shape (n_samples,)
        ``y`` as a 1-D array (not copied when already one), or, for one-hot rows, the
        index of each row's 1 as int64.

    Raises
    ------
    InvalidInputError
        If ``y`` breaks the rules (None, wrong shape or length, continuous values, NaN,
        rows that are not one-hot).
    InvalidTypeError
        If the labels are of types that do not compare.
    """
    labels, _ = _read(y, n_samples, name=name, per=per, owner=None)
    return labels


def encode_labels(
    y: Any,
    n_samples: int,
    *,
    name: str = "y",
    per: str = "sample",
    owner: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate training labels and encode them as class indices.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, n_classes)
        Class labels (integers or strings), or one-hot rows.
    n_samples : int
        Number of samples the labels belong to.
    name : str, default="y"
        Argument name for error messages.
    per : str, default="sample"
        What there is one label per, for error messages (``"row of `X`"``, ``"image"``).
    owner : str, optional
        The estimator's class name, for the message when ``y`` is None.

    Returns
    -------
    classes : ndarray of shape (n_classes,)
        The sorted unique labels; ``arange(n_classes)`` for one-hot rows.
    indices : ndarray of shape (n_samples,), int64
        Index of each sample's label in ``classes``.

    Raises
    ------
    InvalidInputError
        If ``y`` breaks the rules of this module, or holds fewer than two classes.
    InvalidTypeError
        If the labels are of types that do not compare.
    """
    labels, n_columns = _read(y, n_samples, name=name, per=per, owner=owner)
    if n_columns is not None:
        classes, indices = np.arange(n_columns), labels
    else:
        try:
            classes, indices = np.unique(labels, return_inverse=True)
        except TypeError as exc:
            raise InvalidTypeError(
                f"`{name}` must be {_expected(n_samples)}, all of one comparable type; "
                f"received {describe(labels)}. {exc}"
            ) from exc
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(classes) < 2:
        raise InvalidInputError(
            f"`{name}` must contain at least 2 classes; received {len(classes)} class "
            f"({classes.tolist()!r}). A classifier needs examples of at least two classes."
        )
    return classes, indices


def labels_to_indices(
    y: Any,
    classes: np.ndarray,
    *,
    n_samples: int | None = None,
    name: str = "y",
    per: str = "sample",
) -> np.ndarray:
    """Validate labels of already-known classes and return their indices in ``classes``.

    For scoring and validation data: every label must be one of ``classes``, and
    one-hot rows must have one column per class, in the order of ``classes``.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, len(classes))
        Class labels, or one-hot rows.
    classes : ndarray of shape (n_classes,)
        The classes seen in training (``classes_``), sorted.
    n_samples : int, optional
        Number of labels expected; None skips the check.
    name : str, default="y"
        Argument name for error messages.
    per : str, default="sample"
        What there is one label per, for error messages.

    Returns
    -------
    indices : ndarray of shape (n_samples,), int64
        Index of each label in ``classes``.

    Raises
    ------
    InvalidInputError
        If ``y`` breaks the rules of this module, holds classes not in ``classes``, or
        has one-hot rows with another number of columns than ``len(classes)``.
    """
    classes = np.asarray(classes)
    labels, n_columns = _read(y, n_samples, name=name, per=per, owner=None)
    if n_columns is not None:
        if n_columns != len(classes):
            raise InvalidInputError(
                f"`{name}` must have one-hot rows with one column per fitted class "
                f"({len(classes)}); received {n_columns} columns."
            )
        return labels
    try:
        known = np.isin(labels, classes)
    except (TypeError, ValueError):
        known = np.zeros(len(labels), dtype=bool)
    if not known.all():
        unseen = list(dict.fromkeys(labels[~known].tolist()))
        raise InvalidInputError(
            f"`{name}` holds {len(unseen)} class(es) never seen in fit: {unseen[:_SHOWN]}; "
            f"the fitted classes are {classes.tolist()[:2 * _SHOWN]}. Pass labels of the "
            "trained classes: unseen classes cannot be scored or validated."
        )
    order = np.argsort(classes, kind="stable")  # classes_ are sorted, but cheap to be sure
    return order[np.searchsorted(classes[order], labels)].astype(np.int64)


def labels_to_names(labels: Any, class_names: Sequence[str] | None) -> np.ndarray:
    """Integer labels as class names, when the names are known; other labels unchanged.

    The feature cache stores labels as class indices beside the class names; this maps
    them back (label ``i`` becomes ``class_names[i]``).

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Class labels, e.g. ``FeatureCache.labels(key)``.
    class_names : sequence of str, optional
        The name of each class index, e.g. ``FeatureCache.info(key).class_names``.

    Returns
    -------
    numpy.ndarray
        The names of the labels when ``labels`` are integers that all index
        ``class_names``; otherwise ``labels`` as an array, unchanged.
    """
    y = np.asarray(labels)
    if class_names and y.dtype.kind in "iu" and y.size and 0 <= y.min() and y.max() < len(
        class_names
    ):
        return np.asarray(class_names)[y]
    return y
