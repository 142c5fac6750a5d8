"""A fitted head as a Keras model, to warm-start fine-tuning: :func:`head_to_keras`.

The model maps float32 features ``(None, n_features_in_)`` to class probabilities
``(None, n_classes)`` in the order of ``head.classes_``, and reproduces
:func:`~transferkit.heads._common.class_probabilities` of the head. Its layers, by name:

* ``"standardize"`` -- a :class:`keras.layers.Normalization` holding the head's
  standardization (DenseHead's ``mean_``/``scale_``, SklearnHead's ``scaler_``, the
  StandardScaler steps of a Pipeline, composed into one); absent when there is none;
* for a DenseHead, copies of its hidden layers (``"hidden_1"``, ``"dropout_1"``, ...);
* ``"logits"`` -- the Dense layer producing the class scores, with a linear activation;
* for a one-vs-rest classifier, ``"log_sigmoid"`` (an ``Activation``), so that the
  softmax gives the normalized per-class sigmoids of scikit-learn's ``predict_proba``;
* ``"probabilities"`` -- the output, a :class:`keras.layers.Softmax`.

Only built-in Keras layers are used (no custom or Lambda layer), so the model saves to
``.keras`` and loads with ``safe_mode=True`` without transferkit. Every weight is a copy
and trainable. Keras is imported only when a model is built.

How a scikit-learn linear classifier's probabilities become ``softmax(logits)`` (``z``:
its decision function, ``w``/``b``: its ``coef_``/``intercept_``):

* multinomial LogisticRegression(CV): ``softmax(z)``;
* binary LogisticRegression(CV) and binary SGDClassifier(loss="log_loss"):
  ``[1 - sigmoid(z), sigmoid(z)] = softmax([0, z])``: kernel ``[0, w]``, bias ``[0, b]``;
* one-vs-rest (SGDClassifier(loss="log_loss") on more than two classes, and
  LogisticRegression with ``multi_class="ovr"`` or liblinear on more than two classes in
  the scikit-learn versions that still allow it): ``sigmoid(z) / sum(sigmoid(z))``
  ``= softmax(log_sigmoid(z))``. (Where *every* ``sigmoid(z)`` underflows to 0 --
  all decision values below about -88 for float32 features, -745 for float64 --
  scikit-learn returns uniform probabilities; the model returns the limit of the
  normalized sigmoids instead, the softmax of ``z``. Only far-off or unscaled inputs
  get there.)
* classifiers without ``predict_proba`` (RidgeClassifier(CV), LinearSVC, Perceptron,
  SGDClassifier with another loss than log_loss or modified_huber): the softmax of the
  decision function, a binary score ``s`` read as ``[-s, s]`` (kernel ``[-w, w]``).

A SklearnHead fitted on one-hot labels where some class never occurs gives that class
probability 0: its ``"logits"`` column has a zero kernel and the bias
:data:`MISSING_CLASS_BIAS`, so its probability is exactly 0 in float32 while the other
logits stay above ``MISSING_CLASS_BIAS + 88``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..exceptions import InvalidInputError, TransferkitError
from ._common import check_fitted, class_probabilities
from .dense import DenseHead
from .sklearn_head import SklearnHead

__all__ = ["MISSING_CLASS_BIAS", "head_to_keras"]

#: Bias of the ``"logits"`` column of a class that a SklearnHead fitted on one-hot labels
#: never saw (its kernel column is zero): its probability is 0.
MISSING_CLASS_BIAS = -1.0e4

#: What can be warm-started, for the error message.
_SUPPORTED = (
    "a fitted DenseHead (Dense/Dropout layers ending in a softmax Dense), or a fitted "
    "linear scikit-learn classifier -- LogisticRegression, LogisticRegressionCV, "
    "SGDClassifier (any loss but 'modified_huber'), RidgeClassifier, RidgeClassifierCV, "
    "LinearSVC or Perceptron -- either bare, wrapped in a SklearnHead, or as the last step "
    "of a sklearn Pipeline whose other steps are StandardScaler (or 'passthrough')"
)

#: Decision-function-to-logits modes of a linear classifier (see the module docstring).
_SOFTMAX, _SIGMOID, _SYMMETRIC, _OVR = "softmax", "sigmoid", "symmetric", "ovr"


def head_to_keras(head: Any) -> Any:
    """A new Keras model computing the class probabilities of a fitted head.

    Use it to warm-start fine-tuning from a trained head, or to export a head as one
    Keras model. The head is not modified; the model's weights are copies.

    Parameters
    ----------
    head : DenseHead, SklearnHead, or scikit-learn linear classifier or Pipeline
        A fitted head that can be warm-started:

        * a :class:`~transferkit.DenseHead`;
        * a :class:`~transferkit.SklearnHead` whose estimator is a linear classifier:
          LogisticRegression, LogisticRegressionCV, SGDClassifier (any loss but
          ``"modified_huber"``), RidgeClassifier, RidgeClassifierCV, LinearSVC or
          Perceptron, or a Pipeline of StandardScaler steps ending in one;
        * one of those linear classifiers, bare or as the last step of a
          :class:`~sklearn.pipeline.Pipeline` whose other steps are
          :class:`~sklearn.preprocessing.StandardScaler` (or ``"passthrough"``).

    Returns
    -------
    keras.Model
        Maps float32 features of shape ``(None, n_features_in_)`` to probabilities of
        shape ``(None, n_classes)``, in the order of ``head.classes_``, equal to
        ``class_probabilities(head, X)`` up to float32 rounding. Layers named
        ``"standardize"`` (only when the head standardizes its features), ``"logits"``
        (the Dense layer producing the class scores, linear) and ``"probabilities"``
        (the softmax output); see :mod:`transferkit.heads._keras`. All weights are
        trainable; the model uses built-in Keras layers only.

    Raises
    ------
    InvalidInputError
        If ``head`` is not one of the heads above (the message names its type and,
        for a SklearnHead or Pipeline, the estimator or step that is not supported).
    NotFittedError
        If ``head`` is not fitted.

    Notes
    -----
    Standardization uses :class:`keras.layers.Normalization` with a fixed mean and
    variance (no weights); its division is clamped at Keras' epsilon, and any smaller
    scale is compensated in the next Dense kernel. For one-vs-rest classifiers the
    model differs from scikit-learn only where all per-class sigmoids underflow (see
    :mod:`transferkit.heads._keras`).

    Examples
    --------
    >>> from transferkit.heads import SklearnHead, head_to_keras
    >>> head = SklearnHead().fit(f_train, y_train)  # doctest: +SKIP
    >>> model = head_to_keras(head)  # doctest: +SKIP
    >>> model.get_layer("logits").kernel.shape  # doctest: +SKIP
    (1280, 10)
    >>> model.predict(f_test)  # same as head.predict_proba(f_test)  # doctest: +SKIP
    """
    if isinstance(head, DenseHead):
        return _dense_to_keras(head)
    mean, scale, kernel, bias, mode = _linear_parameters(head)
    return _linear_to_keras(mean, scale, kernel, bias, mode)


# --------------------------------------------------------------------------- errors


def _unsupported(head: Any, detail: str = "") -> InvalidInputError:
    """The error for a head that cannot be warm-started; ``detail`` says what is wrong."""
    received = type(head).__name__
    if isinstance(head, SklearnHead):
        inner = getattr(head, "estimator_", None)
        inner = head.estimator if inner is None else inner
        received += f" wrapping {_describe_estimator(inner)}"
    elif _is_pipeline(head):
        received = _describe_estimator(head)
    detail = f" ({detail})" if detail else ""
    return InvalidInputError(
        f"`head` must be a head that can be warm-started as a Keras model: {_SUPPORTED}; "
        f"received {received}{detail}."
    )


def _describe_estimator(estimator: Any) -> str:
    if estimator is None:
        return "None (the default LogisticRegression, not fitted)"
    if _is_pipeline(estimator):
        steps = ", ".join(
            f"{name!r}: {type(step).__name__ if not isinstance(step, str) else step!r}"
            for name, step in estimator.steps
        )
        return f"Pipeline({steps})"
    return type(estimator).__name__


def _is_pipeline(obj: Any) -> bool:
    from sklearn.pipeline import Pipeline

    return isinstance(obj, Pipeline)


# --------------------------------------------------------------------------- Keras layers


def _standardize_layer(keras: Any, mean: np.ndarray, scale: np.ndarray) -> tuple[Any, np.ndarray]:
    """A Normalization layer computing ``(x - mean) / scale``, and a kernel row factor.

    Normalization divides by ``max(sqrt(variance), epsilon)``; for a (rare) scale below
    Keras' epsilon, the next Dense layer's kernel rows are multiplied by the returned
    ``epsilon / scale`` factor (1 elsewhere), which makes the product exact again.
    """
    eps = float(keras.config.epsilon())
    scale = np.asarray(scale, dtype=np.float64)
    factor = np.maximum(scale, eps) / scale
    layer = keras.layers.Normalization(
        mean=np.asarray(mean, dtype=np.float64),
        variance=np.square(scale),
        name="standardize",
        dtype="float32",
    )
    return layer, factor


def _model_input(keras: Any, n_features: int) -> Any:
    return keras.Input(shape=(int(n_features),), dtype="float32", name="features")


def _finish(keras: Any, inputs: Any, logits: Any, *, ovr: bool = False) -> Any:
    x = logits
    if ovr:
        x = keras.layers.Activation("log_sigmoid", name="log_sigmoid", dtype="float32")(x)
    outputs = keras.layers.Softmax(name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="transferkit_head")


# --------------------------------------------------------------------------- DenseHead


def _dense_to_keras(head: DenseHead) -> Any:
    import keras

    check_fitted(head, "head_to_keras")
    layers = list(head.model_.layers)
    allowed = (keras.layers.Dense, keras.layers.Dropout)
    odd = [type(layer).__name__ for layer in layers if type(layer) not in allowed]
    if odd or not layers:
        raise _unsupported(head, f"its model has layers other than Dense and Dropout: {odd}")
    last = layers[-1]
    if type(last) is not keras.layers.Dense or last.get_config().get("activation") != "softmax":
        raise _unsupported(head, "its model does not end in a Dense layer with softmax")

    inputs = _model_input(keras, int(head.n_features_in_))
    x, factor = inputs, None
    if head.mean_ is not None:
        standardize, factor = _standardize_layer(keras, head.mean_, head.scale_)
        x = standardize(x)
    n_dense = n_dropout = 0
    for layer in layers:
        config = dict(layer.get_config(), dtype="float32")
        if layer is last:
            config.update(name="logits", activation="linear")
        elif type(layer) is keras.layers.Dense:
            n_dense += 1
            config["name"] = f"hidden_{n_dense}"
        else:
            n_dropout += 1
            config["name"] = f"dropout_{n_dropout}"
        copy = type(layer).from_config(config)
        x = copy(x)
        weights = [np.array(w, copy=True) for w in layer.get_weights()]
        if weights:
            if factor is not None:  # the first Dense layer takes the standardized features
                weights[0] = weights[0] * factor[:, None].astype(weights[0].dtype)
                factor = None
            copy.set_weights(weights)
    return _finish(keras, inputs, x)


# --------------------------------------------------------------------------- linear models


def _linear_parameters(
    head: Any,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray, np.ndarray, str]:
    """``(mean, scale, kernel, bias, mode)`` of a linear head, all in float64.

    ``softmax(logits)`` (``"ovr"``: ``softmax(log_sigmoid(logits))``) of the logits
    ``((X - mean) / scale) @ kernel + bias`` equals ``class_probabilities(head, X)``;
    this is checked on a few probe rows before returning.
    """
    from sklearn.preprocessing import StandardScaler

    scalers: list[Any] = []
    estimator, n_classes, seen = head, None, None
    if isinstance(head, SklearnHead):
        if hasattr(head, "estimator_"):
            estimator = head.estimator_
        elif head.estimator is not None:  # unfitted: check the type before fitted-ness
            estimator = head.estimator
        else:
            check_fitted(head, "head_to_keras")
    if _is_pipeline(estimator):
        *steps, (_, estimator) = estimator.steps
        for name, step in steps:
            if isinstance(step, StandardScaler):
                scalers.append(step)
            elif not (step is None or (isinstance(step, str) and step == "passthrough")):
                raise _unsupported(head, f"step {name!r} ({type(step).__name__}) is not a "
                                         "StandardScaler")
    mode_of = _linear_mode(head, estimator)
    check_fitted(head, "head_to_keras")
    check_fitted(estimator, "head_to_keras")
    if isinstance(head, SklearnHead):
        if head.scaler_ is not None:
            scalers.insert(0, head.scaler_)
        n_classes = len(head.classes_)
        seen = np.asarray(estimator.classes_).astype(np.int64)

    coef = estimator.coef_
    coef = np.atleast_2d(np.asarray(coef.toarray() if hasattr(coef, "toarray") else coef,
                                    dtype=np.float64))
    intercept = np.broadcast_to(
        np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64)), (coef.shape[0],)
    )
    n_seen = len(estimator.classes_)
    mode = mode_of(n_seen)
    if n_seen < 2 or coef.shape[0] != (1 if n_seen == 2 else n_seen):
        raise _unsupported(head, f"its coef_ of shape {coef.shape} does not match its "
                                 f"{n_seen} classes")
    w, b = coef.T, intercept
    if mode == _SIGMOID:
        w, b = np.hstack([np.zeros_like(w), w]), np.array([0.0, b[0]])
    elif mode == _SYMMETRIC:
        w, b = np.hstack([-w, w]), np.array([-b[0], b[0]])
    if n_classes is None or n_classes == n_seen:
        kernel, bias = w, b
    else:  # a SklearnHead fitted on one-hot labels where some classes never occur
        kernel = np.zeros((w.shape[0], n_classes))
        bias = np.full(n_classes, MISSING_CLASS_BIAS)
        kernel[:, seen], bias[seen] = w, b

    mean = scale = None
    for scaler in scalers:  # compose (x - m1) / s1, then (. - m2) / s2, ...
        m = scaler.mean_ if scaler.with_mean else np.zeros(kernel.shape[0])
        s = scaler.scale_ if scaler.with_std else np.ones(kernel.shape[0])
        m, s = np.asarray(m, dtype=np.float64), np.asarray(s, dtype=np.float64)
        mean, scale = (m, s) if mean is None else (mean + scale * m, scale * s)
    _check_reproduces(head, mean, scale, kernel, bias, mode)
    return mean, scale, kernel, bias, mode


def _linear_mode(head: Any, estimator: Any) -> Any:
    """How the estimator's probabilities follow from its decision function.

    Returns a function of the number of classes giving the mode (see the module
    docstring); raises the unsupported-head error for any other estimator.
    """
    from sklearn.linear_model import (
        LogisticRegression,
        Perceptron,
        RidgeClassifier,
        RidgeClassifierCV,
        SGDClassifier,
    )
    from sklearn.svm import LinearSVC

    if isinstance(estimator, LogisticRegression):  # LogisticRegressionCV too
        # scikit-learn < 1.8 has `multi_class`: one-vs-rest for "ovr", and for "auto"
        # with the liblinear solver; newer versions are multinomial beyond 2 classes.
        multi_class = getattr(estimator, "multi_class", "auto")
        liblinear = getattr(estimator, "solver", None) == "liblinear"

        def logistic(n: int) -> str:
            ovr = multi_class in ("ovr", "warn") or (
                multi_class in ("auto", "deprecated") and (n <= 2 or liblinear)
            )
            if n == 2:
                return _SIGMOID if ovr else _SYMMETRIC
            return _OVR if ovr else _SOFTMAX

        return logistic
    if isinstance(estimator, SGDClassifier):
        if estimator.loss == "modified_huber":
            raise _unsupported(
                head, "SGDClassifier(loss='modified_huber') has clipped, piecewise-linear "
                      "probabilities that no softmax reproduces"
            )
        if estimator.loss == "log_loss":
            return lambda n: _SIGMOID if n == 2 else _OVR
        return _decision_softmax
    if isinstance(estimator, RidgeClassifier | RidgeClassifierCV | LinearSVC | Perceptron):
        return _decision_softmax
    raise _unsupported(head)


def _decision_softmax(n: int) -> str:
    """Classifiers without ``predict_proba``: ``softmax`` of the decision function."""
    return _SYMMETRIC if n == 2 else _SOFTMAX


def _reference_probabilities(
    X: np.ndarray,
    mean: np.ndarray | None,
    scale: np.ndarray | None,
    kernel: np.ndarray,
    bias: np.ndarray,
    mode: str,
) -> np.ndarray:
    """What the Keras model computes, in float64 NumPy."""
    if mean is not None:
        X = (X - mean) / scale
    z = X @ kernel + bias
    if mode == _OVR:
        z = -np.logaddexp(0.0, -z)  # log_sigmoid
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check_reproduces(
    head: Any,
    mean: np.ndarray | None,
    scale: np.ndarray | None,
    kernel: np.ndarray,
    bias: np.ndarray,
    mode: str,
) -> None:
    """Check on a few probe rows that the parameters give ``class_probabilities(head)``.

    Guards against a scikit-learn version whose probabilities follow another formula.
    """
    rng = np.random.default_rng(0)
    probe = rng.standard_normal((8, kernel.shape[0]))
    if mean is not None:  # around the training data
        probe = mean + scale * probe
    with warnings.catch_warnings():  # e.g. "X does not have valid feature names"
        warnings.simplefilter("ignore")
        expected = np.asarray(class_probabilities(head, probe), dtype=np.float64)
    actual = _reference_probabilities(probe, mean, scale, kernel, bias, mode)
    if expected.shape != actual.shape or not np.allclose(actual, expected, rtol=0, atol=1e-6):
        raise TransferkitError(
            f"head_to_keras could not reproduce the probabilities of {_describe_estimator(head)} "
            f"with this scikit-learn version (mode {mode!r}); please report this."
        )


def _linear_to_keras(
    mean: np.ndarray | None,
    scale: np.ndarray | None,
    kernel: np.ndarray,
    bias: np.ndarray,
    mode: str,
) -> Any:
    import keras

    inputs = _model_input(keras, kernel.shape[0])
    x = inputs
    if mean is not None:
        standardize, factor = _standardize_layer(keras, mean, scale)
        kernel = kernel * factor[:, None]
        x = standardize(x)
    dense = keras.layers.Dense(kernel.shape[1], activation="linear", name="logits",
                               dtype="float32")
    x = dense(x)
    dense.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return _finish(keras, inputs, x, ovr=mode == _OVR)
