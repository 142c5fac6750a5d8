"""The talk's CNN, trained from scratch on CIFAR-10; its trunk then serves as an extractor."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin

from .. import __version__
from .._hashing import hash_arrays
from .._lazy import import_keras
from .._validation import (
    check_choice,
    check_image_batch_values,
    check_images,
    check_positive_int,
    describe,
)
from ..exceptions import InvalidInputError, InvalidTypeError
from ._base import BaseExtractor
from ._registry import register_extractor

__all__ = ["CifarCNN", "encode_labels"]

_META_NAME = "transferkit.json"
_STANDARDIZE = ("per_image", "rescale")


def encode_labels(y: Any, n_samples: int, *, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Turn integer/string labels or one-hot rows into ``(classes, indices)``.

    Parameters
    ----------
    y : array-like of shape (n,) or (n, n_classes)
        Labels, or one-hot (or probability) rows.
    n_samples : int
        Number of images the labels must match.
    name : str
        Argument name for error messages.
    """
    if y is None:
        raise InvalidInputError(f"`{name}` is required: pass one label per image.")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if y.shape[0] != n_samples:
            raise InvalidInputError(
                f"`{name}` must have one row per image ({n_samples}); received {y.shape[0]}."
            )
        if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y).all():
            raise InvalidInputError(f"one-hot `{name}` must be finite numbers; got {y.dtype}.")
        return np.arange(y.shape[1]), np.argmax(y, axis=1).astype(np.int64)
    if y.ndim != 1:
        raise InvalidInputError(
            f"`{name}` must be 1-D labels or 2-D one-hot rows; received shape {y.shape}."
        )
    if len(y) != n_samples:
        raise InvalidInputError(
            f"`{name}` must have one label per image: expected {n_samples}, received {len(y)}."
        )
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise InvalidInputError(f"`{name}` contains NaN or infinite labels.")
    classes, idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise InvalidInputError(
            f"`{name}` must contain at least 2 classes to train a classifier; received "
            f"{len(classes)} class: {classes.tolist()}."
        )
    return classes, idx.astype(np.int64)


