"""Classification heads trained on extracted feature vectors.

A head is a scikit-learn compatible classifier that maps feature vectors (a float
array of shape ``(n_samples, n_features)``, as produced by an extractor or read from a
:class:`~transferkit.FeatureCache`) to class labels.

* :class:`DenseHead` -- a small Keras softmax network (Dense layers + dropout).
* :class:`SklearnHead` -- wraps any scikit-learn classifier, with optional
  standardization of the features.

Both follow scikit-learn's conventions (parameters stored untouched in ``__init__``,
validation in ``fit``, learned attributes ending in ``_``), so they work inside
:class:`~sklearn.pipeline.Pipeline` and :class:`~sklearn.model_selection.GridSearchCV`.

Heads are saved to a single zip file with :meth:`DenseHead.save` /
:meth:`SklearnHead.save` and read back with :func:`load_head`. TensorFlow and Keras
are imported only when a :class:`DenseHead` is fitted, used or loaded.

Examples
--------
>>> from sklearn.linear_model import LogisticRegression
>>> from transferkit.heads import SklearnHead, load_head
>>> head = SklearnHead(LogisticRegression(max_iter=2000)).fit(f_train, y_train)  # doctest: +SKIP
>>> head.score(f_test, y_test)  # doctest: +SKIP
>>> head.save("head.tkhead")  # doctest: +SKIP
>>> load_head("head.tkhead").predict(f_test)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._strategy import (
    check_strategy,
    clone_keeping_strategy,
    even_sample_count,
    fit_model,
    num_replicas,
    strategy_scope,
)
from ._validation import describe
from .exceptions import InvalidInputError, InvalidTypeError, NotFittedError, TransferkitError

__all__ = ["DenseHead", "SklearnHead", "load_head", "HEAD_FORMAT_VERSION"]

#: Version of the head file format written by ``save``; files with a newer version
#: are refused by :func:`load_head`.
HEAD_FORMAT_VERSION = 1

_FORMAT_NAME = "transferkit-head"
_META = "meta.json"
_MODEL = "model.keras"
_MEAN = "mean.npy"
_SCALE = "scale.npy"
_ESTIMATOR_SKOPS = "estimator.skops"
_SCALER_SKOPS = "scaler.skops"
_STATE_PICKLE = "state.pkl"
_PREDICT_BATCH = 8192
_MAX_SEED = 2**31 - 1
# Modules whose *classes* are trusted automatically when loading skops files.
_AUTO_TRUSTED_ROOTS = ("sklearn", "numpy", "scipy")


# --------------------------------------------------------------------------- helpers


def _check_fitted(estimator: BaseEstimator, method: str) -> None:
    """Raise transferkit's NotFittedError unless ``estimator`` is fitted."""
    try:
        check_is_fitted(estimator, "classes_")
    except _SklearnNotFittedError:
        name = type(estimator).__name__
        raise NotFittedError(
            f"This {name} instance is not fitted yet: expected a fitted head before "
            f"calling `{method}`; call `{name}.fit(X, y)` first."
        ) from None


def _validate_X(estimator: BaseEstimator, X: Any, *, reset: bool, dtype: Any) -> np.ndarray:
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


