"""SklearnHead: any scikit-learn classifier as a head, with optional standardization.

The wrapped estimator is cloned in ``fit`` and trained on the class *indices*
``0..n_classes-1`` (see :mod:`transferkit._labels` for the labels the head accepts); the
head maps the estimator's outputs back to ``classes_``. A head fitted on one-hot labels
with a column that no row uses has a class its estimator never saw: ``predict_proba``,
``predict_log_proba`` and ``decision_function`` then give it probability 0 (score
``-inf``). How a head is saved is described in :mod:`transferkit.heads._format`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.metaestimators import available_if

from .._validation import check_bool, describe
from ..exceptions import InvalidTypeError
from ._common import (
    HeadScoreMixin,
    check_fitted,
    encode_targets,
    validate_features,
)
from ._format import (
    HeadFile,
    base_meta,
    dump_sklearn_state,
    load_sklearn_state,
    restore_base,
    save_head,
    shown,
)

__all__ = ["SklearnHead", "pack_sklearn_head", "unpack_sklearn_head"]


def _estimator_has(attr: str) -> Any:
    """``available_if`` check: the (fitted, else configured) estimator has ``attr``."""

    def check(self: SklearnHead) -> bool:
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, attr)
        return hasattr(self._template(), attr)

    return check


class SklearnHead(HeadScoreMixin, ClassifierMixin, BaseEstimator):
    """Any scikit-learn classifier as a head, with optional standardization.

    Parameters
    ----------
    estimator : scikit-learn classifier, default=None
        The classifier to train; it is cloned in ``fit`` and never modified. None
        means ``LogisticRegression(max_iter=1000)``.
    standardize : bool, default=True
        Fit a :class:`~sklearn.preprocessing.StandardScaler` on the features first.

    Attributes
    ----------
    estimator_ : classifier
        The fitted clone of ``estimator``. It is trained on integer codes
        ``0..n_classes-1``; the head maps them back to ``classes_``.
    scaler_ : StandardScaler or None
        The fitted scaler (None when ``standardize=False``).
    classes_ : ndarray of shape (n_classes,)
        Class labels (``arange(k)`` when fitted on one-hot labels).
    n_features_in_ : int
        Number of features seen in ``fit``.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> head = SklearnHead(LogisticRegression(max_iter=2000))  # doctest: +SKIP
    >>> head.fit(f_train, y_train).score(f_test, y_test)  # doctest: +SKIP
    """

    def __init__(self, estimator: Any = None, *, standardize: bool = True) -> None:
        self.estimator = estimator
        self.standardize = standardize

    def _template(self) -> Any:
        if self.estimator is None:
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression(max_iter=1000)
        return self.estimator

    def fit(self, X: Any, y: Any) -> SklearnHead:
        """Fit the scaler (if ``standardize``) and a clone of ``estimator``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature vectors.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Class labels (integers or strings), or one-hot labels.

        Returns
        -------
        self : SklearnHead
            The fitted head.
        """
        template = self._template()
        if not (hasattr(template, "fit") and hasattr(template, "predict")):
            raise InvalidTypeError(
                "`estimator` must be a scikit-learn classifier (with `fit` and `predict`) "
                f"or None; received {describe(self.estimator)}."
            )
        standardize = check_bool("standardize", self.standardize)
        X = validate_features(self, X, reset=True, dtype=[np.float64, np.float32])
        classes, y_enc = encode_targets(self, y, X.shape[0])
        try:
            estimator = clone(template)
        except TypeError as exc:
            raise InvalidTypeError(
                "`estimator` must be a scikit-learn estimator that `sklearn.base.clone` can "
                f"copy; received {describe(self.estimator)}. {exc}"
            ) from exc
        if standardize:
            from sklearn.preprocessing import StandardScaler

            self.scaler_ = StandardScaler().fit(X)
            X = self.scaler_.transform(X)
        else:
            self.scaler_ = None
        estimator.fit(X, y_enc)
        self.estimator_ = estimator
        self.classes_ = classes
        return self

    def _transformed(self, X: Any, method: str) -> np.ndarray:
        check_fitted(self, method)
        X = validate_features(self, X, reset=False, dtype=[np.float64, np.float32])
        if self.scaler_ is not None:
            X = self.scaler_.transform(X)
        return X

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Feature vectors.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Labels taken from ``classes_``.
        """
        X = self._transformed(X, "predict")
        codes = np.asarray(self.estimator_.predict(X))
        return self.classes_[codes.astype(np.int64)]

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (only if the estimator has ``predict_proba``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Feature vectors.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_`` (0 for classes absent from the
            training labels of a one-hot ``y``).
        """
        X = self._transformed(X, "predict_proba")
        return self._per_class(np.asarray(self.estimator_.predict_proba(X)), fill=0.0)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of :meth:`predict_proba` (only if the estimator has it).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Feature vectors.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities in the order of ``classes_``.
        """
        X = self._transformed(X, "predict_log_proba")
        return self._per_class(np.asarray(self.estimator_.predict_log_proba(X)), fill=-np.inf)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        """Confidence scores (only if the estimator has ``decision_function``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Feature vectors.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            As returned by the estimator: 1-D for binary problems (positive means
            ``classes_[1]``), one column per class otherwise.
        """
        X = self._transformed(X, "decision_function")
        scores = np.asarray(self.estimator_.decision_function(X))
        return self._per_class(scores, fill=-np.inf, dtype=np.float64)

    def _per_class(self, values: np.ndarray, *, fill: float, dtype: Any = None) -> np.ndarray:
        """The estimator's per-class ``values`` with one column per entry of ``classes_``.

        Unchanged unless the head was fitted on one-hot labels with classes that never
        occur: those get columns of ``fill``. A binary ``decision_function`` (1-D,
        positive for the second seen class) becomes two columns.
        """
        seen = np.asarray(self.estimator_.classes_, dtype=np.int64)
        if len(seen) == len(self.classes_):
            return values
        out = np.full((values.shape[0], len(self.classes_)), fill,
                      dtype=values.dtype if dtype is None else dtype)
        if values.ndim == 1:
            out[:, seen[0]] = -values
            out[:, seen[1]] = values
        else:
            out[:, seen] = values
        return out

    # -- persistence -------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Save the fitted head to a single zip file (``.tkhead`` suggested).

        The archive holds ``meta.json`` and the fitted estimator and scaler serialized
        with ``skops.io`` when skops is installed, otherwise with pickle (which
        :func:`load_head` only reads with ``allow_pickle=True``). The file is written
        to a temporary name and moved into place, so ``path`` never holds a
        half-written head.

        Parameters
        ----------
        path : str or os.PathLike
            Destination file; overwritten if it exists.

        Raises
        ------
        NotFittedError
            If the head is not fitted.
        """
        save_head(self, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        trusted: Sequence[str] | None = None,
        allow_pickle: bool = False,
    ) -> SklearnHead:
        """Load a head written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
            File written by :meth:`SklearnHead.save`.
        trusted : sequence of str, optional
            Extra type names (``"module.Class"``) to trust when reading a skops file.
            Classes from scikit-learn, NumPy and SciPy are trusted automatically; any
            other type (e.g. a third-party estimator, or a function) must be listed.
        allow_pickle : bool, default=False
            Read heads that were saved with pickle (because skops was not installed).
            Unpickling can run arbitrary code: only use it for files you trust.

        Returns
        -------
        head : SklearnHead
            The fitted head.
        """
        return unpack_sklearn_head(
            HeadFile(path), trusted=trusted, allow_pickle=allow_pickle, cls=cls
        )


# --------------------------------------------------------------------------- file format


def pack_sklearn_head(head: SklearnHead) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A fitted SklearnHead as ``(meta, members)`` of a head file (see ``_format``)."""
    meta = base_meta(head, {"standardize": bool(head.standardize)})
    meta["default_estimator"] = head.estimator is None
    meta["serializer"], members = dump_sklearn_state(head.estimator_, head.scaler_)
    return meta, members


def unpack_sklearn_head(
    hf: HeadFile,
    *,
    trusted: Sequence[str] | None,
    allow_pickle: bool,
    cls: type[SklearnHead] | None = None,
) -> SklearnHead:
    """The SklearnHead a head file holds, checked against its ``meta.json``."""
    cls = SklearnHead if cls is None else cls
    hf.check_class(cls)
    params = hf.params_for(cls)
    estimator, scaler = load_sklearn_state(hf, trusted=trusted, allow_pickle=allow_pickle)
    head = cls(
        estimator=None if hf.meta.get("default_estimator", False) else clone(estimator),
        **params,
    )
    try:
        restore_base(head, hf.meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise hf.damaged(exc) from exc
    head.estimator_ = estimator
    head.scaler_ = scaler
    _check_consistent(head, hf)
    return head


def _check_consistent(head: SklearnHead, hf: HeadFile) -> None:
    """The class list and feature count of ``meta.json`` must match the estimator."""
    classes, n_features = head.classes_, int(head.n_features_in_)
    seen = getattr(head.estimator_, "classes_", None)
    if seen is not None:
        seen = np.asarray(seen)
        codes_ok = seen.ndim == 1 and seen.dtype.kind in "iu" and len(np.unique(seen)) == len(
            seen
        ) and (seen.size == 0 or (seen.min() >= 0 and seen.max() < len(classes)))
        # Only a head fitted on one-hot labels (classes 0..k-1) may have classes that its
        # estimator never saw; otherwise both lists have the same length.
        one_hot = classes.dtype.kind in "iu" and np.array_equal(classes, np.arange(len(classes)))
        if not codes_ok or (len(seen) != len(classes) and not one_hot):
            raise hf.mismatch(
                f"its class list holds {len(classes)} classes ({shown(classes)}) but its "
                f"estimator was trained on {len(seen)} class codes ({shown(seen)})"
            )
    for part, obj in (("estimator", head.estimator_), ("scaler", head.scaler_)):
        expected = getattr(obj, "n_features_in_", None)
        if expected is not None and int(expected) != n_features:
            raise hf.mismatch(
                f"it records {n_features} input features (n_features_in) but its {part} "
                f"was fitted on {int(expected)}"
            )
