"""The extractor contract: images in, float32 feature vectors out.

Every extractor is a scikit-learn transformer (``fit``/``transform``), knows the
width of its output, and has a :attr:`~BaseExtractor.fingerprint`: a stable hash of
everything that changes its features. The feature cache keys entries by it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from .. import FEATURE_VERSION
from .._cost import CostEstimate, count_macs, feature_cache_bytes
from .._hashing import hash_json
from .._lazy import import_tf
from .._pipeline import prefetch
from .._validation import (
    check_image_batch_values,
    check_images,
    check_positive_int,
    describe,
)
from ..datasets import as_image_source
from ..exceptions import InvalidInputError, InvalidTypeError

__all__ = ["BaseExtractor", "CostEstimate", "PREFETCH_DEPTH", "iter_image_batches"]

#: Prepared input batches waiting for the backbone (besides the one being read).
PREFETCH_DEPTH = 1


def iter_image_batches(
    images: Any, batch_size: int, *, start: int = 0
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(offset, batch)`` pairs over ``images[start:]``.

    Works on NumPy arrays, lazy arrays such as ``h5py`` datasets, and objects that
    stream their own batches through ``iter_batches(batch_size, start=...)`` (such
    as :class:`transferkit.datasets.ImageFolderDataset` or
    :class:`transferkit.cache.ImageStream`). Only one batch is in memory at a time.
    Streamed batches are checked: each must hold ``batch_size`` images (the last one
    the rest) of the declared image shape, so batch boundaries, and with them resumed
    extractions, stay exact.
    """
    own = getattr(images, "iter_batches", None)
    if callable(own):
        n = int(images.shape[0])
        item = tuple(int(s) for s in images.shape[1:])
        offset = start
        for batch in own(batch_size, start=start):
            batch = np.asarray(batch)
            want = min(batch_size, n - offset)
            if batch.shape != (want, *item):
                raise InvalidInputError(
                    f"`images.iter_batches` yielded a batch of shape {batch.shape} at image "
                    f"{offset}; expected {(want, *item)} (batch_size={batch_size}, "
                    f"n={n})."
                )
            yield offset, batch
            offset += len(batch)
        if offset != n:
            raise InvalidInputError(
                f"`images.iter_batches` stopped after {offset} of {n} images; a streamed "
                "collection must yield every image its `shape` declares."
            )
        return
    n = len(images)
    for i in range(start, n, batch_size):
        yield i, np.asarray(images[i : i + batch_size])