@register_extractor("cifar_cnn")
class CifarCNN(ClassifierMixin, BaseExtractor):
    """The talk's convolutional network, trained from scratch.

    Architecture: ``len(conv_filters)`` blocks of [convolution ``kernel_size`` x
    ``kernel_size``, ReLU, 2x2 max-pooling], flatten, dense ReLU layers
    (``dense_units``), dropout and a softmax output. Inputs are standardised per
    image (the talk) and training minimises cross-entropy with Adam.

    After ``fit`` it is a scikit-learn classifier (``predict``, ``predict_proba``,
    ``score``) and an extractor: ``transform`` returns the last dense layer's
    activations (the penultimate layer), which the feature cache stores like any
    other extractor's. Its fingerprint includes a hash of the trained weights.

    Parameters
    ----------
    conv_filters : tuple of int, default=(64, 64)
        Filters of each convolutional block.
    kernel_size : int, default=5
        Convolution kernel side.
    dense_units : tuple of int, default=(256, 128)
        Units of the dense layers; the last one's output is the feature vector.
    dropout : float, default=0.5
        Dropout rate before the softmax layer, in [0, 1).
    standardize : {"per_image", "rescale"}, default="per_image"
        ``"per_image"``: each image to zero mean, unit variance (the talk).
        ``"rescale"``: divide by 255.
    epochs : int, default=8
    batch_size : int, default=64
    learning_rate : float, default=1e-3
        Adam's learning rate.
    validation_split : float, default=0.0
        Fraction of the training images held out to monitor ``val_accuracy``.
    early_stopping : bool, default=False
        Stop when ``val_accuracy`` stops improving and restore the best weights
        (needs ``validation_split > 0``).
    patience : int, default=3
    random_state : int or None, default=None
        Seed for weights, shuffling and dropout: equal seeds give equal models.
    verbose : int, default=0
        Keras' progress display: 0 silent, 1 progress bar, 2 one line per epoch.

    Attributes
    ----------
    model_ : keras.Model
        The trained network.
    classes_ : ndarray
        Class labels seen in ``fit``.
    history_ : dict
        Per-epoch loss and metrics.
    image_shape_ : tuple
        ``(height, width, 3)`` of the training images.
    """

    trainable = True

    def __init__(
        self,
        *,
        conv_filters: tuple[int, ...] = (64, 64),
        kernel_size: int = 5,
        dense_units: tuple[int, ...] = (256, 128),
        dropout: float = 0.5,
        standardize: str = "per_image",
        epochs: int = 8,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        validation_split: float = 0.0,
        early_stopping: bool = False,
        patience: int = 3,
        random_state: int | None = None,
        verbose: int = 0,
    ) -> None:
        self.conv_filters = conv_filters
        self.kernel_size = kernel_size
        self.dense_units = dense_units
        self.dropout = dropout
        self.standardize = standardize
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_split = validation_split
        self.early_stopping = early_stopping
        self.patience = patience
        self.random_state = random_state
        self.verbose = verbose

    # ---------------------------------------------------------------- parameters
    def _validate_params(self) -> None:
        super()._validate_params()
        for name in ("conv_filters", "dense_units"):
            value = getattr(self, name)
            if (
                not isinstance(value, list | tuple)
                or not value
                or not all(isinstance(v, int | np.integer) and v > 0 for v in value)
            ):
                raise InvalidInputError(
                    f"`{name}` must be a non-empty tuple of positive integers; "
                    f"received {describe(value)}."
                )
        check_positive_int("kernel_size", self.kernel_size)
        check_positive_int("epochs", self.epochs)
        check_positive_int("patience", self.patience)
        check_choice("standardize", self.standardize, _STANDARDIZE)
        for name, lo, hi in (("dropout", 0.0, 1.0), ("validation_split", 0.0, 1.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v < hi:
                raise InvalidInputError(
                    f"`{name}` must be a number in [{lo}, {hi}); received {describe(v)}."
                )
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
            raise InvalidInputError(
                f"`learning_rate` must be a positive number; received {describe(lr)}."
            )
        if self.early_stopping and not self.validation_split:
            raise InvalidInputError(
                "`early_stopping=True` needs held-out data: set `validation_split` > 0 "
                f"(received validation_split={self.validation_split})."
            )
        if self.random_state is not None and (
            isinstance(self.random_state, bool)
            or not isinstance(self.random_state, int | np.integer)
        ):
            raise InvalidTypeError(
                f"`random_state` must be an integer or None; received "
                f"{describe(self.random_state)}."
            )

    def _feature_config(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "weights": {"trained_hash": self.weights_hash_},
            "architecture": {
                "conv_filters": [int(f) for f in self.conv_filters],
                "kernel_size": int(self.kernel_size),
                "dense_units": [int(u) for u in self.dense_units],
            },
            "layer": "features",
            "pooling": None,
            "input_size": None,
            "image_shape": list(self.image_shape_),
            "preprocessing": self.standardize,
            "dtype": "float32",
        }

    def _min_size_for_input(self) -> int | None:
        return 2 ** len(self.conv_filters)

    def _check_image_size(self, size: tuple[int, int]) -> tuple[int, int]:
        expected = tuple(self.image_shape_[:2])
        if tuple(size) != expected:
            raise InvalidInputError(
                f"`images` must be {expected[0]}x{expected[1]} like the training images; "
                f"received {size[0]}x{size[1]}."
            )
        return expected

    def _model_key(self, image_size: tuple[int, int]) -> Any:
        return None

    # ---------------------------------------------------------------- the model
    def _build_model(self, image_shape: tuple[int, ...], n_classes: int) -> Any:
        keras = import_keras()
        from ._layers import PerImageStandardization

        seed = self.random_state
        inputs = keras.Input(shape=image_shape, name="images")
        if self.standardize == "per_image":
            x = PerImageStandardization(name="standardize")(inputs)
        else:
            x = keras.layers.Rescaling(1.0 / 255, name="standardize")(inputs)
        init = keras.initializers.GlorotUniform
        for i, filters in enumerate(self.conv_filters, start=1):
            x = keras.layers.Conv2D(
                int(filters), int(self.kernel_size), padding="same", activation="relu",
                kernel_initializer=init(seed=None if seed is None else seed + i), name=f"conv{i}",
            )(x)
            x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        last = len(self.dense_units)
        for i, units in enumerate(self.dense_units, start=1):
            x = keras.layers.Dense(
                int(units), activation="relu",
                kernel_initializer=init(seed=None if seed is None else seed + 100 + i),
                name="features" if i == last else f"dense{i}",
            )(x)
        x = keras.layers.Dropout(
            float(self.dropout), seed=None if seed is None else seed + 200, name="dropout"
        )(x)
        outputs = keras.layers.Dense(
            n_classes, activation="softmax",
            kernel_initializer=init(seed=None if seed is None else seed + 300), name="predictions",
        )(x)
        model = keras.Model(inputs, outputs, name="cifar_cnn")
        model.compile(
            optimizer=keras.optimizers.Adam(float(self.learning_rate)),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def fit(self, X: Any, y: Any = None) -> CifarCNN:
        """Train the network from scratch.

        Parameters
        ----------
        X : array-like of shape (n, height, width, 3)
            Training images, uint8 or float in [0, 255].
        y : array-like of shape (n,) or (n, n_classes)
            Integer or string labels, or one-hot rows.

        Returns
        -------
        self
        """
        keras = import_keras()
        self._validate_params()
        images = check_images(X, name="X", min_size=self._min_size_for_input())
        check_image_batch_values(np.asarray(images), name="X")
        classes, targets = encode_labels(y, len(images), name="y")
        if self.random_state is not None:
            keras.utils.set_random_seed(int(self.random_state))
        model = self._build_model(tuple(int(s) for s in images.shape[1:]), len(classes))
        callbacks = []
        if self.early_stopping:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_accuracy", patience=int(self.patience),
                    restore_best_weights=True,
                )
            )
        history = model.fit(
            np.asarray(images, dtype=np.float32), targets,
            batch_size=int(self.batch_size), epochs=int(self.epochs),
            validation_split=float(self.validation_split), callbacks=callbacks,
            shuffle=True, verbose=self.verbose,
        )
        self.model_ = model
        self.classes_ = classes
        self.n_classes_ = len(classes)
        self.image_shape_ = tuple(int(s) for s in images.shape[1:])
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        self.n_iter_ = len(next(iter(self.history_.values()), []))
        self.weights_hash_ = hash_arrays(model.get_weights())
        self.__dict__.pop("_forward_cache", None)
        return self

    def _build_forward(self, image_size: tuple[int, int]) -> Any:
        keras = import_keras()
        trunk = keras.Model(self.model_.input, self.model_.get_layer("features").output)

        def forward(x: Any) -> Any:
            return trunk(keras.ops.cast(x, "float32"), training=False)

        return forward

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), columns ordered as ``classes_``."""
        self._check_fitted()
        images = check_images(X, name="X", min_size=self._min_size_for_input())
        self._check_image_size((int(images.shape[1]), int(images.shape[2])))
        out = np.empty((len(images), self.n_classes_), dtype=np.float32)
        bs = int(self.batch_size)
        for i in range(0, len(images), bs):
            batch = np.asarray(images[i : i + bs])
            check_image_batch_values(batch, name="X", offset=i)
            out[i : i + bs] = np.asarray(self.model_(batch.astype(np.float32), training=False))
        return out

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels, shape (n,)."""
        self._check_fitted()
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save to a ``.keras`` file (Keras' own format, plus transferkit's metadata).

        The file also loads with ``keras.saving.load_model`` (after
        ``import transferkit.extractors._layers``). Written atomically: an existing
        file at ``path`` is replaced only once the new one is complete.
        """
        self._check_fitted()
        path = Path(path)
        if path.suffix != ".keras":
            raise InvalidInputError(
                f"`path` must end in '.keras' (Keras' format); received {str(path)!r}."
            )
        meta = {
            "format": "transferkit.CifarCNN",
            "format_version": 1,
            "transferkit_version": __version__,
            "params": {k: list(v) if isinstance(v, tuple) else v
                       for k, v in self.get_params().items()},
            "classes": self.classes_.tolist(),
            "classes_dtype": self.classes_.dtype.str,
            "history": self.history_,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".keras", dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        try:
            self.model_.save(tmp)
            with zipfile.ZipFile(tmp, "a") as zf:
                zf.writestr(_META_NAME, json.dumps(meta))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CifarCNN:
        """Load a model written by :meth:`save` (Keras safe mode: no arbitrary code)."""
        keras = import_keras()
        from . import _layers  # noqa: F401  (registers the custom layers)

        path = Path(path)
        try:
            with zipfile.ZipFile(path) as zf:
                meta = json.loads(zf.read(_META_NAME))
        except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise InvalidInputError(
                f"`path` {str(path)!r} is not a CifarCNN file written by `CifarCNN.save` "
                f"({type(exc).__name__}: {exc})."
            ) from exc
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["params"].items()}
        valid = set(cls._get_param_names())
        self = cls(**{k: v for k, v in params.items() if k in valid})
        self.model_ = keras.saving.load_model(path, safe_mode=True, compile=True)
        self.classes_ = np.asarray(meta["classes"], dtype=np.dtype(meta["classes_dtype"]))
        self.n_classes_ = len(self.classes_)
        self.image_shape_ = tuple(int(s) for s in self.model_.input_shape[1:])
        self.history_ = meta.get("history", {})
        self.n_iter_ = len(next(iter(self.history_.values()), []))
        self.weights_hash_ = hash_arrays(self.model_.get_weights())
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        model = state.pop("model_", None)
        if model is not None:
            with tempfile.TemporaryDirectory() as d:
                p = os.path.join(d, "m.keras")
                model.save(p)
                state["_model_bytes"] = Path(p).read_bytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        data = state.pop("_model_bytes", None)
        self.__dict__.update(state)
        if data is not None:
            keras = import_keras()
            from . import _layers  # noqa: F401

            with tempfile.TemporaryDirectory() as d:
                p = os.path.join(d, "m.keras")
                Path(p).write_bytes(data)
                self.model_ = keras.saving.load_model(p, safe_mode=True)
