"""The extractor contract: images in, float32 feature vectors out.

Every extractor is a scikit-learn transformer (``fit``/``transform``), knows the
width of its output, and has a :attr:`~BaseExtractor.fingerprint`: a stable hash of
everything that changes its features. The feature cache keys entries by it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from .. import FEATURE_VERSION
from .._hashing import hash_json
from .._lazy import import_tf
from .._validation import check_image_batch_values, check_images, check_positive_int

__all__ = ["BaseExtractor", "iter_image_batches"]


def iter_image_batches(
    images: Any, batch_size: int, *, start: int = 0
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(offset, batch)`` pairs over ``images[start:]``.

    Works on NumPy arrays, lazy arrays such as ``h5py`` datasets, and objects that
    stream their own batches through ``iter_batches(batch_size, start=...)`` (such
    as :class:`transferkit.datasets.ImageFolderDataset`). Only one batch is in memory
    at a time.
    """
    own = getattr(images, "iter_batches", None)
    if callable(own):
        offset = start
        for batch in own(batch_size, start=start):
            yield offset, np.asarray(batch)
            offset += len(batch)
        return
    n = len(images)
    for i in range(start, n, batch_size):
        yield i, np.asarray(images[i : i + batch_size])


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

    def _model_key(self, image_size: tuple[int, int]) -> Any:
        """Key under which built models are reused; ``None`` if size-independent."""
        return image_size

    # ------------------------------------------------------------------ public API
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
        probe = np.zeros((1, *size, 3), dtype=np.float32)
        return int(self._forward(size)(probe).shape[-1])

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

        This is the streaming path the feature cache uses: only one batch of
        images and features is in memory at a time.
        """
        self._check_fitted()
        images = self._check_input(X)
        bs = check_positive_int("batch_size", batch_size or self.batch_size)
        size = self._check_image_size((int(images.shape[1]), int(images.shape[2])))
        forward = self._forward(size)
        for offset, batch in iter_image_batches(images, bs, start=start):
            check_image_batch_values(batch, name="images", offset=offset)
            if batch.dtype != np.uint8 and batch.dtype != np.float32:
                batch = batch.astype(np.float32)  # a copy: the caller's array is untouched
            yield offset, np.asarray(forward(batch), dtype=np.float32)

    # ------------------------------------------------------------------ helpers
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
        return check_images(X, name="images", min_size=self._min_size_for_input())

    def _min_size_for_input(self) -> int | None:
        return None if getattr(self, "input_size", None) else self.min_input_size

    def _check_image_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return (int(size[0]), int(size[1]))

    def _forward(self, image_size: tuple[int, int]) -> Any:
        key = (self.fingerprint, self._model_key(image_size))
        cache = self.__dict__.setdefault("_forward_cache", {})
        fn = cache.get(key)
        if fn is None:
            raw = self._build_forward(image_size)
            fn = import_tf().function(raw, reduce_retracing=True) if self.compiled else raw
            cache.clear()  # parameters changed: drop models built for the old ones
            cache[key] = fn
        return fn

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        state.pop("_forward_cache", None)  # compiled TensorFlow functions do not pickle
        return state
