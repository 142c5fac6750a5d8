""":class:`FineTuner`: from a frozen backbone and its cached head to a fine-tuned classifier."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .._hashing import hash_arrays, hash_images
from .._labels import labels_to_indices
from .._lazy import import_keras
from .._signals import sigterm_raises
from .._strategy import (
    check_strategy,
    clone_keeping_strategy,
    even_sample_count,
    fit_model,
    num_replicas,
    strategy_scope,
)
from .._validation import (
    check_bool,
    check_image_batch_values,
    check_images,
    check_positive_int,
    describe,
)
from ..datasets import as_image_source
from ..datasets.sources import labelled_pair, source_labels
from ..exceptions import InvalidInputError, InvalidTypeError, NotFittedError, TransferkitError
from ..extractors import BaseExtractor
from ._checkpoint import default_checkpoint_dir, load_checkpoint, run_key, save_checkpoint
from ._extractor import FineTunedExtractor

__all__ = ["FineTuner"]

_PREDICT_BATCH = 64
#: Augmentations a fine-tune can apply to its training images (before any resizing);
#: the layers are made in ``_model.augmentation_layers``.
AUGMENTATIONS = ("flip", "translate", "zoom", "brightness")


class FineTuner(ClassifierMixin, BaseEstimator):
    """Fine-tune a backbone together with the head fitted on its cached features.

    The second half of the standard transfer-learning recipe: a head trained on
    frozen features (seconds, from a :class:`~transferkit.FeatureCache`) becomes the
    classifier layer of a network made of the backbone and that head (the *warm
    start*), and the top blocks of the backbone are then trained with it on the
    images, at a lower learning rate, with their batch-norm statistics frozen.

    Parameters
    ----------
    extractor : BaseExtractor
        The frozen extractor whose features ``head`` was fitted on, e.g.
        ``EfficientNetLite0Extractor(input_size=224)``; any extractor with a
        :meth:`~transferkit.extractors.BaseExtractor.feature_model` (every built-in
        backbone and a fitted :class:`~transferkit.CifarCNN`). Never modified.
    head : fitted head, or path to a head file
        A fitted :class:`~transferkit.DenseHead`, a :class:`~transferkit.SklearnHead`
        with a linear estimator, or a linear scikit-learn classifier (see
        :func:`transferkit.heads.head_to_keras`). A head file written by
        ``transferkit fit`` also lets the fine-tune check that the head was fitted on
        this extractor's features (its fingerprint). Never modified.
    trainable_blocks : int or "all", default=2
        How many blocks or stages at the top of the backbone train
        (:func:`transferkit.extractors.layer_blocks`); ``0`` trains the head alone,
        ``"all"`` every layer.
    train_batchnorm : bool, default=False
        Train the batch-norm layers of the trained blocks (their scale, offset and
        statistics). By default they stay frozen, in inference mode (normalising with
        their ImageNet statistics), as Keras' transfer-learning guide recommends.
    learning_rate : float, default=0.01
        Peak learning rate of the head (SGD with Nesterov momentum 0.9, one-cycle
        schedule: linear warm-up over the first 15% of the steps, then linear decay).
    backbone_lr_scale : float, default=1.0
        The backbone's learning rate as a fraction of the head's, in (0, 1]. A lower
        rate protects a pretrained backbone from the large gradients of a random head;
        the warm-started head has none, and on CIFAR-10 (Lite0 at 128 px, 5,000 images,
        top 2 blocks) 1.0 gave 74.8% against 70.9% for 0.3 and 69.5% for 0.1.
    weight_decay : float, default=5e-4
        Decoupled weight decay of the head's kernels (the backbone, moving slowly from
        its pretrained weights, is not decayed).
    label_smoothing : float, default=0.1
        In [0, 1).
    augment : tuple of str, default=("flip", "translate")
        Training augmentations, applied to the images before the backbone resizes
        them: any of "flip", "translate" (up to 1/16 of the side, whole pixels),
        "zoom", "brightness".
    epochs : int, default=5
        Epochs to train (with ``max_minutes``: at most this many).
    batch_size : int, default=64
        Images per step *per replica*.
    max_minutes : float or None, default=None
        Time budget for the whole ``fit``, building and tracing included: the epochs
        are planned from timed batches (as :class:`~transferkit.CifarCNN` does) so the
        schedule ends within it.
    validation_split : float, default=0.0
        Fraction of the images held out to monitor ``val_accuracy``, in [0, 1).
    checkpoint_dir : str, path, "auto" or None, default="auto"
        Where each completed epoch is checkpointed, so that a call with the same
        arguments after an interruption (Ctrl-C, SIGTERM, SIGKILL, a crash) resumes
        from the last completed epoch (and warns that it does). ``"auto"``:
        ``$TRANSFERKIT_DATA/checkpoints``. ``None``: no checkpoints. The file is
        deleted when the fine-tune completes.
    activation_cache : FeatureCache, path or None, default=None
        Partial fine-tuning from cached activations: the frozen bottom of the backbone
        (below the trained blocks) runs once per image, into this cache (its
        activations, and with ``"flip"`` in ``augment`` those of the mirrored images),
        and the top blocks and head then train on them, so an epoch costs only the
        top of the network. ``augment`` may then hold ``"flip"`` only, and
        ``trainable_blocks`` must leave a bottom (not ``"all"`` or 0). The activations
        are held in memory (a clear error says when they would not fit). ``None``:
        train on the images.
    random_state : int or None, default=None
        Seeds the augmentation, the shuffling and the validation split. With an int, two
        fits on the same data give the same model on the same machine.
    verbose : int, default=0
        Keras' verbosity during training (0, 1 or 2).
    strategy : tf.distribute.Strategy or None, default=None
        Train on several devices, as for :class:`~transferkit.DenseHead`.

    Attributes
    ----------
    classes_ : ndarray
        The head's classes.
    classifier_ : keras.Model
        float32 images (n, h, w, 3) in [0, 255] -> class probabilities.
    extractor_ : FineTunedExtractor
        The fine-tuned backbone as an extractor: a new fingerprint, so a
        :class:`~transferkit.FeatureCache` stores its features as a new entry.
    blocks_trained_ : list of str
        The backbone blocks that were trained.
    history_ : dict of str to list of float
    n_iter_ : int
        Epochs trained in all (across resumes).
    resumed_from_epoch_ : int
        0, or the epoch a checkpoint let this fit resume after.
    initial_accuracy_ : float or None
        Accuracy of the warm start on the validation data (None without it).

    Examples
    --------
    >>> ext = EfficientNetLite0Extractor(input_size=224)  # doctest: +SKIP
    >>> head = SklearnHead(LogisticRegression(max_iter=2000)).fit(
    ...     cache.extract(ext, x_train), y_train)  # doctest: +SKIP
    >>> ft = FineTuner(extractor=ext, head=head, trainable_blocks=2,
    ...                max_minutes=30).fit(x_train, y_train)  # doctest: +SKIP
    >>> ft.score(x_test, y_test)  # doctest: +SKIP
    >>> ft.export("classifier.keras")  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        extractor: Any = None,
        head: Any = None,
        trainable_blocks: int | str = 2,
        train_batchnorm: bool = False,
        learning_rate: float = 0.01,
        backbone_lr_scale: float = 1.0,
        weight_decay: float = 5e-4,
        label_smoothing: float = 0.1,
        augment: tuple[str, ...] = ("flip", "translate"),
        epochs: int = 5,
        batch_size: int = 64,
        max_minutes: float | None = None,
        validation_split: float = 0.0,
        checkpoint_dir: str | os.PathLike[str] | None = "auto",
        activation_cache: Any = None,
        random_state: int | None = None,
        verbose: int = 0,
        strategy: Any = None,
    ) -> None:
        self.extractor = extractor
        self.head = head
        self.trainable_blocks = trainable_blocks
        self.train_batchnorm = train_batchnorm
        self.learning_rate = learning_rate
        self.backbone_lr_scale = backbone_lr_scale
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.augment = augment
        self.epochs = epochs
        self.batch_size = batch_size
        self.max_minutes = max_minutes
        self.validation_split = validation_split
        self.checkpoint_dir = checkpoint_dir
        self.activation_cache = activation_cache
        self.random_state = random_state
        self.verbose = verbose
        self.strategy = strategy

    # ---------------------------------------------------------------- parameters
    def _validate_params(self) -> None:
        if not isinstance(self.extractor, BaseExtractor):
            raise InvalidTypeError(
                "`extractor` must be a transferkit extractor (e.g. "
                "EfficientNetLite0Extractor(input_size=224)); received "
                f"{describe(self.extractor)}."
            )
        self.extractor.check_params()
        tb = self.trainable_blocks
        if tb != "all" and (isinstance(tb, bool) or not isinstance(tb, int | np.integer)
                            or tb < 0):
            raise InvalidInputError(
                "`trainable_blocks` must be a non-negative integer or 'all'; received "
                f"{describe(tb)}."
            )
        check_bool("train_batchnorm", self.train_batchnorm)
        for name, low, high, low_open in (
            ("learning_rate", 0.0, None, True), ("backbone_lr_scale", 0.0, 1.0, True),
            ("weight_decay", 0.0, None, False), ("label_smoothing", 0.0, 1.0, False),
            ("validation_split", 0.0, 1.0, False),
        ):
            v = getattr(self, name)
            ok = isinstance(v, int | float | np.floating) and not isinstance(v, bool) and (
                (v > low if low_open else v >= low)
                and (high is None or (v <= high if name == "backbone_lr_scale" else v < high)))
            if not ok:
                span = {"learning_rate": "a positive number",
                        "backbone_lr_scale": "a number in (0, 1]",
                        "weight_decay": "a non-negative number"}.get(name, "a number in [0, 1)")
                raise InvalidInputError(f"`{name}` must be {span}; received {describe(v)}.")
        aug = self.augment
        if not isinstance(aug, list | tuple) or any(a not in AUGMENTATIONS for a in aug):
            raise InvalidInputError(
                f"`augment` must be a tuple of names from {list(AUGMENTATIONS)}; received "
                f"{describe(aug)}."
            )
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        mm = self.max_minutes
        if mm is not None and (isinstance(mm, bool) or not isinstance(mm, int | float)
                               or not mm > 0):
            raise InvalidInputError(
                f"`max_minutes` must be a positive number or None; received {describe(mm)}.")
        cd = self.checkpoint_dir
        if cd is not None and cd != "auto" and not isinstance(cd, str | os.PathLike):
            raise InvalidTypeError(
                "`checkpoint_dir` must be a folder path, 'auto' or None; received "
                f"{describe(cd)}.")
        if cd is not None and cd != "auto" and Path(cd).exists() and not Path(cd).is_dir():
            raise InvalidInputError(
                f"`checkpoint_dir` must be a folder; received {str(cd)!r}, which is a file.")
        ac = self.activation_cache
        if ac is not None:
            from ..cache import FeatureCache

            if not isinstance(ac, FeatureCache | str | os.PathLike):
                raise InvalidTypeError(
                    "`activation_cache` must be a FeatureCache, a cache file path or None; "
                    f"received {describe(ac)}.")
            if self.trainable_blocks in ("all", 0):
                raise InvalidInputError(
                    "`activation_cache` needs a frozen bottom to cache: `trainable_blocks` "
                    f"must be a positive number of blocks; received {self.trainable_blocks!r}."
                )
            if any(a != "flip" for a in aug):
                raise InvalidInputError(
                    "`augment` may only hold 'flip' with `activation_cache` (cached "
                    f"activations cannot be shifted or zoomed); received {describe(aug)}.")
        rs = self.random_state
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, int | np.integer)):
            raise InvalidTypeError(
                f"`random_state` must be an integer or None; received {describe(rs)}.")
        check_strategy(self.strategy)

    def check_params(self) -> FineTuner:
        """Check the parameters and the head now, as ``fit`` does first, without training.

        Raises the same errors (naming the parameter) that ``fit`` would before it
        builds anything; useful before a long job, e.g. in the command line.

        Returns
        -------
        self
        """
        self._validate_params()
        self._resolved_head()
        return self

    def _resolved_head(self) -> tuple[Any, dict[str, Any]]:
        """The fitted head object, and the provenance of its file (``{}`` for an object)."""
        from ..heads import load_head, read_head_provenance

        if isinstance(self.head, str | os.PathLike):
            path = Path(self.head)
            if not path.is_file():
                raise InvalidInputError(
                    f"`head` must be a fitted head or the path of a head file; received "
                    f"{str(path)!r}, which does not exist.")
            return load_head(path), read_head_provenance(path)
        if self.head is None or not hasattr(self.head, "classes_"):
            raise InvalidInputError(
                "`head` must be a head fitted on the extractor's features (e.g. "
                "SklearnHead().fit(cache.extract(extractor, x), y)) or the path of a head "
                f"file; received {describe(self.head)}, which is not fitted.")
        return self.head, {}

    # ---------------------------------------------------------------- fitting
    def fit(self, X: Any, y: Any = None, *, validation_data: Any = None) -> FineTuner:
        """Fine-tune on images ``X`` with labels ``y`` (the head's classes).

        Parameters
        ----------
        X : array-like of shape (n, height, width, 3), or an image source
            Training images, uint8 or float in [0, 255]: the size the head's features
            were extracted at (the backbone resizes them inside when its
            ``input_size`` is set). Never modified. Any source
            :func:`~transferkit.datasets.as_image_source` takes (an image folder, a
            ``tf.data.Dataset``, ...) is read into memory once.
        y : array-like of shape (n,) or (n, n_classes), optional
            Labels, each one of the head's ``classes_`` (or one-hot rows in their order).
            Default: the labels ``X`` carries (an image folder's, a dataset's).
        validation_data : (images, labels) or a labelled image source, optional
            Held-out data, monitored each epoch (``val_accuracy``); replaces
            ``validation_split``.

        Returns
        -------
        self
        """
        t_start = time.perf_counter()
        keras = import_keras()
        from ..heads import head_to_keras
        from ._model import build_training_model, unfreeze_top_blocks

        self._validate_params()
        head, provenance = self._resolved_head()
        extractor = self.extractor
        images = check_images(as_image_source(X, name="X"), name="X")
        check_image_batch_values(np.asarray(images[: min(len(images), 256)]), name="X")
        image_size = (int(images.shape[1]), int(images.shape[2]))
        classes = np.asarray(head.classes_)
        if y is None:
            y = source_labels(images, classes)
            if y is None:
                raise InvalidInputError(
                    "`y` is required: `X` carries no labels (pass the labels, or images "
                    "that carry them, such as an image folder).")
        targets = labels_to_indices(y, classes, n_samples=len(images), name="y", per="image")
        saved_fp = (provenance.get("extractor") or {}).get("fingerprint")
        if saved_fp and saved_fp != extractor.fingerprint:
            raise InvalidInputError(
                f"`head` {str(self.head)!r} was fitted on features of another extractor "
                f"(fingerprint {saved_fp[:12]}) than `extractor` "
                f"({extractor.fingerprint[:12]}, {type(extractor).__name__}): fine-tune the "
                "extractor the head was fitted on, or refit the head on this one's features.")
        val = self._validation(validation_data, classes, images, targets)
        x_arr, t_arr, val_arrays = val
        n_classes = len(classes)
        replicas = num_replicas(self.strategy)
        bs = int(self.batch_size) * replicas
        epochs = int(self.epochs)
        seed = None if self.random_state is None else int(self.random_state)

        if seed is not None:
            keras.utils.set_random_seed(seed)
        from ..extractors._training import OneCycle  # the schedule CifarCNN trains with

        with strategy_scope(self.strategy):
            backbone = extractor.feature_model(image_size)
            width = int(backbone.output_shape[-1])
            n_in = int(getattr(head, "n_features_in_", width))
            if n_in != width:
                raise InvalidInputError(
                    f"`head` was fitted on {n_in} features per image, but `extractor` gives "
                    f"{width} for {image_size[0]}x{image_size[1]} images: it was fitted on "
                    "another extractor's features (or images of another size).")
            head_model = head_to_keras(head)
            key = self._run_key(extractor, head_model, classes, x_arr, t_arr, val_arrays)
            ckpt = self._checkpoint_path(key)
            blocks = unfreeze_top_blocks(backbone, self.trainable_blocks,
                                         train_batchnorm=bool(self.train_batchnorm))
            train_model, classifier = build_training_model(
                backbone, head_model, image_shape=(*image_size, 3),
                augment=tuple(self.augment), backbone_lr_scale=float(self.backbone_lr_scale),
                seed=seed,
            )
            top = None
            if self.activation_cache is not None:  # the top blocks train on cached activations
                top, train_model, x_arr, t_arr, val_arrays = self._on_activations(
                    backbone, head_model, blocks, image_size, x_arr, t_arr, val_arrays)
        kept = even_sample_count(len(x_arr), replicas, name="X")
        x_arr, t_arr = x_arr[:kept], t_arr[:kept]
        steps = -(-len(x_arr) // bs)
        with strategy_scope(self.strategy):
            schedule = OneCycle(float(self.learning_rate), steps * epochs, warmup=0.15)
            optimizer = keras.optimizers.SGD(
                schedule, momentum=0.9, nesterov=True,
                weight_decay=float(self.weight_decay) or None)
            if self.weight_decay:
                backbone_vars = {id(v) for v in backbone.weights}
                if top is not None:
                    backbone_vars |= {id(v) for v in top.weights}
                optimizer.exclude_from_weight_decay(
                    var_list=[v for v in train_model.trainable_variables
                              if id(v) in backbone_vars or len(v.shape) < 2])
            train_model.compile(
                optimizer=optimizer,
                loss=keras.losses.CategoricalCrossentropy(
                    label_smoothing=float(self.label_smoothing)),
                metrics=["accuracy"])
        y_arr = keras.utils.to_categorical(t_arr, n_classes)
        val_keras = None
        if val_arrays is not None:
            val_keras = (val_arrays[0], keras.utils.to_categorical(val_arrays[1], n_classes))
        self.initial_accuracy_ = (
            float(np.mean(self._predict_with(train_model if top is not None else classifier,
                                             val_arrays[0]).argmax(1) == val_arrays[1]))
            if val_arrays is not None else None)

        initial_epoch, spent, history = 0, 0.0, {}
        meta = load_checkpoint(ckpt, train_model, optimizer, key) if ckpt else None
        if meta is not None:
            initial_epoch = int(meta["epochs_done"])
            spent = float(meta.get("seconds", 0.0))
            history = meta.get("history", {})
            epochs = int(meta.get("epochs_planned", epochs))
            schedule.total_steps.assign(float(steps * epochs))
            warnings.warn(
                f"FineTuner: resuming from the checkpoint of epoch {initial_epoch} of "
                f"{epochs} ({ckpt}); pass checkpoint_dir=None to start over.",
                UserWarning, stacklevel=2)
        self.resumed_from_epoch_ = initial_epoch

        callbacks: list[Any] = []
        budget = None
        if self.max_minutes is not None:
            from ..extractors._time_budget import TimeBudget

            budget = TimeBudget(
                float(self.max_minutes) * 60.0 - spent, t_start, steps, epochs, schedule,
                verbose=self.verbose, initial_epoch=initial_epoch)
            callbacks.append(budget.callback)
            if initial_epoch == 0:
                callbacks.insert(0, _first_epoch_check(
                    float(self.max_minutes) * 60.0, t_start, steps, float(self.max_minutes)))
        if ckpt is not None:
            callbacks.append(_checkpoint_callback(
                ckpt, key, optimizer, steps, budget, epochs, spent, t_start, history))
        if initial_epoch < epochs:
            if seed is not None:
                keras.utils.set_random_seed(seed + initial_epoch)
            callbacks.insert(0, keras.callbacks.TerminateOnNaN())
            with sigterm_raises():
                fitted = fit_model(
                    train_model, self.strategy, x_arr, y_arr, batch_size=bs, epochs=epochs,
                    initial_epoch=initial_epoch, validation_data=val_keras,
                    callbacks=callbacks, shuffle=True, verbose=self.verbose)
            for k, vals in fitted.history.items():
                history.setdefault(k, []).extend(float(v) for v in vals)
            if not np.all(np.isfinite(history.get("loss", [0.0]))):
                raise TransferkitError(
                    f"FineTuner: training diverged (the loss became NaN or infinite in epoch "
                    f"{len(history['loss'])}) with learning_rate={self.learning_rate} and "
                    f"backbone_lr_scale={self.backbone_lr_scale}: lower `learning_rate` "
                    "(e.g. by 3-10x) or `backbone_lr_scale`, or train fewer blocks. No "
                    "model was kept; earlier epochs' checkpoint, if any, is unchanged.")
        if ckpt is not None and ckpt.exists():
            ckpt.unlink()
        if top is not None:
            from ._model import copy_weights

            copy_weights(top, backbone, strict=False)  # the trained top blocks, back

        self.classes_ = classes
        self.n_classes_ = n_classes
        self.image_size_ = image_size
        self.classifier_ = classifier
        self.backbone_ = backbone
        self.head_model_ = head_model
        self.blocks_trained_ = blocks
        self.history_ = history
        self.n_iter_ = len(next(iter(history.values()), []))
        self.fit_seconds_ = spent + time.perf_counter() - t_start
        self.extractor_ = FineTunedExtractor.from_trained(
            extractor, backbone, image_size=image_size, blocks=blocks,
            batch_size=int(self.batch_size))
        if budget is not None and budget.cut_short:
            warnings.warn(
                f"FineTuner stopped in epoch {self.n_iter_} to finish within "
                f"max_minutes={self.max_minutes}; its schedule did not end.",
                UserWarning, stacklevel=2)
        return self

    def _on_activations(
        self, backbone: Any, head_model: Any, blocks: list[str], image_size: tuple[int, int],
        x: np.ndarray, t: np.ndarray, val: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[Any, Any, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """The top model, its training model and the cached activations to train on."""
        keras = import_keras()
        from ..cache import FeatureCache
        from ..extractors import layer_blocks
        from ._activations import ActivationExtractor, cached_activations
        from ._model import GradientScale, split_at

        first = dict(layer_blocks(backbone))[blocks[0]][0]
        bottom, top = split_at(backbone, first)
        cache = self.activation_cache
        cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
        act = ActivationExtractor.of(self.extractor, bottom, cut_before=first,
                                     image_size=image_size, batch_size=int(self.batch_size))
        views = ("identity", "hflip") if "flip" in self.augment else ("identity",)
        x_act = cached_activations(cache, act, x, views)
        t_act = np.tile(t, len(views))
        val_act = None
        if val is not None:
            val_act = (cached_activations(cache, act, val[0], ("identity",)), val[1])
        inputs = keras.Input(shape=act.shape_, dtype="float32", name="activations")
        feats = GradientScale(float(self.backbone_lr_scale), name="backbone_lr_scale")(
            top(inputs))
        model = keras.Model(inputs, head_model(feats), name="fine_tune_top")
        return top, model, x_act, t_act, val_act

    def _validation(
        self, validation_data: Any, classes: np.ndarray, images: Any, targets: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        x_arr = np.asarray(images)
        if validation_data is not None:
            validation_data = labelled_pair(validation_data, name="validation_data")
            if len(validation_data) != 2:
                raise InvalidInputError(
                    "`validation_data` must be a pair (images, labels); received "
                    f"{describe(validation_data)}.")
            vx = np.asarray(check_images(
                as_image_source(validation_data[0], name="validation_data[0]"),
                name="validation_data[0]"))
            if vx.shape[1:] != x_arr.shape[1:]:
                raise InvalidInputError(
                    f"`validation_data[0]` must hold images of shape {x_arr.shape[1:]} like "
                    f"`X`; received {vx.shape[1:]}.")
            vt = labels_to_indices(validation_data[1], classes, n_samples=len(vx),
                                   name="validation_data[1]", per="image")
            return x_arr, targets, (vx, vt)
        split = float(self.validation_split)
        if not split:
            return x_arr, targets, None
        n_val = max(1, int(round(len(x_arr) * split)))
        order = np.random.default_rng(self.random_state).permutation(len(x_arr))
        return (x_arr[order[n_val:]], targets[order[n_val:]],
                (x_arr[order[:n_val]], targets[order[:n_val]]))

    def _run_key(self, extractor: Any, head_model: Any, classes: np.ndarray, x: np.ndarray,
                 t: np.ndarray, val: tuple[np.ndarray, np.ndarray] | None) -> str:
        params = {k: (list(v) if isinstance(v, tuple) else v)
                  for k, v in self.get_params(deep=False).items()
                  if k not in ("extractor", "head", "verbose", "strategy", "checkpoint_dir",
                               "max_minutes")}
        return run_key({
            "extractor": extractor.fingerprint,
            "head": hash_arrays(head_model.get_weights()),
            "classes": [str(c) for c in classes.tolist()],
            "images": hash_images(x), "labels": hash_arrays([t]),
            "validation": None if val is None else [hash_images(val[0]),
                                                    hash_arrays([val[1]])],
            "replicas": num_replicas(self.strategy),
            "params": {k: (str(v) if not isinstance(v, int | float | str | list | type(None))
                           else v) for k, v in params.items()},
        })

    def _checkpoint_path(self, key: str) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        folder = (default_checkpoint_dir() if self.checkpoint_dir == "auto"
                  else Path(self.checkpoint_dir))
        return folder / f"fine-tune-{key}.npz"

    # ---------------------------------------------------------------- predicting
    def _check_fitted(self, method: str) -> None:
        if not hasattr(self, "classifier_"):
            raise NotFittedError(
                f"This FineTuner is not fitted yet: call `fit` before `{method}`.")

    @staticmethod
    def _predict_with(model: Any, images: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(images), _PREDICT_BATCH):
            batch = np.asarray(images[i:i + _PREDICT_BATCH], dtype=np.float32)
            out.append(np.asarray(model(batch, training=False), dtype=np.float64))
        return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n, height, width, 3)
            Images of the training images' size, uint8 or float in [0, 255].
        """
        self._check_fitted("predict_proba")
        images = np.asarray(check_images(as_image_source(X, name="X"), name="X"))
        if tuple(images.shape[1:3]) != tuple(self.image_size_):
            raise InvalidInputError(
                f"`X` must hold {self.image_size_[0]}x{self.image_size_[1]} images like the "
                f"training images; received {images.shape[1]}x{images.shape[2]}.")
        proba = self._predict_with(self.classifier_, images)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (from ``classes_``) for images ``X``."""
        self._check_fitted("predict")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def export(self, path: str | os.PathLike[str], *, format: str = "keras") -> Path:  # noqa: A002
        """Save backbone + head as one classifier (see :func:`transferkit.export_classifier`)."""
        from ..export import export_classifier

        self._check_fitted("export")
        return export_classifier(self, path, format=format)

    def classifier_model(self) -> Any:
        """The fine-tuned network (float32 images of ``image_size_`` -> probabilities)."""
        self._check_fitted("classifier_model")
        return self.classifier_

    def __sklearn_clone__(self) -> FineTuner:
        return clone_keeping_strategy(self)


def _first_epoch_check(budget_s: float, t_start: float, steps: int, max_minutes: float) -> Any:
    """A Keras callback that stops a fit whose first epoch cannot end within the budget.

    After a few timed batches (the first one, tracing, excluded) it projects the end of
    the first epoch; past the budget it raises before any epoch (or checkpoint) is done.
    """
    keras = import_keras()

    class _FirstEpoch(keras.callbacks.Callback):
        times: list[float] = []
        t0 = 0.0

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            now = time.perf_counter()
            if batch >= 1:
                self.times.append(now - self.t0)
            projected = len(self.times) == min(5, max(1, steps - 2))
            if batch + 1 < steps and (projected or now - t_start >= budget_s):
                per_batch = float(np.median(self.times)) if self.times else now - self.t0
                end = now - t_start + per_batch * (steps - batch - 1)
                if end > budget_s:
                    epoch_min = per_batch * steps / 60.0
                    raise InvalidInputError(
                        f"`max_minutes` ({max_minutes}) is too small for one epoch: on this "
                        f"machine an epoch takes about {epoch_min:.1f} min ({steps} steps of "
                        f"{per_batch:.2f} s), and the first would end at "
                        f"{end / 60.0:.1f} min. Give at least {end / 60.0 * 1.2:.1f} min, or "
                        "train on fewer images or fewer blocks. Nothing was saved.")

    cb = _FirstEpoch()
    cb.times = []
    return cb


def _checkpoint_callback(
    path: Path, key: str, optimizer: Any, steps: int, budget: Any, epochs: int,
    spent: float, t_start: float, history: dict[str, list[float]],
) -> Any:
    """A Keras callback that checkpoints the run at every completed epoch."""
    keras = import_keras()
    history = {k: list(v) for k, v in history.items()}  # the epochs before, then these

    class _Checkpoint(keras.callbacks.Callback):
        batches = 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.batches = 0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.batches += 1

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if self.batches < steps:  # stopped mid-epoch (time budget): not a whole epoch
                return
            if not np.isfinite(float((logs or {}).get("loss", 0.0))):
                return  # diverged: keep the last good epoch's checkpoint
            for k, v in (logs or {}).items():
                history.setdefault(k, []).append(float(v))
            planned = budget.epochs if budget is not None else epochs
            save_checkpoint(path, self.model, optimizer, {
                "key": key, "epochs_done": epoch + 1, "epochs_planned": int(planned),
                "steps_per_epoch": steps,
                "seconds": spent + time.perf_counter() - t_start, "history": history,
            })

    return _Checkpoint()
