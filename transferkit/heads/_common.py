"""What every head shares: fitted checks, feature and parameter validation, labels, scoring.

Both heads follow the same contract, kept here so that it lives in one place:

* ``fit`` validates ``X`` with scikit-learn's ``validate_data`` (which records
  ``n_features_in_`` and ``feature_names_in_``) and reads ``y`` with
  :func:`transferkit._labels.encode_labels` (see that module for the label rules);
  the head learns on the class *indices*, and ``classes_`` maps them back to labels;
* every method of a fitted head starts with :func:`check_fitted`, which raises
  transferkit's :class:`~transferkit.exceptions.NotFittedError` (also a scikit-learn
  ``NotFittedError``);
* scikit-learn's own messages are kept at the end of transferkit's, so tools that match
  on them (e.g. scikit-learn's estimator checks) still recognise them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted, validate_data

from .._labels import encode_labels, labels_to_indices
from .._validation import describe
from ..exceptions import InvalidInputError, InvalidTypeError, NotFittedError, TransferkitError

__all__ = [
    "HeadScoreMixin",
    "check_bool",
    "check_fitted",
    "check_float",
    "check_int",
    "encode_targets",
    "validate_features",
]

#: What there is one label per, in the heads' label errors.
_PER = "row of `X`"


def check_fitted(estimator: BaseEstimator, method: str) -> None:
    """Raise transferkit's NotFittedError unless ``estimator`` is fitted."""
    try:
        check_is_fitted(estimator, "classes_")
    except _SklearnNotFittedError:
        name = type(estimator).__name__
        raise NotFittedError(
            f"This {name} instance is not fitted yet: expected a fitted head before "
            f"calling `{method}`; call `{name}.fit(X, y)` first."
        ) from None


def validate_features(
    estimator: BaseEstimator, X: Any, *, reset: bool, dtype: Any
) -> np.ndarray:
    """Validate features with scikit-learn, re-raising errors as transferkit errors.

    The original scikit-learn message is kept at the end so tools matching on it
    (e.g. scikit-learn's estimator checks) still recognise it.
    """
    n_features = "n_features" if reset else getattr(estimator, "n_features_in_", "n_features")
    expected = f"a finite, dense 2-D numeric array of shape (n_samples, {n_features})"
    try:
        return validate_data(estimator, X, reset=reset, dtype=dtype, accept_sparse=False)
    except TransferkitError:
        raise
    except TypeError as exc:
        raise InvalidTypeError(f"`X` must be {expected}; received {describe(X)}. {exc}") from exc
    except ValueError as exc:
        raise InvalidInputError(f"`X` must be {expected}; received {describe(X)}. {exc}") from exc


def encode_targets(
    estimator: BaseEstimator, y: Any, n_samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """A head's training labels as ``(classes, indices)``, by :mod:`transferkit._labels`."""
    return encode_labels(y, n_samples, name="y", per=_PER, owner=type(estimator).__name__)


class HeadScoreMixin:
    """``score`` that refuses labels the head cannot know, instead of scoring them wrong."""

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy on ``(X, y)``.

        Unlike plain scikit-learn, labels of classes never seen in ``fit`` raise an
        error (they are a mistake: e.g. features of other classes than trained on,
        or string labels against integer ones) rather than silently counting as wrong.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
        y : array-like of shape (n_samples,) or one-hot (n_samples, n_classes)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        float
        """
        check_fitted(self, "score")  # type: ignore[arg-type]
        classes = self.classes_  # type: ignore[attr-defined]
        n = len(X) if hasattr(X, "__len__") else None
        indices = labels_to_indices(y, classes, n_samples=n, name="y", per=_PER)
        return super().score(X, classes[indices], sample_weight=sample_weight)  # type: ignore[misc]


# --------------------------------------------------------------------------- scalars


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool; InvalidTypeError unless it is True or False."""
    if not isinstance(value, bool | np.bool_):
        raise InvalidTypeError(f"`{name}` must be True or False; received {describe(value)}.")
    return bool(value)


def check_int(name: str, value: Any, *, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidTypeError(f"`{name}` must be an integer; received {describe(value)}.")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidInputError(f"`{name}` must be an integer {bound}; received {value}.")
    return int(value)


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval given by ``low``/``high``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidTypeError(f"`{name}` must be a number; received {describe(value)}.")
    value = float(value)
    ok = np.isfinite(value)
    if low is not None:
        ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        raise InvalidInputError(
            f"`{name}` must be a number in {left}{lo}, {hi}{right}; received {value!r}."
        )
    return value
