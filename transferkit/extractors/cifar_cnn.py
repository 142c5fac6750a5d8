"""The talk's CNN, trained from scratch on CIFAR-10; its trunk then serves as an extractor."""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin

from .. import __version__
from .._hashing import hash_arrays
from .._keras_file import check_keras_path, read_keras_meta, save_keras_with_meta
from .._labels import encode_labels, labels_to_indices
from .._lazy import import_keras
from .._strategy import (
    check_strategy,
    clone_keeping_strategy,
    even_sample_count,
    fit_model,
    num_replicas,
    strategy_scope,
)
from .._validation import (
    check_choice,
    check_image_batch_values,
    check_images,
    check_positive_int,
    describe,
    param_names,
)
from ..datasets import as_image_source
from ..datasets.sources import labelled_pair, source_labels
from ..exceptions import InvalidInputError, InvalidTypeError
from ._base import BaseExtractor
from ._cifar_model import build_cifar_model, cifar_feature_model, compile_cifar_model
from ._registry import register_extractor
from ._time_budget import TimeBudget
from ._training import (
    OneCycle,
    alternating_flip_callback,
    lookahead_callback,
)

# ``encode_labels`` (transferkit._labels: the label rules of every estimator) stays
# importable from here, where it was defined until the heads shared it.
__all__ = ["CifarCNN", "OneCycle", "PRESETS", "encode_labels"]



#: Training recipes. ``None`` parameters of :class:`CifarCNN` take their preset's value.
PRESETS: dict[str, dict[str, Any]] = {
    # The talk: 2 x [conv 5x5, 64, ReLU, max-pool], dense 256, dense 128, dropout, Adam,
    # batch 64, per-image standardisation. About 70% on CIFAR-10 in 8 epochs.
    "talk": {
        "architecture": "talk", "conv_filters": (64, 64), "kernel_size": 5,
        "dense_units": (256, 128), "dropout": 0.5, "standardize": "per_image",
        "augment": (), "epochs": 8, "batch_size": 64, "optimizer": "adam",
        "learning_rate": 1e-3, "weight_decay": 0.0, "label_smoothing": 0.0,
        "schedule": "constant", "tta": False, "lookahead": False,
    },
    # A fast modern recipe for CPUs, after the fastest published CIFAR-10 recipes
    # (airbench, hlb-cifar10): a frozen 2x2 patch-whitening stem computed from the
    # training images, three VGG-style blocks (64/256/256) of identity-initialised
    # convolutions with batch norm and GELU, global max pooling, scaled logits, label
    # smoothing, Nesterov SGD with strong weight decay on a one-cycle schedule,
    # alternating flip + 2-pixel translate augmentation and flip + shift test-time
    # augmentation.
    "fast": {
        "architecture": "fast", "conv_filters": (64, 256, 256), "kernel_size": 3,
        "dense_units": (), "dropout": 0.0, "standardize": "dataset",
        "augment": ("alternating_flip", "translate"), "epochs": 10, "batch_size": 500,
        "optimizer": "sgd", "learning_rate": 0.8, "weight_decay": 1e-2,
        "label_smoothing": 0.2, "schedule": "one_cycle", "tta": True, "lookahead": True,
    },
}
_AUGMENTATIONS = ("flip", "alternating_flip", "zoom", "brightness", "translate")
#: Under a time budget, the fast preset halves its widths if fewer epochs fit.
_MAX_BUDGET_EPOCHS = 100  # with a time budget and no explicit `epochs`
_MIN_EPOCHS_FULL_WIDTH = 6
_OPTIMIZERS = ("adam", "sgd")
_SCHEDULES = ("constant", "one_cycle")
_STANDARDIZE = ("per_image", "dataset", "rescale")


