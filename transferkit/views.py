"""Augmented views: features of flipped and shifted copies of the images.

A head trained on features of several views of each image sees more variety, and
averaging its predictions over the views of a test image (test-time augmentation) is
usually more accurate than one view. Each view goes through the feature cache as its
own entry: ``with_view(extractor, "hflip")`` is an extractor whose fingerprint includes
the view, so views never mix and every one is extracted once.

>>> views = ("identity", "hflip")
>>> f_train = extract_views(cache, lite0, x_train, views)          # doctest: +SKIP
>>> X, y = stack_views(f_train, y_train)                            # (2n, d), (2n,)
>>> head = SklearnHead().fit(X, y)                                  # doctest: +SKIP
>>> accuracy = score_views(head, extract_views(cache, lite0, x_test, views), y_test)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ._validation import check_images, describe
from .datasets import as_image_source
from .exceptions import InvalidInputError, InvalidTypeError
from .extractors._base import BaseExtractor, iter_image_batches

__all__ = [
    "VIEWS",
    "ViewExtractor",
    "apply_view",
    "extract_views",
    "predict_proba_views",
    "score_views",
    "stack_views",
    "with_view",
]

#: Elementary views; combine them with "+", e.g. ``"hflip+shift_left"``.
VIEWS = ("identity", "hflip", "shift_left", "shift_right", "shift_up", "shift_down")
_SHIFTS = {"shift_left": (0, -1), "shift_right": (0, 1), "shift_up": (-1, 0), "shift_down": (1, 0)}


def _parse_view(view: Any) -> tuple[str, ...]:
    if not isinstance(view, str) or not view:
        raise InvalidTypeError(
            f"`view` must be a view name such as 'hflip'; received {describe(view)}."
        )
    parts = tuple(p.strip() for p in view.split("+"))
    for p in parts:
        if p not in VIEWS:
            raise InvalidInputError(
                f"`view` must be one of {list(VIEWS)} or several joined by '+'; received "
                f"{view!r} (unknown part {p!r})."
            )
    return tuple(p for p in parts if p != "identity") or ("identity",)


def apply_view(images: np.ndarray, view: str) -> np.ndarray:
    """Return a new array: ``images`` (n, h, w, 3) seen through ``view``.

    ``hflip`` mirrors left-right; ``shift_*`` moves the content by 1/8 of the image
    side, filling the uncovered border by reflection. The input is never modified.
    """
    parts = _parse_view(view)
    out = np.asarray(images)
    for part in parts:
        if part == "hflip":
            out = out[:, :, ::-1]
        elif part in _SHIFTS:
            dy, dx = _SHIFTS[part]
            h, w = out.shape[1:3]
            sy, sx = dy * max(1, h // 8), dx * max(1, w // 8)
            pad = ((0, 0), (abs(sy), abs(sy)), (abs(sx), abs(sx)), (0, 0))
            padded = np.pad(out, pad, mode="reflect" if min(h, w) > 1 else "edge")
            y0, x0 = abs(sy) - sy, abs(sx) - sx
            out = padded[:, y0 : y0 + h, x0 : x0 + w]
    return np.ascontiguousarray(out)


class _ViewedImages:
    """Images seen through a view, batch by batch (never all at once)."""

    def __init__(self, images: Any, view: str) -> None:
        self._images = images
        self._view = view
        self.shape = tuple(images.shape)
        self.dtype = images.dtype
        self.ndim = 4

    def __len__(self) -> int:
        return self.shape[0]

    def iter_batches(self, batch_size: int, start: int = 0) -> Iterator[np.ndarray]:
        for _, batch in iter_image_batches(self._images, batch_size, start=start):
            yield apply_view(batch, self._view)


class ViewExtractor(BaseExtractor):
    """An extractor applied to a view of the images (see :func:`with_view`).

    Parameters
    ----------
    extractor : BaseExtractor
        The backbone.
    view : str
        A name from :data:`VIEWS`, or several joined by ``"+"``.
    """

    def __init__(self, extractor: Any = None, view: str = "hflip") -> None:
        self.extractor = extractor
        self.view = view

    def _validate_params(self) -> None:
        if not isinstance(self.extractor, BaseExtractor):
            raise InvalidTypeError(
                f"`extractor` must be a transferkit extractor; received {describe(self.extractor)}."
            )
        _parse_view(self.view)

    @property
    def batch_size(self) -> int:  # type: ignore[override]
        return int(self.extractor._effective_batch_size())

    def _effective_batch_size(self) -> int:
        return self.batch_size

    @property
    def trainable(self) -> bool:  # type: ignore[override]
        return bool(self.extractor.trainable)

    def __sklearn_is_fitted__(self) -> bool:
        return self.extractor.__sklearn_is_fitted__()

    def _check_fitted(self) -> None:
        self._validate_params()
        self.extractor._check_fitted()

    def describe(self) -> dict[str, Any]:
        self._validate_params()
        return {**self.extractor.describe(), "view": "+".join(_parse_view(self.view))}

    def output_dim(self, image_size: tuple[int, int] = (32, 32)) -> int:
        return self.extractor.output_dim(image_size)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return self.extractor.get_feature_names_out(input_features)

    def iter_features(
        self, X: Any, *, start: int = 0, batch_size: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        self._validate_params()
        images = check_images(as_image_source(X, name="images"), name="images")
        return self.extractor.iter_features(
            _ViewedImages(images, self.view), start=start, batch_size=batch_size
        )


def with_view(extractor: Any, view: str) -> Any:
    """``extractor`` applied to ``view`` of the images; ``"identity"`` returns it unchanged."""
    if _parse_view(view) == ("identity",):
        return extractor
    return ViewExtractor(extractor, view)


def extract_views(
    cache: Any, extractor: Any, images: Any, views: Sequence[str] = ("identity", "hflip"),
    **extract_kwargs: Any,
) -> np.ndarray:
    """Features of every view through ``cache``: an array of shape (n_views, n, d).

    Parameters
    ----------
    cache : FeatureCache
    extractor : BaseExtractor
    images : array-like of shape (n, height, width, 3)
    views : sequence of str, default=("identity", "hflip")
    **extract_kwargs
        Passed to :meth:`FeatureCache.extract` (``labels``, ``batch_size``, ``verbose``...).
    """
    if isinstance(views, str) or not len(views):
        raise InvalidInputError(
            f"`views` must be a non-empty sequence of view names; received {views!r}."
        )
    return np.stack([
        np.asarray(cache.extract(with_view(extractor, v), images, **extract_kwargs))
        for v in views
    ])


def _check_views_features(features: Any) -> np.ndarray:
    arr = np.asarray(features)
    if arr.ndim != 3:
        raise InvalidInputError(
            "`features` must have shape (n_views, n, d) as returned by `extract_views`; "
            f"received shape {arr.shape}."
        )
    return arr


def stack_views(features: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Training data with every view of every image: ``(n_views * n, d)`` and labels."""
    arr = _check_views_features(features)
    labels = np.asarray(y)
    if len(labels) != arr.shape[1]:
        raise InvalidInputError(
            f"`y` must have one label per image: expected {arr.shape[1]}, received {len(labels)}."
        )
    return arr.reshape(-1, arr.shape[2]), np.concatenate([labels] * arr.shape[0])


def predict_proba_views(head: Any, features: Any) -> np.ndarray:
    """Class probabilities averaged over the views (test-time augmentation)."""
    arr = _check_views_features(features)
    return np.mean([head.predict_proba(f) for f in arr], axis=0)


def score_views(head: Any, features: Any, y: Any) -> float:
    """Accuracy of the view-averaged predictions."""
    proba = predict_proba_views(head, features)
    labels = np.asarray(y)
    if len(labels) != len(proba):
        raise InvalidInputError(
            f"`y` must have one label per image: expected {len(proba)}, received {len(labels)}."
        )
    return float(np.mean(head.classes_[np.argmax(proba, axis=1)] == labels))
