"""Partial fine-tuning from cached activations: the frozen bottom runs once, into the cache.

When only the top blocks of a backbone train, everything below them computes the same
activations in every epoch. :class:`ActivationExtractor` is that frozen bottom as an
extractor (its output, the activations at the block boundary, flattened), so the
:class:`~transferkit.FeatureCache` stores them like any features: keyed by the base
extractor's fingerprint, the cut and the image size, resumable, shared between runs.
With ``"flip"`` in ``augment`` the mirrored images are a second view
(:func:`transferkit.views.extract_views`), the augmentation that survives caching;
shifts and zooms act on images and are not available on this path.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._lazy import import_keras
from .._validation import format_bytes, memory_limit_bytes
from ..exceptions import InvalidInputError
from ..extractors import BaseExtractor

__all__ = ["ActivationExtractor", "cached_activations"]


class ActivationExtractor(BaseExtractor):
    """The frozen bottom of a backbone, up to a block boundary, as an extractor.

    Made by :class:`~transferkit.FineTuner` (``activation_cache``); its features are the
    bottom's activations flattened to ``(n, h * w * c)``.

    Parameters
    ----------
    batch_size : int, default=64
    """

    registry_name: ClassVar[str] = "activations"

    def __init__(self, *, batch_size: int = 64) -> None:
        self.batch_size = batch_size

    @classmethod
    def of(cls, base: Any, bottom: Any, *, cut_before: str, image_size: tuple[int, int],
           batch_size: int) -> ActivationExtractor:
        """The extractor of ``bottom``, the part of ``base``'s model before ``cut_before``."""
        self = cls(batch_size=batch_size)
        self.bottom_ = bottom
        self.base_description_ = base.describe()
        self.cut_before_ = cut_before
        self.image_size_ = (int(image_size[0]), int(image_size[1]))
        self.shape_ = tuple(int(s) for s in bottom.output.shape[1:])
        return self

    def _feature_config(self) -> dict[str, Any]:
        return {"base": self.base_description_, "activations_before": self.cut_before_,
                "image_size": list(self.image_size_)}

    def _check_image_size(self, size: tuple[int, int]) -> tuple[int, int]:
        if tuple(size) != self.image_size_:
            raise InvalidInputError(
                f"`images` must be {self.image_size_[0]}x{self.image_size_[1]} like the "
                f"training images; received {size[0]}x{size[1]}.")
        return self.image_size_

    def _build_forward(self, image_size: tuple[int, int]) -> Any:
        keras = import_keras()
        bottom = self.bottom_

        def forward(x: Any) -> Any:
            out = bottom(keras.ops.cast(x, "float32"), training=False)
            return keras.ops.reshape(keras.ops.cast(out, "float32"), (-1, int(np.prod(
                self.shape_))))

        forward.model = bottom  # type: ignore[attr-defined]
        return forward


def cached_activations(
    cache: Any, extractor: ActivationExtractor, images: np.ndarray, views: tuple[str, ...],
) -> np.ndarray:
    """The activations of every view of ``images``, through ``cache``: (views * n, h, w, c).

    Raises a clear error before extracting when they would not fit in memory.
    """
    from ..views import extract_views

    n, per_image = len(images), int(np.prod(extractor.shape_)) * 4
    need = n * len(views) * per_image
    limit = memory_limit_bytes()
    if limit is not None and need > 0.6 * limit:
        raise InvalidInputError(
            f"`activation_cache`: the activations of {n} images x {len(views)} views at this "
            f"cut need {format_bytes(need)} of memory, and this machine has "
            f"{format_bytes(limit)}; train more blocks (a later cut is smaller), use a "
            "smaller input size, or fine-tune on images (activation_cache=None).")
    stacked = np.asarray(extract_views(cache, extractor, images, views), dtype=np.float32)
    return stacked.reshape(-1, *extractor.shape_)
