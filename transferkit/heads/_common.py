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
    "check_fitted",
    "class_probabilities",
    "encode_targets",
    "softmax",
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


# --------------------------------------------------------------------------- probabilities


def softmax(scores: Any) -> np.ndarray:
    """Class probabilities from decision scores: the softmax of each row.

    Parameters
    ----------
    scores : array-like of shape (n_samples, n_classes) or (n_samples,)
        Decision scores, e.g. ``decision_function(X)``; 1-D scores are those of a binary
        classifier (positive: the second class) and are read as ``[-s, s]``.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_classes)
        Rows of non-negative float64 numbers summing to 1.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = np.stack([-s, s], axis=1)
    s = s - s.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def class_probabilities(head: Any, X: Any) -> np.ndarray:
    """``head.predict_proba(X)``, or the :func:`softmax` of its decision function.

    Parameters
    ----------
    head : fitted classifier
        A head, or any scikit-learn classifier with ``predict_proba`` or
        ``decision_function``.
    X : array-like of shape (n_samples, n_features)
        Features.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_classes)
        One probability per class of ``head.classes_``, in that order.
    """
    if hasattr(head, "predict_proba"):
        return head.predict_proba(X)
    return softmax(head.decision_function(X))