@register_extractor("cifar_cnn")
class CifarCNN(ClassifierMixin, BaseExtractor):
    """A CNN trained from scratch on small images (CIFAR-10); its trunk is then an extractor.

    Two presets: ``"talk"`` reproduces the talk's network (2 x [conv 5x5, ReLU, 2x2
    max-pool], dense 256 and 128, dropout, softmax; per-image standardisation; Adam;
    about 70% on CIFAR-10), and ``"fast"`` is a modern recipe for CPUs after the fastest
    published CIFAR-10 recipes (a frozen 2x2 patch-whitening stem computed in ``fit``,
    then blocks of identity-initialised convolutions of widths 64/256/256 with batch
    norm and GELU, global max pooling, label smoothing, Nesterov SGD with weight decay
    on a one-cycle schedule, alternating flip and 2-pixel translate augmentation, flip
    and shift test-time augmentation). Every architecture and
    training parameter left at ``None`` takes its preset's value; set one to override.

    After ``fit`` it is a scikit-learn classifier (``predict``, ``predict_proba``,
    ``score``) and an extractor: ``transform`` returns the penultimate layer's
    activations (layer ``"features"``), which the feature cache stores like any other
    extractor's. Its fingerprint includes a hash of the trained weights.

    Parameters
    ----------
    preset : {"talk", "fast"}, default="talk"
    conv_filters : tuple of int, optional
        Filters of each convolutional block.
    kernel_size : int, optional
    dense_units : tuple of int, optional
        Dense layers after the convolutions (``"talk"``); the last one's output is the
        feature vector. ``"fast"`` uses the globally max-pooled last block instead.
    dropout : float, optional
        Dropout before the output layer, in [0, 1).
    standardize : {"per_image", "dataset", "rescale"}, optional
        ``"per_image"``: each image to zero mean, unit variance (the talk);
        ``"dataset"``: per-channel mean and standard deviation computed in ``fit`` and
        stored in the model; ``"rescale"``: divide by 255.
    augment : tuple of {"flip", "alternating_flip", "zoom", "brightness", "translate"}, optional
        Keras preprocessing layers applied in training only (the talk's three are
        flip, zoom and brightness). ``"flip"`` mirrors each image on a coin flip;
        ``"alternating_flip"`` mirrors a random half of the training images once, then
        all of them in every other epoch, so each image is seen mirrored in alternate
        epochs (the ``"fast"`` preset's choice); ``"translate"`` shifts by up to 2
        pixels with reflect padding.
    epochs : int, optional
        Passes over the training images. With ``max_minutes`` and ``epochs`` left
        unset, as many as fit in the budget (at most 100); with both set, at most
        ``epochs``.
    batch_size : int, optional
        Images per step *per replica*: with a ``strategy`` of ``k`` replicas, each
        optimizer step processes a global batch of ``k * batch_size`` images, and an
        epoch has ``ceil(n / (k * batch_size))`` steps (which the one-cycle schedule
        and ``max_minutes`` count). So that every global batch, the last one
        included, splits evenly over the replicas, the last ``n % k`` training images
        (fewer than ``k``) are left out, and likewise for the validation images.
        Without a strategy, the batch size.
    optimizer : {"adam", "sgd"}, optional
        ``"sgd"`` is Nesterov SGD with momentum 0.85.
    learning_rate : float, optional
        Constant rate, or the peak of the one-cycle schedule.
    weight_decay : float, optional
        Decoupled weight decay on kernels (not on batch-norm parameters or biases).
    label_smoothing : float, optional
    schedule : {"constant", "one_cycle"}, optional
        ``"one_cycle"``: linear warm-up over the first 20% of steps, then linear decay
        to zero at the last step.
    tta : bool, optional
        Test-time augmentation: average predictions over the image and its mirror
        image; if trained with ``"translate"``, half the weight goes to the image
        shifted one pixel up-left and down-right (reflect padding), each with its
        mirror image, as in the fastest published CIFAR-10 recipes.
    lookahead : bool, optional
        Lookahead weight averaging (as hlb-cifar10 and airbench do): from the fourth
        epoch on, every 5 steps the weights (and batch-norm statistics) are replaced by
        an exponential moving average of themselves, whose decay grows towards the end
        of training; the final weights are that average.
    max_minutes : float, optional
        Time budget for the whole of ``fit``, importing TensorFlow, building and
        tracing the model included. The first batches are timed, then the number of
        epochs (and the schedule's length) is chosen so training ends well within the
        budget (95% of it is planned); tracing, a one-off cost that is large on a slow
        CPU, is counted once, not in every epoch. The plan is re-made after every epoch
        from the mean epoch time (or the last epoch's, if slower): longer if the machine
        sped up, shorter if it slowed down, at most ``epochs``. Only if the machine
        slows down sharply within an epoch does training stop mid-schedule, with a
        warning, when the next batch would end past the budget. With the
        ``"fast"`` preset's own widths (``conv_filters`` not set), if fewer than 6
        epochs of the network fit, it switches to half the widths (more epochs of a
        narrower network are more accurate); ``conv_filters_`` tells which ran. The
        number of epochs, and so the result, depends on the machine's speed.
    validation_split : float, default=0.0
        Fraction of the training images held out (ignored when ``fit`` gets
        ``validation_data``).
    early_stopping : bool, default=False
        Stop when ``val_accuracy`` stops improving and restore the best weights.
    patience : int, default=3
    random_state : int or None, default=None
        Seed for weights, shuffling, augmentation and dropout.
    verbose : int, default=0
        Keras' progress display: 0 silent, 1 progress bar, 2 one line per epoch.
    strategy : tf.distribute.Strategy or None, default=None
        Train on several devices: e.g. ``tf.distribute.MirroredStrategy()`` (the GPUs
        of one machine) or ``tf.distribute.MultiWorkerMirroredStrategy()`` (several
        machines; run the same ``fit``, with the same ``random_state``, on every
        worker; Keras 3.15 cannot yet fit across workers, keras-team/keras#20585).
        The model is built and compiled in ``strategy.scope()`` and gradients
        are averaged over the replicas. ``batch_size`` is per replica and the learning
        rate is *not* rescaled with the global batch; batch normalisation (``"fast"``)
        normalises over each replica's ``batch_size`` images. None (the default)
        trains on the default device. Prediction and feature extraction run on the
        default device either way. The strategy is not pickled or saved (an
        unpickled or loaded model has ``strategy=None``); ``sklearn.base.clone`` keeps
        the same object.

    Attributes
    ----------
    model_ : keras.Model
    classes_ : ndarray
    history_ : dict
        Per-epoch loss and metrics (and ``lr``).
    n_iter_ : int
        Epochs run.
    conv_filters_ : tuple of int
        Widths of the convolutional blocks that were trained (see ``max_minutes``).
    image_shape_ : tuple
    global_batch_size_ : int
        Images per optimizer step: ``batch_size`` times the number of replicas.
    steps_per_epoch_ : int
        Optimizer steps per epoch, ``ceil(n_train / global_batch_size_)``, where
        ``n_train`` counts the training images (after ``validation_split`` and, with
        a strategy, rounded down to a multiple of the number of replicas).
    fit_seconds_ : float
        Wall time of ``fit``.
    """

    trainable = True

    def __init__(
        self,
        *,
        preset: str = "talk",
        conv_filters: tuple[int, ...] | None = None,
        kernel_size: int | None = None,
        dense_units: tuple[int, ...] | None = None,
        dropout: float | None = None,
        standardize: str | None = None,
        augment: tuple[str, ...] | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        optimizer: str | None = None,
        learning_rate: float | None = None,
        weight_decay: float | None = None,
        label_smoothing: float | None = None,
        schedule: str | None = None,
        tta: bool | None = None,
        lookahead: bool | None = None,
        max_minutes: float | None = None,
        validation_split: float = 0.0,
        early_stopping: bool = False,
        patience: int = 3,
        random_state: int | None = None,
        verbose: int = 0,
        strategy: Any = None,
    ) -> None:
        self.preset = preset
        self.conv_filters = conv_filters
        self.kernel_size = kernel_size
        self.dense_units = dense_units
        self.dropout = dropout
        self.standardize = standardize
        self.augment = augment
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.schedule = schedule
        self.tta = tta
        self.lookahead = lookahead
        self.max_minutes = max_minutes
        self.validation_split = validation_split
        self.early_stopping = early_stopping
        self.patience = patience
        self.random_state = random_state
        self.verbose = verbose
        self.strategy = strategy

    # ---------------------------------------------------------------- parameters
    def resolved_params(self) -> dict[str, Any]:
        """The effective architecture and training settings: the preset's, overridden."""
        check_choice("preset", self.preset, PRESETS)
        out = dict(PRESETS[self.preset])
        for key in out:
            value = getattr(self, key, None)
            if value is not None:
                out[key] = value
        return out

    def _validate_params(self, *, has_validation_data: bool = False) -> None:
        r = self.resolved_params()
        for name in ("conv_filters", "dense_units"):
            value = r[name]
            if (
                not isinstance(value, list | tuple)
                or (name == "conv_filters" and not value)
                or (name == "dense_units" and r["architecture"] == "talk" and not value)
                or not all(isinstance(v, int | np.integer) and v > 0 for v in value)
            ):
                raise InvalidInputError(
                    f"`{name}` must be a non-empty tuple of positive integers; "
                    f"received {describe(value)}."
                )
        for name in ("kernel_size", "epochs", "batch_size", "patience"):
            check_positive_int(name, r.get(name, getattr(self, name)))
        check_choice("standardize", r["standardize"], _STANDARDIZE)
        check_choice("optimizer", r["optimizer"], _OPTIMIZERS)
        check_choice("schedule", r["schedule"], _SCHEDULES)
        aug = r["augment"]
        if not isinstance(aug, list | tuple) or any(a not in _AUGMENTATIONS for a in aug):
            raise InvalidInputError(
                f"`augment` must be a tuple of names from {list(_AUGMENTATIONS)}; received "
                f"{describe(aug)}."
            )
        ranges = (("dropout", r["dropout"], 1.0), ("validation_split", self.validation_split,
                  1.0), ("label_smoothing", r["label_smoothing"], 1.0))
        for name, v, hi in ranges:
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v < hi:
                raise InvalidInputError(
                    f"`{name}` must be a number in [0, {hi}); received {describe(v)}."
                )
        for name, v, positive in (("learning_rate", r["learning_rate"], True),
                                  ("weight_decay", r["weight_decay"], False),
                                  ("max_minutes", self.max_minutes, True)):
            if name == "max_minutes" and v is None:
                continue
            ok = isinstance(v, int | float) and not isinstance(v, bool) and (
                v > 0 if positive else v >= 0)
            if not ok:
                raise InvalidInputError(
                    f"`{name}` must be a {'positive' if positive else 'non-negative'} number; "
                    f"received {describe(v)}."
                )
        for name in ("tta", "lookahead"):
            if not isinstance(r[name], bool | np.bool_):
                raise InvalidTypeError(
                    f"`{name}` must be True or False; received {describe(r[name])}.")
        if self.early_stopping and not self.validation_split and not has_validation_data:
            raise InvalidInputError(
                "`early_stopping=True` needs held-out data: set `validation_split` > 0 or pass "
                f"`validation_data` to fit (received validation_split={self.validation_split})."
            )
        if self.random_state is not None and (
            isinstance(self.random_state, bool)
            or not isinstance(self.random_state, int | np.integer)
        ):
            raise InvalidTypeError(
                f"`random_state` must be an integer or None; received "
                f"{describe(self.random_state)}."
            )
        check_strategy(self.strategy)

    def _feature_config(self) -> dict[str, Any]:
        self._check_fitted()
        r = self.resolved_params()
        return {
            "weights": {"trained_hash": self.weights_hash_},
            "architecture": {
                "preset": self.preset,
                "kind": r["architecture"],
                "conv_filters": [int(f) for f in self.conv_filters_],
                "kernel_size": int(r["kernel_size"]),
                "dense_units": [int(u) for u in r["dense_units"]],
            },
            "layer": "features",
            "pooling": "max" if r["architecture"] == "fast" else None,
            "input_size": None,
            "image_shape": list(self.image_shape_),
            "preprocessing": r["standardize"],
            "dtype": "float32",
        }

    def _min_size_for_input(self) -> int | None:
        r = self.resolved_params()
        # Each block halves the side; the fast stem's 2x2 whitening takes one pixel off.
        return 2 ** len(r["conv_filters"]) + (1 if r["architecture"] == "fast" else 0)

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

    def _effective_batch_size(self) -> int:
        return int(self.resolved_params()["batch_size"])

    # ---------------------------------------------------------------- the model
    def _build_model(
        self, image_shape: tuple[int, ...], n_classes: int, images: np.ndarray,
        *, conv_filters: tuple[int, ...] | None = None,
    ) -> Any:
        model, stats = build_cifar_model(
            self.resolved_params(), image_shape, n_classes, images, seed=self.random_state,
            name=f"cifar_cnn_{self.preset}", conv_filters=conv_filters,
        )
        if stats is not None:
            self.mean_, self.std_ = stats
        return model

    def _compile(self, model: Any, steps_total: int) -> Any:
        return compile_cifar_model(model, self.resolved_params(), steps_total)

    def fit(self, X: Any, y: Any = None, *, validation_data: Any = None) -> CifarCNN:
        """Train the network from scratch.

        Parameters
        ----------
        X : array-like of shape (n, height, width, 3), or an image source
            Training images, uint8 or float in [0, 255]; any source
            :func:`~transferkit.datasets.as_image_source` takes (an image folder, a
            ``tf.data.Dataset``, ...) is read into memory once.
        y : array-like of shape (n,) or (n, n_classes), optional
            Integer or string labels, or one-hot rows. Default: the labels ``X``
            carries (as class names when it has them).
        validation_data : (images, labels) or a labelled image source, optional
            Held-out data to monitor (and, with ``early_stopping``, to keep the best
            epoch's weights); replaces ``validation_split``.

        Returns
        -------
        self
        """
        t_start = time.perf_counter()  # the budget counts importing and building too
        keras = import_keras()
        self._validate_params(has_validation_data=validation_data is not None)
        r = self.resolved_params()
        source = check_images(as_image_source(X, name="X"), name="X",
                              min_size=self._min_size_for_input())
        images = np.asarray(source)  # trained on in memory (a source is read once)
        check_image_batch_values(images, name="X")
        if y is None:
            y = source_labels(source)
        classes, targets = encode_labels(y, len(images), name="y", per="image",
                                         owner=type(self).__name__)
        n_classes = len(classes)
        val = None
        if validation_data is not None:
            validation_data = labelled_pair(validation_data, name="validation_data")
            if len(validation_data) != 2:
                raise InvalidInputError(
                    "`validation_data` must be a pair (images, labels); received "
                    f"{describe(validation_data)}."
                )
            vx = check_images(as_image_source(validation_data[0], name="validation_data[0]"),
                              name="validation_data[0]")
            v_targets = labels_to_indices(validation_data[1], classes, n_samples=len(vx),
                                          name="validation_data[1]", per="image")
            val = (np.asarray(vx), keras.utils.to_categorical(v_targets, n_classes))
        if self.random_state is not None:
            keras.utils.set_random_seed(int(self.random_state))
        x_arr = np.asarray(images)
        y_arr = keras.utils.to_categorical(targets, n_classes)
        split = 0.0 if val is not None else float(self.validation_split)
        if split:
            n_val = max(1, int(round(len(x_arr) * split)))
            order = np.random.default_rng(self.random_state).permutation(len(x_arr))
            val = (x_arr[order[:n_val]], y_arr[order[:n_val]])
            x_arr, y_arr = x_arr[order[n_val:]], y_arr[order[n_val:]]
        strategy = self.strategy
        replicas = num_replicas(strategy)
        bs = int(r["batch_size"]) * replicas  # the global batch
        # Every global batch must split evenly over the replicas (see even_sample_count).
        kept = even_sample_count(len(x_arr), replicas, name="X")
        x_arr, y_arr = x_arr[:kept], y_arr[:kept]
        if val is not None:
            where = "validation_data" if validation_data is not None else "validation_split"
            kept = even_sample_count(len(val[0]), replicas, name=where)
            val = (val[0][:kept], val[1][:kept])
        if "alternating_flip" in r["augment"]:
            # Each image starts on a random side; AlternatingFlip mirrors them all in
            # every other epoch. A copy: the caller's array is never changed.
            mirror = np.random.default_rng(self.random_state).random(len(x_arr)) < 0.5
            x_arr = x_arr.copy()
            x_arr[mirror] = x_arr[mirror][:, :, ::-1]
        steps = -(-len(x_arr) // bs)
        epochs = int(r["epochs"])
        if self.max_minutes is not None and self.epochs is None:
            epochs = _MAX_BUDGET_EPOCHS  # as many as fit: the budget decides, not the preset
        # The widths to try. Under a time budget, the fast preset's own widths are halved
        # when too few epochs of the full network fit: a narrower network trained for
        # more epochs is more accurate than a wide one stopped early.
        candidates = [tuple(int(f) for f in r["conv_filters"])]
        if (self.max_minutes is not None and self.conv_filters is None
                and r["architecture"] == "fast"):
            candidates.append(tuple(max(1, f // 2) for f in candidates[0]))
        for attempt, widths in enumerate(candidates):
            if self.random_state is not None:
                keras.utils.set_random_seed(int(self.random_state))
            with strategy_scope(strategy):  # variables, optimizer and metrics on every replica
                model = self._build_model(
                    tuple(int(v) for v in images.shape[1:]), n_classes, x_arr,
                    conv_filters=widths,
                )
                schedule = self._compile(model, steps * epochs)
            callbacks: list[Any] = []
            budget = None
            if self.max_minutes is not None:
                last = attempt == len(candidates) - 1
                budget = TimeBudget(
                    float(self.max_minutes) * 60.0, t_start, steps, epochs, schedule,
                    min_epochs=None if last else _MIN_EPOCHS_FULL_WIDTH, verbose=self.verbose,
                )
                callbacks.append(budget.callback)
            if "alternating_flip" in r["augment"]:
                callbacks.append(alternating_flip_callback(model.get_layer("alternating_flip")))
            if r["lookahead"]:
                def total_steps(schedule: Any = schedule, fixed: int = steps * epochs) -> float:
                    # the time budget may re-plan the schedule's length
                    if schedule is None:
                        return float(fixed)
                    return float(schedule.total_steps.numpy())

                callbacks.append(lookahead_callback(steps, total_steps))
            if self.early_stopping:
                callbacks.append(keras.callbacks.EarlyStopping(
                    monitor="val_accuracy", patience=int(self.patience),
                    restore_best_weights=True,
                ))
            history = fit_model(
                model, strategy, x_arr, y_arr, batch_size=bs, epochs=epochs,
                validation_data=val, callbacks=callbacks, shuffle=True, verbose=self.verbose,
            )
            if budget is None or not budget.too_slow:
                break
        self.conv_filters_ = widths
        self.model_ = model
        self.classes_ = classes
        self.n_classes_ = n_classes
        self.image_shape_ = tuple(int(v) for v in images.shape[1:])
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        self.n_iter_ = len(next(iter(self.history_.values()), []))
        self.global_batch_size_ = bs
        self.steps_per_epoch_ = steps
        self.epochs_planned_ = budget.epochs if budget is not None else epochs
        self.schedule_steps_ = (
            int(float(schedule.total_steps.numpy())) if schedule is not None else None
        )
        self.weights_hash_ = hash_arrays(model.get_weights())
        self.fit_seconds_ = time.perf_counter() - t_start
        self.__dict__.pop("_forward_cache", None)
        if budget is not None and budget.cut_short:
            warnings.warn(
                f"CifarCNN stopped training in epoch {self.n_iter_} of {budget.epochs}, before "
                f"its schedule ended, to finish within max_minutes={self.max_minutes}: the "
                "machine ran slower than its earlier batches promised (other jobs, or the "
                "one-off build took most of the budget). Give it more time, or expect "
                "lower accuracy than a completed schedule gives.",
                UserWarning, stacklevel=2,
            )
        return self

    def _build_forward(self, image_size: tuple[int, int]) -> Any:
        keras = import_keras()
        trunk = keras.Model(self.model_.input, self.model_.get_layer("features").output)

        def forward(x: Any) -> Any:
            return trunk(keras.ops.cast(x, "float32"), training=False)

        forward.model = trunk  # type: ignore[attr-defined]  (read by estimate())
        return forward

    def feature_model(self, image_size: tuple[int, int] | None = None) -> Any:
        """A new trainable Keras model of the trained trunk, equal to :meth:`transform`.

        See :meth:`BaseExtractor.feature_model`: from the input ``"images"`` (of the
        training images' size, the only ``image_size`` accepted) through ``"standardize"``
        to ``"features"``, without the augmentation layers; new layers, copied weights.
        """
        self._check_fitted()
        expected = tuple(int(v) for v in self.image_shape_[:2])
        size = expected if image_size is None else image_size
        if isinstance(size, list | tuple) and tuple(size) != expected:
            raise InvalidInputError(f"`image_size` must be {expected}, the training images' "
                                    f"height and width; received {tuple(size)}.")
        size = self._feature_model_size(size)
        return cifar_feature_model(self.model_, (*size, int(self.image_shape_[2])))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), columns ordered as ``classes_``.

        With ``tta``, the average over each image and its mirror image.
        """
        self._check_fitted()
        images = check_images(as_image_source(X, name="X"), name="X",
                              min_size=self._min_size_for_input())
        self._check_image_size((int(images.shape[1]), int(images.shape[2])))
        tta = bool(self.resolved_params()["tta"])
        shifts = "translate" in self.resolved_params()["augment"]
        out = np.empty((len(images), self.n_classes_), dtype=np.float32)
        bs = int(self.resolved_params()["batch_size"])
        for i in range(0, len(images), bs):
            batch = np.asarray(images[i : i + bs])
            check_image_batch_values(batch, name="X", offset=i)
            batch = batch.astype(np.float32)
            p = np.asarray(self.model_(batch, training=False))
            if tta:
                p = (p + np.asarray(self.model_(batch[:, :, ::-1], training=False))) / 2
                if shifts:  # trained with translations: add 1-pixel shifted views
                    p = 0.5 * p + 0.5 * self._shifted_views_proba(batch)
            out[i : i + bs] = p
        return out

    def _shifted_views_proba(self, batch: np.ndarray) -> np.ndarray:
        """Mean probabilities over the batch shifted one pixel up-left and down-right
        (reflect padding), each with its mirror image."""
        padded = np.pad(batch, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        h, w = batch.shape[1:3]
        views = [padded[:, :h, :w], padded[:, 2:, 2:]]
        views += [v[:, :, ::-1] for v in views]
        return np.mean([np.asarray(self.model_(v, training=False)) for v in views], axis=0)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels, shape (n,)."""
        self._check_fitted()
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save to a ``.keras`` file (Keras' own format, plus transferkit's metadata).

        The file also loads with ``keras.saving.load_model`` (after
        ``import transferkit.extractors._layers``). Written atomically: an existing
        file at ``path`` is replaced only once the new one is complete. ``strategy`` is
        not saved: :meth:`load` returns a model with ``strategy=None``.
        """
        self._check_fitted()
        path = check_keras_path(path)
        meta = {
            "format": "transferkit.CifarCNN",
            "format_version": 1,
            "transferkit_version": __version__,
            "params": {k: list(v) if isinstance(v, tuple) else v
                       for k, v in self.get_params().items()
                       if k != "strategy"},  # a device setup, not the model: loads as None
            "classes": self.classes_.tolist(),
            "classes_dtype": self.classes_.dtype.str,
            "history": self.history_,
            "conv_filters_": [int(f) for f in self.conv_filters_],
        }
        return save_keras_with_meta(self.model_, path, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CifarCNN:
        """Load a model written by :meth:`save` (Keras safe mode: no arbitrary code)."""
        keras = import_keras()
        from . import _layers  # noqa: F401  (registers the custom layers)

        path = Path(path)
        meta = read_keras_meta(path, "transferkit.CifarCNN", "CifarCNN", "`CifarCNN.save`")
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["params"].items()}
        valid = set(param_names(cls))
        self = cls(**{k: v for k, v in params.items() if k in valid})
        self.model_ = keras.saving.load_model(path, safe_mode=True, compile=False)
        self.classes_ = np.asarray(meta["classes"], dtype=np.dtype(meta["classes_dtype"]))
        self.n_classes_ = len(self.classes_)
        self.image_shape_ = tuple(int(s) for s in self.model_.input_shape[1:])
        self.history_ = meta.get("history", {})
        self.n_iter_ = len(next(iter(self.history_.values()), []))
        self.weights_hash_ = hash_arrays(self.model_.get_weights())
        self.conv_filters_ = tuple(
            int(f) for f in meta.get("conv_filters_", self.resolved_params()["conv_filters"]))
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if state.get("strategy") is not None:
            state["strategy"] = None  # devices and cluster connections do not pickle
        model = state.pop("model_", None)
        if model is not None:
            with tempfile.TemporaryDirectory() as d:
                p = os.path.join(d, "m.keras")
                model.save(p)
                state["_model_bytes"] = Path(p).read_bytes()
        return state

    def __sklearn_clone__(self) -> CifarCNN:
        return clone_keeping_strategy(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        data = state.pop("_model_bytes", None)
        self.__dict__.update(state)
        if data is not None:
            keras = import_keras()
            from . import _layers  # noqa: F401

            with tempfile.TemporaryDirectory() as d:
                p = os.path.join(d, "m.keras")
                Path(p).write_bytes(data)
                self.model_ = keras.saving.load_model(p, safe_mode=True, compile=False)
