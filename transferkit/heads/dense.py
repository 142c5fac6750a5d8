"""DenseHead: a small Keras softmax network trained on feature vectors.

The network is ``[standardize] -> (Dense(units, activation) -> Dropout)* ->
Dense(n_classes, softmax)``, trained with Adam on the sparse categorical cross-entropy of
the class indices (see :mod:`transferkit._labels` for the labels it accepts). TensorFlow
and Keras are imported only when a head is fitted, used or loaded.

Invariants: ``model_`` takes the *standardized* features (``mean_``/``scale_`` are applied
outside the network, in NumPy) and outputs one probability per entry of ``classes_``; all
randomness comes from per-op seeds drawn from ``random_state``, so a seeded fit touches no
global random state. How a head is saved is described in :mod:`transferkit.heads._format`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from .._strategy import (
    check_strategy,
    clone_keeping_strategy,
    even_sample_count,
    fit_model,
    num_replicas,
    strategy_scope,
)
from .._validation import check_bool, check_float, check_int, describe
from ..exceptions import InvalidInputError, InvalidTypeError, TransferkitError
from ._common import (
    HeadScoreMixin,
    check_fitted,
    encode_targets,
    validate_features,
)
from ._format import (
    MEAN,
    MODEL,
    SCALE,
    HeadFile,
    base_meta,
    model_from_bytes,
    model_to_bytes,
    npy_bytes,
    npy_load,
    restore_base,
    save_head,
    shown,
)

__all__ = ["DenseHead", "pack_dense_head", "unpack_dense_head"]

_PREDICT_BATCH = 8192
_MAX_SEED = 2**31 - 1


class DenseHead(HeadScoreMixin, ClassifierMixin, BaseEstimator):
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

        dropout = check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        lr = check_float("learning_rate", self.learning_rate, low=0.0, low_open=True)
        vsplit = check_float(
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
            "batch_size": check_int("batch_size", self.batch_size, low=1),
            "epochs": check_int("epochs", self.epochs, low=1),
            "patience": check_int("patience", self.patience, low=0),
            "verbose": check_int("verbose", self.verbose, low=0, high=2),
            "early_stopping": check_bool("early_stopping", self.early_stopping),
            "standardize": check_bool("standardize", self.standardize),
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
        X = validate_features(self, X, reset=True, dtype=np.float32)
        classes, y_enc = encode_targets(self, y, X.shape[0])
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
        check_fitted(self, "predict_proba")
        X = validate_features(self, X, reset=False, dtype=np.float32)
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
        check_fitted(self, "predict")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # -- persistence -------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        if "model_" in state:
            state["model_"] = model_to_bytes(state["model_"])
        if state.get("strategy") is not None:
            state["strategy"] = None  # devices and cluster connections do not pickle
        return state

    def __sklearn_clone__(self) -> DenseHead:
        return clone_keeping_strategy(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if isinstance(state.get("model_"), bytes):
            state["model_"] = model_from_bytes(state["model_"], source="the pickled DenseHead")
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
        save_head(self, path)

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
        return unpack_dense_head(HeadFile(path), cls=cls)


# --------------------------------------------------------------------------- file format


def pack_dense_head(head: DenseHead) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A fitted DenseHead as ``(meta, members)`` of a head file (see ``_format``)."""
    params = head.get_params(deep=False)
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
    meta = base_meta(head, params)
    meta["n_iter"] = int(head.n_iter_)
    meta["history"] = head.history_
    members = {MODEL: model_to_bytes(head.model_)}
    if head.mean_ is not None:
        members[MEAN] = npy_bytes(head.mean_)
        members[SCALE] = npy_bytes(head.scale_)
    return meta, members


def unpack_dense_head(hf: HeadFile, *, cls: type[DenseHead] | None = None) -> DenseHead:
    """The DenseHead a head file holds, checked against its ``meta.json``."""
    cls = DenseHead if cls is None else cls
    hf.check_class(cls)
    params = dict(hf.params_for(cls))
    if isinstance(params.get("hidden_units"), list):
        params["hidden_units"] = tuple(params["hidden_units"])
    head = cls(**params)
    try:
        restore_base(head, hf.meta)
        head.n_iter_ = int(hf.meta.get("n_iter", 0))
        head.history_ = dict(hf.meta.get("history", {}))
        if MEAN in hf.members:
            head.mean_ = npy_load(hf.member(MEAN)).astype(np.float32)
            head.scale_ = npy_load(hf.member(SCALE)).astype(np.float32)
        else:
            head.mean_ = head.scale_ = None
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, TransferkitError):
            raise
        raise hf.damaged(exc) from exc
    head.model_ = model_from_bytes(hf.member(MODEL), source=hf.where)
    _check_consistent(head, hf)
    return head


def _check_consistent(head: DenseHead, hf: HeadFile) -> None:
    """The class list and feature count of ``meta.json`` must match the Keras model."""
    n_classes, n_features = len(head.classes_), int(head.n_features_in_)
    try:
        outputs = int(head.model_.output_shape[-1])
        inputs = int(head.model_.input_shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        raise hf.mismatch(f"its model has no usable input/output shape ({exc})") from exc
    if outputs != n_classes:
        raise hf.mismatch(
            f"its class list holds {n_classes} classes ({shown(head.classes_)}) but its "
            f"model outputs {outputs} class probabilities"
        )
    if inputs != n_features:
        raise hf.mismatch(
            f"it records {n_features} input features (n_features_in) but its model "
            f"takes {inputs}"
        )
    for name in ("mean_", "scale_"):
        value = getattr(head, name)
        if value is not None and value.shape != (n_features,):
            raise hf.mismatch(
                f"its standardization array {name} has shape {value.shape}; expected "
                f"({n_features},), one value per input feature"
            )