def _prepared_batches(
    images: Any, batch_size: int, start: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Batches read, checked and cast for the backbone (runs on the reader thread)."""
    for offset, batch in iter_image_batches(images, batch_size, start=start):
        check_image_batch_values(batch, name="images", offset=offset)
        if batch.dtype != np.uint8 and batch.dtype != np.float32:
            batch = batch.astype(np.float32)  # a copy: the caller's array is untouched
        yield offset, np.ascontiguousarray(batch)


class _CompiledForward:
    """A forward function compiled with ``tf.function``, one trace per input kind.

    Each (input dtype, height, width) gets a fixed input signature with an unknown
    batch dimension, ``(None, height, width, 3)``: every batch of an extraction,
    the last partial one included, reuses one trace. uint8 batches stay uint8 up to
    the graph (a quarter of float32's bytes); other dtypes are cast to float32.
    """

    def __init__(self, raw: Any) -> None:
        self.python_function = raw
        self._traced: dict[tuple[str, int, int], Any] = {}
        self._lock = threading.Lock()

    def __call__(self, x: Any) -> Any:
        tf = import_tf()
        if tf.is_tensor(x):
            if x.dtype not in (tf.uint8, tf.float32):
                x = tf.cast(x, tf.float32)
            kind = "uint8" if x.dtype == tf.uint8 else "float32"
        else:
            x = np.asarray(x)
            if x.dtype != np.uint8 and x.dtype != np.float32:
                x = x.astype(np.float32)
            kind = "uint8" if x.dtype == np.uint8 else "float32"
        key = (kind, int(x.shape[1]), int(x.shape[2]))
        fn = self._traced.get(key)
        if fn is None:
            with self._lock:
                fn = self._traced.get(key)
                if fn is None:
                    spec = tf.TensorSpec((None, key[1], key[2], 3), getattr(tf, kind))
                    # No autograph: forward functions are straight-line model calls, and
                    # converting closures warns ("closure mismatch") for nothing.
                    fn = tf.function(
                        self.python_function, input_signature=[spec], autograph=False)
                    self._traced[key] = fn
        return fn(x)

    def __getattr__(self, name: str) -> Any:
        if name == "python_function":  # pragma: no cover - only before __init__ ran
            raise AttributeError(name)
        return getattr(self.python_function, name)


class BaseExtractor(TransformerMixin, BaseEstimator):
    """Base class of transferkit's feature extractors.

    Subclasses implement :meth:`_feature_config` (a JSON-able description of
    everything that changes the features) and :meth:`_build_forward` (a function
    from a float32 image batch in [0, 255] to float32 features). This class provides
    input checks, batching, compiled inference, the fingerprint and the
    scikit-learn plumbing.

    Frozen extractors need no fitting: ``transform`` can be called directly, and
    ``fit`` only checks the parameters and returns ``self``.
    """

    #: Name under which the class is registered (set by ``register_extractor``).
    registry_name: ClassVar[str] = ""
    #: Smallest image height/width the backbone accepts without resizing.
    min_input_size: ClassVar[int] = 1
    #: Whether ``fit`` learns something (``False`` for frozen backbones).
    trainable: ClassVar[bool] = False
    #: Whether ``_build_forward``'s function is compiled with ``tf.function``; extractors
    #: written in plain NumPy set this to ``False`` and never import TensorFlow.
    compiled: ClassVar[bool] = True

    # ------------------------------------------------------------------ subclass API
    def _validate_params(self) -> None:
        """Raise a clear error for an invalid parameter. Subclasses extend this."""
        check_positive_int("batch_size", getattr(self, "batch_size", 1))

    def _feature_config(self) -> dict[str, Any]:
        """Everything that changes the features, as JSON-able values."""
        raise NotImplementedError

    def _build_forward(self, image_size: tuple[int, int]) -> Any:
        """Return a callable mapping a float32 batch (n, h, w, 3) to (n, d) features."""
        raise NotImplementedError

    def _effective_batch_size(self) -> int:
        """Images per forward pass when the caller does not say."""
        return int(getattr(self, "batch_size", None) or 64)

    def _model_key(self, image_size: tuple[int, int]) -> Any:
        """Key under which built models are reused; ``None`` if size-independent."""
        return image_size

    # ------------------------------------------------------------------ public API
    def check_params(self) -> BaseExtractor:
        """Check the parameters now, as ``fit`` and ``transform`` do, without running.

        Raises the same clear errors (naming the parameter) that a later call would;
        useful before a long job starts, e.g. in the command line.

        Returns
        -------
        self
        """
        self._validate_params()
        return self

    def default_batch_size(self) -> int:
        """Images per forward pass when the caller does not say (the cache uses it)."""
        return self._effective_batch_size()

    def fit(self, X: Any = None, y: Any = None) -> BaseExtractor:
        """Check the parameters; a frozen extractor learns nothing.

        Parameters
        ----------
        X : ignored
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return not self.trainable or hasattr(self, "model_")

    @property
    def fingerprint(self) -> str:
        """Stable hash of everything that changes this extractor's features.

        It covers the extractor kind, the weights' identity (a file hash, or
        ``"imagenet"``, or ``None`` with the seed), the layer, pooling, input size,
        resize method, preprocessing, compute dtype and transferkit's feature
        version. Two extractors with equal fingerprints produce equal features.
        """
        return hash_json(self.describe())

    def describe(self) -> dict[str, Any]:
        """The configuration that the fingerprint is computed from."""
        self._validate_params()
        return {
            "extractor": self.registry_name or type(self).__name__,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "feature_version": FEATURE_VERSION,
            **self._feature_config(),
        }

    def output_dim(self, image_size: tuple[int, int] = (32, 32)) -> int:
        """Width ``d`` of the feature vectors for images of ``image_size``.

        Parameters
        ----------
        image_size : (int, int), default=(32, 32)
            Height and width of the input images. Irrelevant when the extractor
            resizes to a fixed ``input_size``.
        """
        size = self._check_image_size(tuple(image_size))
        probe = np.zeros((1, *size, 3), dtype=np.uint8)  # the trace uint8 images reuse
        return int(self._forward(size)(probe).shape[-1])

    def feature_model(self, image_size: tuple[int, int] | None = None) -> Any:
        """A new trainable Keras model of the backbone, equal to :meth:`transform` (to fine-tune).

        The model maps images to the same features as :meth:`transform`, and is
        self-contained: resizing (when ``input_size`` is set, with the same
        ``tf.image.resize`` method) and the backbone's preprocessing run inside it as
        serialisable Keras layers (``transferkit.extractors._layers``), so
        ``model.save("m.keras")`` then ``keras.saving.load_model("m.keras",
        safe_mode=True)`` (after ``import transferkit.extractors._layers``) gives the same
        model. It is flat: the backbone's own layers are layers of the returned model
        (``model.get_layer("block5_conv3")``), and
        :func:`~transferkit.extractors.layer_blocks` groups them into blocks.

        Each call builds a new model with its own copy of the weights: training it never
        changes this extractor's features. It is built under the extractor's ``dtype``
        policy (pooling and the output in float32) and returned frozen
        (``model.trainable = False``): the caller unfreezes what it trains. In Keras 3 a
        model whose ``trainable`` is False has no trainable weights whatever its layers
        say, so set ``model.trainable = True`` (which unfreezes every layer) and then
        ``layer.trainable = False`` on the layers that stay frozen.

        Parameters
        ----------
        image_size : (int, int), optional
            Height and width of the images the model will take. Default: the extractor's
            ``input_size`` when it has one, else 32x32 (or the backbone's minimum if
            larger); a trained :class:`~transferkit.extractors.CifarCNN` takes its
            training images' size only.

        Returns
        -------
        keras.Model
            Input ``"images"``: float32 of shape (None, height, width, 3), RGB in
            [0, 255]. Output: float32 of shape (None, d), the features :meth:`transform`
            gives on the same images (to float32 rounding).

        Raises
        ------
        InvalidInputError
            If this extractor has no Keras model to give (e.g. one written in NumPy), or
            ``image_size`` is too small for the backbone.
        NotFittedError
            If the extractor must be fitted first (:class:`~transferkit.extractors.CifarCNN`).
        """
        raise InvalidInputError(
            f"{type(self).__name__} cannot give a Keras model to fine-tune: `feature_model` "
            "needs an extractor built on a Keras backbone (received "
            f"image_size={image_size!r})."
        )

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names ``<extractor>_0 ... <extractor>_{d-1}`` of the output features."""
        d = self.output_dim()
        prefix = self.registry_name or type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(d)], dtype=object)

    def transform(self, X: Any) -> np.ndarray:
        """Extract features.

        Parameters
        ----------
        X : array-like of shape (n, height, width, 3)
            RGB images, uint8 or float in [0, 255], channels last. Never modified.

        Returns
        -------
        ndarray of shape (n, d), float32
        """
        self._check_fitted()
        images = self._check_input(X)
        n = len(images)
        out: np.ndarray | None = None
        for offset, feats in self.iter_features(images):
            if out is None:
                out = np.empty((n, feats.shape[1]), dtype=np.float32)
            out[offset : offset + len(feats)] = feats
        if out is None:  # pragma: no cover - check_images refuses empty input
            out = np.empty((0, self.output_dim()), dtype=np.float32)
        return out

    def iter_features(
        self, X: Any, *, start: int = 0, batch_size: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(offset, features)`` batch by batch, from image ``start`` on.

        This is the streaming path the feature cache uses. It is pipelined: a reader
        thread reads (or decodes, or generates) the next batches, checks their
        values and casts them while the backbone computes the current one, at most
        :data:`PREFETCH_DEPTH` + 1 batches ahead, so memory stays flat for any
        number of images. Batch boundaries are ``start, start + batch_size, ...``
        whatever the timing, so results do not depend on it.

        Parameters
        ----------
        X : array-like of shape (n, height, width, 3) or streamed images
            An array, an ``h5py`` dataset, or an object with ``iter_batches``,
            ``shape`` and ``dtype`` (see :class:`transferkit.cache.ImageStream`).
        start : int, default=0
            First image.
        batch_size : int, optional
            Images per forward pass; default: the extractor's ``batch_size``.

        Yields
        ------
        offset : int
            Index of the batch's first image.
        features : ndarray of shape (b, d), float32
        """
        self._check_fitted()
        images = self._check_input(X)
        bs = check_positive_int("batch_size", batch_size or self._effective_batch_size())
        size = self._check_image_size((int(images.shape[1]), int(images.shape[2])))
        forward = self._forward(size)
        batches = prefetch(_prepared_batches(images, bs, start), depth=PREFETCH_DEPTH)
        try:
            for offset, batch in batches:
                yield offset, np.asarray(forward(batch), dtype=np.float32)
        finally:
            batches.close()  # stops the reader thread when the caller stops early

    def estimate(
        self, n_images: int = 1, image_size: tuple[int, int] = (32, 32), *, labels: bool = False
    ) -> CostEstimate:
        """What extracting ``n_images`` images of ``image_size`` will cost, before running.

        Counts the multiply-accumulates (MACs) of every convolution and dense layer
        of the backbone at the size it computes at (after resizing to
        ``input_size``, if set); FLOPs are twice that. Upsampling CIFAR-10's 32x32 to
        224x224, for instance, costs 49x the compute (``resize_factor``). Building
        the architecture for counting needs no weights (nothing is downloaded).

        Parameters
        ----------
        n_images : int, default=1
            Number of images to extract.
        image_size : (int, int), default=(32, 32)
            Height and width of the images.
        labels : bool, default=False
            Count one stored int64 label per image in ``cache_bytes``.

        Returns
        -------
        CostEstimate
            FLOPs per image and in total, feature width, expected cache size on disk,
            largest activation per image; ``print(estimate)`` summarises it.
            ``flops_per_image`` is ``None`` for extractors without a Keras model.

        Examples
        --------
        >>> vgg = VGG16Extractor(weights=None, input_size=224)  # doctest: +SKIP
        >>> print(vgg.estimate(50_000, image_size=(32, 32)))     # doctest: +SKIP
        """
        self._validate_params()
        n = int(check_positive_int("n_images", n_images))  # type: ignore[arg-type]
        size = _check_size_arg(image_size)
        minimum = self._min_size_for_input()
        if minimum is not None and min(size) < minimum:
            raise InvalidInputError(
                f"`image_size` must be at least {minimum}x{minimum} for this backbone; "
                f"received {size[0]}x{size[1]}. Set `input_size` to resize inside the model."
            )
        size = self._check_image_size(size)
        model = self._cost_model(size)
        dtype = str(getattr(self, "dtype", "float32"))
        itemsize = 2 if "bfloat16" in dtype or "float16" in dtype else 4
        if model is not None:
            macs, largest = count_macs(model)
            d = int(model.output.shape[-1])
            model_size = (int(model.input.shape[1]), int(model.input.shape[2]))
            flops: int | None = 2 * macs
            activation: int | None = largest * itemsize
        else:
            macs = flops = activation = None  # type: ignore[assignment]
            d = int(self.output_dim(size))
            model_size = size
        native = None
        if (
            model is not None
            and model_size != size
            and getattr(self, "input_size", None)
            and min(size) >= self._native_min_size()
        ):
            from sklearn.base import clone

            from ..exceptions import TransferkitError

            other = clone(self).set_params(input_size=None)
            try:
                other._validate_params()  # e.g. VGG-16's fc layers exist at 224 only
                unresized = other._cost_model(size)
            except TransferkitError:
                unresized = None
            if unresized is not None:
                native = 2 * count_macs(unresized)[0]
        return CostEstimate(
            extractor=self.registry_name or type(self).__name__,
            n_images=n,
            image_size=size,
            model_input_size=model_size,
            macs_per_image=macs,
            flops_per_image=flops,
            total_flops=None if flops is None else n * flops,
            feature_dim=d,
            feature_bytes=n * d * 4,
            cache_bytes=feature_cache_bytes(n, d, labels=labels,
                                            batch_size=self._effective_batch_size()),
            activation_bytes_per_image=activation,
            batch_size=self._effective_batch_size(),
            dtype=dtype,
            native_flops_per_image=native,
        )

    # ------------------------------------------------------------------ helpers
    def _feature_model_size(self, image_size: Any) -> tuple[int, int]:
        """``feature_model``'s ``image_size``, defaulted and checked as ``estimate`` checks."""
        self._validate_params()
        if image_size is None:
            side = getattr(self, "input_size", None) or max(32, self._native_min_size())
            image_size = (int(side), int(side))
        size = _check_size_arg(image_size)
        minimum = self._min_size_for_input()
        if minimum is not None and min(size) < minimum:
            raise InvalidInputError(
                f"`image_size` must be at least {minimum}x{minimum} for this backbone; "
                f"received {size[0]}x{size[1]}. Set `input_size` to resize inside the model."
            )
        return self._check_image_size(size)

    def _check_fitted(self) -> None:
        if self.trainable:
            from sklearn.utils.validation import check_is_fitted

            from ..exceptions import NotFittedError

            try:
                check_is_fitted(self)
            except Exception as exc:
                raise NotFittedError(
                    f"This {type(self).__name__} is not fitted yet; call `fit(images, labels)` "
                    "or load a trained one before extracting features."
                ) from exc

    def _check_input(self, X: Any) -> Any:
        self._validate_params()
        return check_images(as_image_source(X, name="images"), name="images",
                            min_size=self._min_size_for_input())

    def _native_min_size(self) -> int:
        """Smallest image side the backbone takes without resizing."""
        return int(self.min_input_size)

    def _min_size_for_input(self) -> int | None:
        return None if getattr(self, "input_size", None) else self._native_min_size()

    def _check_image_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return (int(size[0]), int(size[1]))

    def _cost_model(self, image_size: tuple[int, int]) -> Any:
        """The Keras model whose layers :meth:`estimate` counts, or ``None``.

        The default uses the model the forward function exposes as ``.model`` (so
        it may load weights); the built-in backbones override it to build the
        architecture alone.
        """
        if not self.compiled:
            return None
        fn = self._forward(image_size)
        return getattr(getattr(fn, "python_function", fn), "model", None)

    def _forward(self, image_size: tuple[int, int]) -> Any:
        key = (self.fingerprint, self._model_key(image_size))
        cache = self.__dict__.setdefault("_forward_cache", {})
        fn = cache.get(key)
        if fn is None:
            raw = self._build_forward(image_size)
            fn = _CompiledForward(raw) if self.compiled else raw
            cache.clear()  # parameters changed: drop models built for the old ones
            cache[key] = fn
        return fn

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        state.pop("_forward_cache", None)  # compiled TensorFlow functions do not pickle
        return state


def _check_size_arg(image_size: Any) -> tuple[int, int]:
    ok = (
        isinstance(image_size, tuple | list)
        and len(image_size) == 2
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in image_size)
    )
    if not ok:
        raise InvalidTypeError(
            f"`image_size` must be a (height, width) pair of integers; received "
            f"{describe(image_size)}."
        )
    if min(image_size) < 1:
        raise InvalidInputError(
            f"`image_size` must hold positive integers; received {tuple(image_size)}."
        )
    return (int(image_size[0]), int(image_size[1]))