def _encode_y(estimator: BaseEstimator, y: Any, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and encode them as integers.

    Returns
    -------
    classes : ndarray of shape (n_classes,)
        Sorted unique labels (``arange(k)`` for one-hot ``y``).
    y_encoded : ndarray of shape (n_samples,) and dtype int64
        Index of each sample's label in ``classes``.
    """
    name = type(estimator).__name__
    expected = (
        f"class labels of shape ({n_samples},) (integers or strings) or one-hot labels "
        f"of shape ({n_samples}, n_classes)"
    )
    if y is None:
        raise InvalidInputError(
            f"{name} requires y to be passed, but the target y is None: `y` must be {expected}."
        )
    try:
        y_arr = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"`y` must be {expected}; received {describe(y)}. {exc}") from exc
    if y_arr.ndim == 0 or y_arr.ndim > 2:
        raise InvalidInputError(
            f"`y` must be {expected}; received an array of shape {y_arr.shape}."
        )
    if len(y_arr) != n_samples:
        raise InvalidInputError(
            f"`y` must have one label per row of `X`: expected {n_samples} labels "
            f"(len(X)), received {len(y_arr)} (len(y))."
        )
    if y_arr.ndim == 2 and y_arr.shape[1] == 1:
        y_arr = column_or_1d(y_arr, warn=True)  # DataConversionWarning, like sklearn
    if y_arr.ndim == 2:
        onehot = (np.issubdtype(y_arr.dtype, np.number) or y_arr.dtype == bool) and y_arr.shape[
            1
        ] >= 2
        if onehot:
            values = y_arr.astype(np.float64)
            onehot = bool(np.isin(values, (0.0, 1.0)).all() and (values.sum(axis=1) == 1.0).all())
        if not onehot:
            raise InvalidInputError(
                f"`y` must be {expected} (multi-label and multi-output targets are not "
                f"supported); received a 2-D array of shape {y_arr.shape} whose rows are "
                "not one-hot (exactly one 1, all other entries 0)."
            )
        classes = np.arange(y_arr.shape[1])
        y_encoded = np.argmax(y_arr, axis=1).astype(np.int64)
    else:
        try:
            check_classification_targets(y_arr)
            classes, y_encoded = np.unique(y_arr, return_inverse=True)
        except TypeError as exc:
            raise InvalidTypeError(
                f"`y` must be {expected}, all of one comparable type; received "
                f"{describe(y_arr)}. {exc}"
            ) from exc
        except ValueError as exc:
            raise InvalidInputError(
                f"`y` must be {expected}; received {describe(y_arr)}. {exc}"
            ) from exc
        y_encoded = np.asarray(y_encoded, dtype=np.int64).reshape(-1)
    if len(classes) < 2:
        raise InvalidInputError(
            f"`y` must contain at least 2 classes; received 1 class ({classes.tolist()!r}). "
            "A classifier needs examples of at least two classes."
        )
    return classes, y_encoded


def _check_path(path: Any, name: str = "path") -> Path:
    if not isinstance(path, str | os.PathLike):
        raise InvalidTypeError(f"`{name}` must be a str or os.PathLike; received {describe(path)}.")
    return Path(path)


def _classes_to_json(classes: np.ndarray) -> dict[str, Any]:
    values = classes.tolist()
    try:
        json.dumps(values)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            "`classes_` must hold JSON-serializable labels (integers, strings, booleans or "
            f"floats) to be saved; received {describe(classes)}."
        ) from exc
    return {"values": values, "kind": classes.dtype.kind, "dtype": classes.dtype.str}


def _classes_from_json(spec: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(spec["dtype"])
    if dtype.kind == "O":
        out = np.empty(len(spec["values"]), dtype=object)
        out[:] = spec["values"]
        return out
    return np.asarray(spec["values"], dtype=dtype)


def _model_to_bytes(model: Any) -> bytes:
    import keras

    with tempfile.TemporaryDirectory(prefix="transferkit-") as tmp:
        file = os.path.join(tmp, _MODEL)
        keras.saving.save_model(model, file)
        with open(file, "rb") as fh:
            return fh.read()


def _model_from_bytes(data: bytes, *, source: str) -> Any:
    import keras

    with tempfile.TemporaryDirectory(prefix="transferkit-") as tmp:
        file = os.path.join(tmp, _MODEL)
        with open(file, "wb") as fh:
            fh.write(data)
        try:
            return keras.saving.load_model(file, safe_mode=True, compile=False)
        except Exception as exc:  # keras raises many types for a damaged file
            raise InvalidInputError(
                f"{source} must hold a valid Keras model (model.keras); it could not be "
                f"loaded: {type(exc).__name__}: {exc}"
            ) from exc


def _write_atomically(path: Path, members: dict[str, bytes]) -> None:
    """Write a zip with ``members`` to ``path`` via a temp file + ``os.replace``."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for member, data in members.items():
                    zf.writestr(member, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def _npy_load(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _base_meta(head: BaseEstimator, params: dict[str, Any]) -> dict[str, Any]:
    from . import __version__

    meta: dict[str, Any] = {
        "format": _FORMAT_NAME,
        "format_version": HEAD_FORMAT_VERSION,
        "transferkit_version": __version__,
        "class": type(head).__name__,
        "params": params,
        "classes": _classes_to_json(head.classes_),
        "n_features_in": int(head.n_features_in_),
    }
    if hasattr(head, "feature_names_in_"):
        meta["feature_names_in"] = [str(f) for f in head.feature_names_in_]
    return meta


def _restore_base(head: BaseEstimator, meta: dict[str, Any]) -> None:
    head.classes_ = _classes_from_json(meta["classes"])
    head.n_features_in_ = int(meta["n_features_in"])
    if "feature_names_in" in meta:
        head.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)


class _HeadFile:
    """Read access to a saved head: the metadata and the raw members."""

    def __init__(self, path: Any) -> None:
        self.path = _check_path(path)
        self.where = f"`path` ({str(self.path)!r})"
        if not self.path.is_file():
            raise InvalidInputError(
                f"{self.where} must be an existing head file written by `head.save(path)`; "
                "no such file."
            )
        self.members: dict[str, bytes] = {}
        try:
            with zipfile.ZipFile(self.path) as zf:
                for info in zf.infolist():
                    self.members[info.filename] = zf.read(info)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
            raise InvalidInputError(
                f"{self.where} must be a transferkit head file (a zip archive written by "
                f"`head.save(path)`); it is not a readable zip archive: {exc}"
            ) from exc
        if _META not in self.members:
            raise InvalidInputError(
                f"{self.where} must be a transferkit head file containing {_META}; "
                f"received a zip archive with {sorted(self.members)[:10]}."
            )
        try:
            meta = json.loads(self.members[_META].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidInputError(
                f"{self.where} must hold valid JSON in {_META}; it is damaged: {exc}"
            ) from exc
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT_NAME:
            raise InvalidInputError(
                f"{self.where} must be a transferkit head file ({_META} with "
                f"format={_FORMAT_NAME!r}); received format {describe(meta.get('format') if isinstance(meta, dict) else meta)}."  # noqa: E501
            )
        version = meta.get("format_version")
        if not isinstance(version, int) or version > HEAD_FORMAT_VERSION or version < 1:
            raise InvalidInputError(
                f"{self.where} has head format version {version!r}; this transferkit reads "
                f"versions 1..{HEAD_FORMAT_VERSION}. Upgrade transferkit to load it."
            )
        for key in ("class", "params", "classes", "n_features_in"):
            if key not in meta:
                raise InvalidInputError(f"{self.where} is damaged: {_META} lacks {key!r}.")
        self.meta = meta

    def member(self, name: str) -> bytes:
        try:
            return self.members[name]
        except KeyError:
            raise InvalidInputError(
                f"{self.where} is damaged: expected a member {name!r} in the archive; "
                f"received members {sorted(self.members)}."
            ) from None

    def check_class(self, cls: type) -> None:
        if self.meta["class"] != cls.__name__:
            raise InvalidInputError(
                f"{self.where} must hold a {cls.__name__}; received a file holding a "
                f"{self.meta['class']!r}. Use `transferkit.heads.load_head(path)` to load "
                "any head."
            )

    def params_for(self, cls: type) -> dict[str, Any]:
        params = self.meta["params"]
        allowed = set(cls._get_param_names())
        if not isinstance(params, dict) or not set(params) <= allowed:
            raise InvalidInputError(
                f"{self.where} is damaged or from a newer transferkit: expected parameters "
                f"among {sorted(allowed)}; received {describe(params)}."
            )
        return params


# --------------------------------------------------------------------------- DenseHead


class _HeadScoreMixin:
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
        _check_fitted(self, "score")
        labels = np.asarray(y)
        classes = self.classes_  # type: ignore[attr-defined]
        if labels.ndim == 2 and labels.shape[1] == len(classes) and labels.shape[1] > 1:
            labels = classes[np.argmax(labels, axis=1)]
        elif labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise InvalidInputError(
                f"`y` must be 1-D labels (or one-hot rows with {len(classes)} columns); "
                f"received shape {labels.shape}."
            )
        n = len(X) if hasattr(X, "__len__") else None
        if n is not None and len(labels) != n:
            raise InvalidInputError(
                f"`y` must have one label per row of `X`: expected {n}, received {len(labels)}."
            )
        try:
            known = np.isin(labels, classes)
        except (TypeError, ValueError):
            known = np.zeros(len(labels), dtype=bool)
        if not known.all():
            unseen = list(dict.fromkeys(labels[~known].tolist()))
            raise InvalidInputError(
                f"`y` holds {len(unseen)} class(es) never seen in fit: {unseen[:10]}; this "
                f"head knows {classes.tolist()[:20]}. Score on labels of the trained classes."
            )
        return super().score(X, labels, sample_weight=sample_weight)  # type: ignore[misc]


class DenseHead(_HeadScoreMixin, ClassifierMixin, BaseEstimator):
    """Keras softmax classifier (a small MLP) trained on feature vectors.

    The network is ``[standardize] -> (Dense(units, activation) -> Dropout)* ->
    Dense(n_classes, softmax)``, trained with Adam on the sparse categorical
    cross-entropy.

    Parameters
    ----------
    hidden_units : sequence of int or int, default=(256,)
        Width of each hidden Dense layer. ``()`` gives a multinomial logistic
        regression.
    dropout : float, default=0.5
        Dropout rate after each hidden layer, in ``[0, 1)``.
    activation : str, default="relu"
        Keras activation of the hidden layers (e.g. ``"relu"``, ``"gelu"``, ``"tanh"``).
    learning_rate : float, default=1e-3
        Adam learning rate, > 0.
    batch_size : int, default=128
        Mini-batch size *per replica*. Without a ``strategy`` (one replica) it is the
        mini-batch size; with one, each optimizer step processes a global batch of
        ``batch_size * strategy.num_replicas_in_sync`` samples, split over the replicas
        (so that every batch, the last one included, splits evenly, the last
        ``n % num_replicas_in_sync`` training and validation samples are left out).
    epochs : int, default=30
        Maximum number of passes over the training data.
    validation_split : float, default=0.1
        Fraction of the samples held out (stratified when possible) to monitor
        ``val_loss``, in ``[0, 1)``. Skipped when the held-out or the remaining part
        would have fewer samples than there are classes.
    early_stopping : bool, default=True
        Stop when the monitored loss (``val_loss``, or the training ``loss`` when there
        is no validation data) has not improved for ``patience`` epochs, and restore
        the weights of the best epoch.
    patience : int, default=5
        Epochs without improvement before stopping.
    standardize : bool, default=True
        Standardize each feature with the mean and standard deviation of the
        training data before the network.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialization, dropout, shuffling and the validation split.
        With an int, two fits on the same data give identical predictions (on CPU)
        and no global random state (NumPy, Python, TensorFlow) is used or modified.
        None draws the seeds from NumPy's global random state, like scikit-learn.
    verbose : int, default=0
        Keras verbosity during training (0, 1 or 2).
    strategy : tf.distribute.Strategy or None, default=None
        Train on several devices: e.g. ``tf.distribute.MirroredStrategy()`` (the GPUs
        of one machine) or ``tf.distribute.MultiWorkerMirroredStrategy()`` (several
        machines; run the same ``fit``, with the same ``random_state``, on every
        worker; Keras 3.15 cannot yet fit across workers, keras-team/keras#20585).
        The model is built and compiled in ``strategy.scope()``; gradients
        are averaged over the replicas, so a step is the same as one on the global
        batch on a single device. ``batch_size`` is per replica and the learning rate
        is *not* rescaled: to keep the global batch of a single-device run, divide
        ``batch_size`` by the number of replicas; otherwise consider raising
        ``learning_rate`` with the global batch. None (the default) trains on the
        default device. Predictions run on the default device either way. The
        strategy is not part of the pickled or saved state: an unpickled or loaded
        head has ``strategy=None``; ``sklearn.base.clone`` keeps the same object.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels (``arange(k)`` when fitted on one-hot labels).
    n_features_in_ : int
        Number of features seen in ``fit``.
    mean_, scale_ : ndarray of shape (n_features_in_,) or None
        Standardization statistics (None when ``standardize=False``).
    model_ : keras.Model
        The trained network (outputs class probabilities; no standardization inside).
    history_ : dict of str to list of float
        Per-epoch training metrics (``loss``, ``accuracy``, ``val_loss``...).
    n_iter_ : int
        Number of epochs actually run.
    global_batch_size_ : int
        Samples per optimizer step: ``batch_size`` times the number of replicas.

    Examples
    --------
    >>> head = DenseHead(hidden_units=(256,), dropout=0.5, epochs=30)  # doctest: +SKIP
    >>> head.fit(f_train, y_train).score(f_test, y_test)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        hidden_units: Sequence[int] | int = (256,),
        dropout: float = 0.5,
        activation: str = "relu",
        learning_rate: float = 1e-3,
        batch_size: int = 128,
        epochs: int = 30,
        validation_split: float = 0.1,
        early_stopping: bool = True,
        patience: int = 5,
        standardize: bool = True,
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        strategy: Any = None,
    ) -> None:
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.activation = activation
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.validation_split = validation_split
        self.early_stopping = early_stopping
        self.patience = patience
        self.standardize = standardize
        self.random_state = random_state
        self.verbose = verbose
        self.strategy = strategy

    # -- parameter validation ----------------------------------------------------------

    def _validated_params(self) -> dict[str, Any]:
        units = self.hidden_units
        if isinstance(units, int | np.integer) and not isinstance(units, bool):
            units = (units,)
        if isinstance(units, str) or not isinstance(units, Sequence | np.ndarray):
            raise InvalidTypeError(
                "`hidden_units` must be a sequence of positive integers (e.g. (256,) or "
                f"(512, 128)); received {describe(self.hidden_units)}."
            )
        units = tuple(units)
        for u in units:
            if isinstance(u, bool) or not isinstance(u, int | np.integer) or u < 1:
                raise InvalidInputError(
                    "`hidden_units` must be a sequence of positive integers (e.g. (256,)); "
                    f"received {self.hidden_units!r} containing {u!r}."
                )
        units = tuple(int(u) for u in units)

        dropout = _check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        lr = _check_float("learning_rate", self.learning_rate, low=0.0, low_open=True)
        vsplit = _check_float(
            "validation_split", self.validation_split, low=0.0, high=1.0, high_open=True
        )
        if not isinstance(self.activation, str):
            raise InvalidTypeError(
                "`activation` must be the name of a Keras activation (e.g. 'relu'); "
                f"received {describe(self.activation)}."
            )
        import keras

        try:
            keras.activations.get(self.activation)
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(
                "`activation` must be the name of a Keras activation (e.g. 'relu', 'gelu', "
                f"'tanh'); received {self.activation!r}."
            ) from exc
        return {
            "hidden_units": units,
            "activation": self.activation,
            "dropout": dropout,
            "learning_rate": lr,
            "validation_split": vsplit,
            "batch_size": _check_int("batch_size", self.batch_size, low=1),
            "epochs": _check_int("epochs", self.epochs, low=1),
            "patience": _check_int("patience", self.patience, low=0),
            "verbose": _check_int("verbose", self.verbose, low=0, high=2),
            "early_stopping": _check_bool("early_stopping", self.early_stopping),
            "standardize": _check_bool("standardize", self.standardize),
            "strategy": check_strategy(self.strategy),
        }

    # -- fit / predict -----------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> DenseHead:
        """Train the network on features ``X`` and labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature vectors (converted to float32).
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Class labels (integers or strings), or one-hot labels.

        Returns
        -------
        self : DenseHead
            The fitted head.
        """
        params = self._validated_params()
        rng = check_random_state(self.random_state)
        X = _validate_X(self, X, reset=True, dtype=np.float32)
        classes, y_enc = _encode_y(self, y, X.shape[0])
        n_classes = len(classes)

        if params["standardize"]:
            mean = X.mean(axis=0, dtype=np.float64)
            std = X.std(axis=0, dtype=np.float64)
            std[~(std > 10 * np.finfo(np.float32).eps)] = 1.0
            self.mean_ = mean.astype(np.float32)
            self.scale_ = std.astype(np.float32)
        else:
            self.mean_ = None
            self.scale_ = None
        Xs = self._standardized(X)

        n_seeds = 2 * len(params["hidden_units"]) + 3
        seeds = [int(s) for s in rng.randint(0, _MAX_SEED, size=n_seeds)]
        split_seed, shuffle_seed, *layer_seeds = seeds

        validation_data = None
        n_val = int(round(params["validation_split"] * len(Xs)))
        if params["validation_split"] > 0 and n_val >= n_classes and len(Xs) - n_val >= n_classes:
            counts = np.bincount(y_enc, minlength=n_classes)
            stratify = y_enc if counts.min() >= 2 else None
            X_tr, X_val, y_tr, y_val = train_test_split(
                Xs, y_enc, test_size=n_val, random_state=split_seed, stratify=stratify
            )
            validation_data = (X_val, y_val)
        else:
            X_tr, y_tr = Xs, y_enc

        import keras
        import tensorflow as tf

        strategy = params["strategy"]
        replicas = num_replicas(strategy)
        global_batch = params["batch_size"] * replicas
        # Every global batch must split evenly over the replicas (see even_sample_count).
        kept = even_sample_count(len(X_tr), replicas, name="X")
        X_tr, y_tr = X_tr[:kept], y_tr[:kept]
        if validation_data is not None:
            kept = even_sample_count(len(validation_data[0]), replicas)
            validation_data = (
                (validation_data[0][:kept], validation_data[1][:kept]) if kept else None
            )
        with strategy_scope(strategy):  # variables, optimizer and metrics on every replica
            model = self._build_model(params, X.shape[1], n_classes, layer_seeds)
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=params["learning_rate"]),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
        dataset = (
            tf.data.Dataset.from_tensor_slices((X_tr, y_tr))
            .shuffle(len(X_tr), seed=shuffle_seed, reshuffle_each_iteration=True)
            .batch(global_batch)
        )
        callbacks = []
        if params["early_stopping"]:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss" if validation_data is not None else "loss",
                    patience=params["patience"],
                    restore_best_weights=True,
                )
            )
        history = fit_model(
            model,
            strategy,
            dataset,
            epochs=params["epochs"],
            validation_data=validation_data,
            validation_batch_size=max(global_batch, 1024),
            callbacks=callbacks,
            shuffle=False,  # the dataset is shuffled with our own seed
            verbose=params["verbose"],
        )
        self.classes_ = classes
        self.model_ = model
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        self.n_iter_ = len(self.history_.get("loss", []))
        self.global_batch_size_ = global_batch
        return self

    @staticmethod
    def _build_model(
        params: dict[str, Any], n_features: int, n_classes: int, seeds: list[int]
    ) -> Any:
        import keras

        layers: list[Any] = [keras.Input(shape=(n_features,), dtype="float32")]
        for i, units in enumerate(params["hidden_units"]):
            layers.append(
                keras.layers.Dense(
                    units,
                    activation=params["activation"],
                    kernel_initializer=keras.initializers.GlorotUniform(seed=seeds[2 * i]),
                )
            )
            if params["dropout"] > 0:
                layers.append(keras.layers.Dropout(params["dropout"], seed=seeds[2 * i + 1]))
        layers.append(
            keras.layers.Dense(
                n_classes,
                activation="softmax",
                kernel_initializer=keras.initializers.GlorotUniform(seed=seeds[-1]),
            )
        )
        return keras.Sequential(layers, name="transferkit_dense_head")

    def _standardized(self, X: np.ndarray) -> np.ndarray:
        if self.mean_ is None:
            return np.ascontiguousarray(X, dtype=np.float32)
        return ((X - self.mean_) / self.scale_).astype(np.float32, copy=False)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Feature vectors.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float64
            Probabilities in the order of ``classes_``; rows sum to 1.
        """
        _check_fitted(self, "predict_proba")
        X = _validate_X(self, X, reset=False, dtype=np.float32)
        Xs = self._standardized(X)
        import keras

        out = np.empty((len(Xs), len(self.classes_)), dtype=np.float64)
        for start in range(0, len(Xs), _PREDICT_BATCH):
            batch = Xs[start : start + _PREDICT_BATCH]
            out[start : start + len(batch)] = keras.ops.convert_to_numpy(
                self.model_(batch, training=False)
            )
        out /= out.sum(axis=1, keepdims=True)
        return out

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
        _check_fitted(self, "predict")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # -- persistence -------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        if "model_" in state:
            state["model_"] = _model_to_bytes(state["model_"])
        if state.get("strategy") is not None:
            state["strategy"] = None  # devices and cluster connections do not pickle
        return state

    def __sklearn_clone__(self) -> DenseHead:
        return clone_keeping_strategy(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if isinstance(state.get("model_"), bytes):
            state["model_"] = _model_from_bytes(state["model_"], source="the pickled DenseHead")
        super().__setstate__(state)

    def save(self, path: str | os.PathLike) -> None:
        """Save the fitted head to a single zip file (``.tkhead`` suggested).

        The archive holds ``meta.json``, ``model.keras`` and the standardization arrays
        (``.npy``, no pickle). The file is written to a temporary name and moved into
        place, so ``path`` never holds a half-written head. Parameters are stored as
        JSON; a ``random_state`` that is a ``RandomState`` instance is stored as None,
        and ``strategy`` is not stored (the loaded head has ``strategy=None``).

        Parameters
        ----------
        path : str or os.PathLike
            Destination file; overwritten if it exists.

        Raises
        ------
        NotFittedError
            If the head is not fitted.
        """
        _check_fitted(self, "save")
        path = _check_path(path)
        params = self.get_params(deep=False)
        params.pop("strategy", None)  # a device setup, not part of the model: loads as None
        params["hidden_units"] = (
            [int(u) for u in params["hidden_units"]]
            if not isinstance(params["hidden_units"], int | np.integer)
            else int(params["hidden_units"])
        )
        if not (params["random_state"] is None or isinstance(params["random_state"], int)):
            params["random_state"] = None  # a RandomState instance is not JSON
        try:
            json.dumps(params)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"DenseHead parameters must be JSON-serializable to be saved; received {params!r}."
            ) from exc
        meta = _base_meta(self, params)
        meta["n_iter"] = int(self.n_iter_)
        meta["history"] = self.history_
        members = {_META: json.dumps(meta, indent=2).encode("utf-8")}
        members[_MODEL] = _model_to_bytes(self.model_)
        if self.mean_ is not None:
            members[_MEAN] = _npy_bytes(self.mean_)
            members[_SCALE] = _npy_bytes(self.scale_)
        _write_atomically(path, members)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DenseHead:
        """Load a head written by :meth:`save`.

        The Keras model is loaded with ``safe_mode=True``.

        Parameters
        ----------
        path : str or os.PathLike
            File written by :meth:`DenseHead.save`.

        Returns
        -------
        head : DenseHead
            The fitted head.
        """
        return cls._from_file(_HeadFile(path))

    @classmethod
    def _from_file(cls, hf: _HeadFile) -> DenseHead:
        hf.check_class(cls)
        params = dict(hf.params_for(cls))
        if isinstance(params.get("hidden_units"), list):
            params["hidden_units"] = tuple(params["hidden_units"])
        head = cls(**params)
        try:
            _restore_base(head, hf.meta)
            head.n_iter_ = int(hf.meta.get("n_iter", 0))
            head.history_ = dict(hf.meta.get("history", {}))
            if _MEAN in hf.members:
                head.mean_ = _npy_load(hf.member(_MEAN)).astype(np.float32)
                head.scale_ = _npy_load(hf.member(_SCALE)).astype(np.float32)
            else:
                head.mean_ = head.scale_ = None
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, TransferkitError):
                raise
            raise InvalidInputError(f"{hf.where} is damaged: {type(exc).__name__}: {exc}") from exc
        head.model_ = _model_from_bytes(hf.member(_MODEL), source=hf.where)
        _check_dense_consistent(head, hf)
        return head


# --------------------------------------------------------------------------- SklearnHead


def _estimator_has(attr: str) -> Any:
    """``available_if`` check: the (fitted, else configured) estimator has ``attr``."""

    def check(self: SklearnHead) -> bool:
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, attr)
        return hasattr(self._template(), attr)

    return check


class SklearnHead(_HeadScoreMixin, ClassifierMixin, BaseEstimator):
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
        standardize = _check_bool("standardize", self.standardize)
        X = _validate_X(self, X, reset=True, dtype=[np.float64, np.float32])
        classes, y_enc = _encode_y(self, y, X.shape[0])
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
        _check_fitted(self, method)
        X = _validate_X(self, X, reset=False, dtype=[np.float64, np.float32])
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
        proba = np.asarray(self.estimator_.predict_proba(X))
        seen = np.asarray(self.estimator_.classes_, dtype=np.int64)
        if len(seen) == len(self.classes_):
            return proba
        out = np.zeros((proba.shape[0], len(self.classes_)), dtype=proba.dtype)
        out[:, seen] = proba
        return out

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
        log_proba = np.asarray(self.estimator_.predict_log_proba(X))
        seen = np.asarray(self.estimator_.classes_, dtype=np.int64)
        if len(seen) == len(self.classes_):
            return log_proba
        out = np.full((log_proba.shape[0], len(self.classes_)), -np.inf, dtype=log_proba.dtype)
        out[:, seen] = log_proba
        return out

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
        seen = np.asarray(self.estimator_.classes_, dtype=np.int64)
        if len(seen) == len(self.classes_):
            return scores
        # One-hot y with classes that never occur: one column per class, -inf if unseen.
        out = np.full((scores.shape[0], len(self.classes_)), -np.inf, dtype=np.float64)
        if scores.ndim == 1:
            out[:, seen[0]] = -scores
            out[:, seen[1]] = scores
        else:
            out[:, seen] = scores
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
        _check_fitted(self, "save")
        path = _check_path(path)
        params: dict[str, Any] = {"standardize": bool(self.standardize)}
        meta = _base_meta(self, params)
        meta["default_estimator"] = self.estimator is None
        members: dict[str, bytes] = {}
        sio = _import_skops()
        if sio is not None:
            meta["serializer"] = "skops"
            try:
                members[_ESTIMATOR_SKOPS] = sio.dumps(self.estimator_)
                if self.scaler_ is not None:
                    members[_SCALER_SKOPS] = sio.dumps(self.scaler_)
            except Exception as exc:  # skops raises various types for unsupported objects
                raise InvalidInputError(
                    "`estimator_` must be serializable with skops.io to be saved; "
                    f"received {describe(self.estimator_)}: {type(exc).__name__}: {exc}"
                ) from exc
        else:
            meta["serializer"] = "pickle"
            members[_STATE_PICKLE] = pickle.dumps(
                {"estimator_": self.estimator_, "scaler_": self.scaler_},
                protocol=pickle.HIGHEST_PROTOCOL,
            )
        members = {_META: json.dumps(meta, indent=2).encode("utf-8"), **members}
        _write_atomically(path, members)

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
        return cls._from_file(_HeadFile(path), trusted=trusted, allow_pickle=allow_pickle)

    @classmethod
    def _from_file(
        cls, hf: _HeadFile, *, trusted: Sequence[str] | None, allow_pickle: bool
    ) -> SklearnHead:
        hf.check_class(cls)
        params = hf.params_for(cls)
        serializer = hf.meta.get("serializer")
        if serializer == "skops":
            sio = _import_skops()
            if sio is None:
                raise InvalidInputError(
                    f"{hf.where} was saved with skops, which is not installed: expected the "
                    "`skops` package to read it; install it with `pip install skops`."
                )
            estimator = _skops_load(sio, hf.member(_ESTIMATOR_SKOPS), trusted, hf.where)
            scaler = None
            if _SCALER_SKOPS in hf.members:
                scaler = _skops_load(sio, hf.member(_SCALER_SKOPS), trusted, hf.where)
        elif serializer == "pickle":
            if not _check_bool("allow_pickle", allow_pickle):
                raise InvalidInputError(
                    f"{hf.where} was saved with pickle (skops was not installed), and "
                    "loading a pickle can run arbitrary code. Expected `allow_pickle=True` "
                    "to load it; received allow_pickle=False. Only pass allow_pickle=True "
                    "for files you trust, or install skops (`pip install skops`) and "
                    "re-save the head so it can be loaded safely."
                )
            try:
                state = pickle.loads(hf.member(_STATE_PICKLE))
                estimator, scaler = state["estimator_"], state["scaler_"]
            except TransferkitError:
                raise
            except Exception as exc:
                raise InvalidInputError(
                    f"{hf.where} is damaged: its pickled estimator could not be loaded: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        else:
            raise InvalidInputError(
                f"{hf.where} is damaged: expected serializer 'skops' or 'pickle' in "
                f"{_META}; received {serializer!r}."
            )
        head = cls(
            estimator=None if hf.meta.get("default_estimator", False) else clone(estimator),
            **params,
        )
        try:
            _restore_base(head, hf.meta)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"{hf.where} is damaged: {type(exc).__name__}: {exc}") from exc
        head.estimator_ = estimator
        head.scaler_ = scaler
        _check_sklearn_consistent(head, hf)
        return head


# --------------------------------------------------------------------------- consistency


def _mismatch(hf: _HeadFile, what: str) -> InvalidInputError:
    return InvalidInputError(
        f"{hf.where} is damaged: {what}. Its {_META} and its model were not saved together "
        "(edited or mixed up files): train the head again and save it."
    )


def _shown(classes: np.ndarray) -> str:
    values = classes.tolist()
    return f"{values[:10]}{' ...' if len(values) > 10 else ''}"


def _check_dense_consistent(head: DenseHead, hf: _HeadFile) -> None:
    """The class list and feature count of ``meta.json`` must match the Keras model."""
    n_classes, n_features = len(head.classes_), int(head.n_features_in_)
    try:
        outputs = int(head.model_.output_shape[-1])
        inputs = int(head.model_.input_shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        raise _mismatch(hf, f"its model has no usable input/output shape ({exc})") from exc
    if outputs != n_classes:
        raise _mismatch(
            hf, f"its class list holds {n_classes} classes ({_shown(head.classes_)}) but its "
            f"model outputs {outputs} class probabilities"
        )
    if inputs != n_features:
        raise _mismatch(
            hf, f"it records {n_features} input features (n_features_in) but its model "
            f"takes {inputs}"
        )
    for name in ("mean_", "scale_"):
        value = getattr(head, name)
        if value is not None and value.shape != (n_features,):
            raise _mismatch(
                hf, f"its standardization array {name} has shape {value.shape}; expected "
                f"({n_features},), one value per input feature"
            )


def _check_sklearn_consistent(head: SklearnHead, hf: _HeadFile) -> None:
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
            raise _mismatch(
                hf, f"its class list holds {len(classes)} classes ({_shown(classes)}) but its "
                f"estimator was trained on {len(seen)} class codes ({_shown(seen)})"
            )
    for part, obj in (("estimator", head.estimator_), ("scaler", head.scaler_)):
        expected = getattr(obj, "n_features_in_", None)
        if expected is not None and int(expected) != n_features:
            raise _mismatch(
                hf, f"it records {n_features} input features (n_features_in) but its {part} "
                f"was fitted on {int(expected)}"
            )


# --------------------------------------------------------------------------- skops


def _import_skops() -> Any:
    """Return ``skops.io``, or None when skops is not installed."""
    try:
        return importlib.import_module("skops.io")
    except ImportError:
        return None


def _is_auto_trusted(type_name: str) -> bool:
    """Whether ``type_name`` is a *class* defined in scikit-learn, NumPy or SciPy.

    Functions are never trusted automatically (a function such as ``numpy.load``
    could be misused by a crafted file), nor are names with dunder components.
    """
    parts = type_name.split(".")
    if parts[0] not in _AUTO_TRUSTED_ROOTS or len(parts) < 2:
        return False
    if any(p.startswith("__") or not p.isidentifier() for p in parts):
        return False
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return isinstance(obj, type)
    return False


def _skops_load(sio: Any, data: bytes, trusted: Sequence[str] | None, where: str) -> Any:
    if trusted is None:
        trusted = []
    if isinstance(trusted, str) or not all(isinstance(t, str) for t in trusted):
        raise InvalidTypeError(
            "`trusted` must be a list of type names such as ['mypackage.MyClassifier']; "
            f"received {describe(trusted)}."
        )
    try:
        untrusted = list(sio.get_untrusted_types(data=data))
    except Exception as exc:
        raise InvalidInputError(
            f"{where} is damaged: its skops data could not be read: {type(exc).__name__}: {exc}"
        ) from exc
    user = set(trusted)
    refused = [t for t in untrusted if t not in user and not _is_auto_trusted(t)]
    if refused:
        raise InvalidInputError(
            f"{where} contains types that are not trusted: {refused}. Only classes from "
            "scikit-learn, NumPy and SciPy are trusted automatically. If you trust the "
            "file and these types, pass them explicitly, e.g. "
            f"`load_head(path, trusted={refused!r})`."
        )
    try:
        return sio.loads(data, trusted=untrusted)
    except Exception as exc:
        raise InvalidInputError(
            f"{where} is damaged: its skops data could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc


# --------------------------------------------------------------------------- load_head


def load_head(
    path: str | os.PathLike,
    *,
    trusted: Sequence[str] | None = None,
    allow_pickle: bool = False,
) -> DenseHead | SklearnHead:
    """Load any head written by ``DenseHead.save`` or ``SklearnHead.save``.

    Parameters
    ----------
    path : str or os.PathLike
        The head file (a zip archive; ``.tkhead`` by convention).
    trusted : sequence of str, optional
        For :class:`SklearnHead` files saved with skops: extra type names to trust
        beyond the classes of scikit-learn, NumPy and SciPy.
    allow_pickle : bool, default=False
        For :class:`SklearnHead` files saved with pickle (skops not installed at save
        time): allow unpickling, which can run arbitrary code. Only for trusted files.

    Returns
    -------
    head : DenseHead or SklearnHead
        The fitted head; it predicts exactly like the one that was saved.

    Raises
    ------
    InvalidInputError
        If the file is missing, not a head file, damaged (including a class list or
        feature count in ``meta.json`` that does not match the model or estimator
        stored beside it), from a newer transferkit, needs untrusted types, or is a
        pickle and ``allow_pickle`` is False.
    """
    hf = _HeadFile(path)
    kind = hf.meta["class"]
    if kind == "DenseHead":
        return DenseHead._from_file(hf)
    if kind == "SklearnHead":
        return SklearnHead._from_file(hf, trusted=trusted, allow_pickle=allow_pickle)
    raise InvalidInputError(
        f"{hf.where} must hold a DenseHead or a SklearnHead; received a file holding {kind!r}."
    )


# --------------------------------------------------------------------------- scalars


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise InvalidTypeError(f"`{name}` must be True or False; received {describe(value)}.")
    return bool(value)


def _check_int(name: str, value: Any, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidTypeError(f"`{name}` must be an integer; received {describe(value)}.")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidInputError(f"`{name}` must be an integer {bound}; received {value}.")
    return int(value)


def _check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
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
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"  # noqa: E501
        raise InvalidInputError(f"`{name}` must be a number in {interval}; received {value!r}.")
    return value
