"""Images produced on demand, as the image collection extractors and the cache accept.

An :class:`ImageStream` presents images made by a function of the index range, or by a
generator, with ``shape``, ``dtype``, ``iter_batches(batch_size, start=0)`` and a
``fingerprint()`` naming its content, so data sets larger than memory stream through
:meth:`~transferkit.cache.FeatureCache.extract` a few batches at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .._hashing import hash_json
from .._validation import check_positive_int, describe
from ..exceptions import InvalidInputError, InvalidTypeError

__all__ = ["ImageStream", "read_in_order"]


# ====================================================================================
# Streamed image sources
# ====================================================================================
class ImageStream:
    """Images produced on demand, for collections larger than memory.

    An :class:`ImageStream` duck-types as a read-only image array: it has ``shape``,
    ``dtype``, ``len()``, slicing, ``iter_batches(batch_size, start=0)`` and a
    ``fingerprint()``; extractors (``transform``, ``iter_features``) and
    :meth:`transferkit.cache.FeatureCache.extract` accept it like an array and only
    ever hold a few batches of it in memory. The cache cannot hash pixels it never
    holds, so the caller names the content with ``fingerprint``: equal strings must
    mean equal images (e.g. a data set version, or the seed of synthetic images).

    Parameters
    ----------
    fn : callable
        ``fn(start, stop)`` returns images ``start .. stop - 1`` as an array of shape
        ``(stop - start, height, width, 3)``. It is called with consecutive ranges
        of at most one batch, from a reader thread, and must return the same images
        for the same range every time (an interrupted extraction resumes from the
        middle).
    n : int
        Number of images.
    image_shape : (height, width) or (height, width, 3)
        Shape of one image.
    fingerprint : str
        Identity of the content (part of the cache key, with ``n``, the shape and
        the dtype).
    dtype : {"uint8", "float32", "float64"}, default="uint8"
        dtype of the arrays ``fn`` returns (floats hold values in [0, 255]).
    labels : array-like of shape (n,), optional
        Stored by the feature cache with the features.
    class_names : list of str, optional
        Stored by the feature cache with the features.

    See Also
    --------
    ImageStream.from_batches : a stream from a generator of batches.

    Examples
    --------
    >>> def synthetic(start, stop):
    ...     rng = np.random.default_rng(start)  # the same images for the same range
    ...     return rng.integers(0, 256, (stop - start, 32, 32, 3), dtype=np.uint8)
    >>> stream = ImageStream(synthetic, 200_000, (32, 32), fingerprint="synthetic-v1")
    >>> stream.shape
    (200000, 32, 32, 3)
    >>> features = cache.extract(vgg, stream, lazy=True)  # doctest: +SKIP
    """

    ndim = 4

    def __init__(
        self,
        fn: Callable[[int, int], Any],
        n: int,
        image_shape: Sequence[int],
        *,
        fingerprint: str,
        dtype: Any = "uint8",
        labels: Any = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if not callable(fn):
            raise InvalidTypeError(
                f"`fn` must be a function fn(start, stop) returning images; received "
                f"{describe(fn)}."
            )
        n = int(check_positive_int("n", n))  # type: ignore[arg-type]
        shape = tuple(image_shape) if isinstance(image_shape, Sequence) else None
        if (
            shape is None
            or len(shape) not in (2, 3)
            or (len(shape) == 3 and shape[2] != 3)
            or not all(isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 1
                       for s in shape)
        ):
            raise InvalidInputError(
                "`image_shape` must be (height, width) or (height, width, 3) with positive "
                f"integers; received {describe(image_shape)}."
            )
        if not isinstance(fingerprint, str) or not fingerprint:
            raise InvalidTypeError(
                "`fingerprint` must be a non-empty string naming the content (equal strings "
                f"must mean equal images); received {describe(fingerprint)}."
            )
        try:
            np_dtype = np.dtype(dtype)
        except TypeError:
            np_dtype = None
        if np_dtype is None or not (np_dtype == np.uint8 or np_dtype.kind == "f"):
            raise InvalidTypeError(
                f"`dtype` must be 'uint8' or a float dtype; received {describe(dtype)}."
            )
        self._fn = fn
        self._fingerprint = fingerprint
        self.shape = (n, int(shape[0]), int(shape[1]), 3)
        self.dtype = np_dtype
        self.labels = None if labels is None else np.asarray(labels)
        if self.labels is not None and len(self.labels) != n:
            raise InvalidInputError(
                f"`labels` must have one label per image: expected {n}, received "
                f"{len(self.labels)}."
            )
        self.class_names = list(class_names) if class_names is not None else None

    @classmethod
    def from_batches(
        cls,
        make_batches: Callable[[], Iterable[Any]],
        n: int,
        image_shape: Sequence[int],
        *,
        fingerprint: str,
        dtype: Any = "uint8",
        labels: Any = None,
        class_names: Sequence[str] | None = None,
    ) -> ImageStream:
        """A stream over a generator of image batches.

        Parameters
        ----------
        make_batches : callable
            ``make_batches()`` returns a fresh iterable of arrays ``(b, height, width,
            3)`` (any ``b``) holding the ``n`` images in order. It is called again for
            every pass; to start at image ``start`` (a resumed extraction) the stream
            skips the first ``start`` images, so it must yield the same images each
            time.
        n, image_shape, fingerprint, dtype, labels, class_names
            As for :class:`ImageStream`.
        """
        if not callable(make_batches):
            raise InvalidTypeError(
                "`make_batches` must be a function returning an iterable of image batches; "
                f"received {describe(make_batches)}."
            )
        stream = cls(
            _unused_fn, n, image_shape, fingerprint=fingerprint, dtype=dtype, labels=labels,
            class_names=class_names,
        )
        stream._make_batches = make_batches
        return stream

    # -- array-like protocol ------------------------------------------------------------
    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (
            f"ImageStream(n={self.shape[0]}, image_shape={self.shape[1:]}, "
            f"dtype={self.dtype}, fingerprint={self._fingerprint!r})"
        )

    def __getitem__(self, index: Any) -> np.ndarray:
        return read_in_order(index, len(self), self._range, "an ImageStream")

    def fingerprint(self) -> str:
        """Hash of the given ``fingerprint``, ``n``, the image shape and the dtype."""
        return hash_json(
            {
                "kind": "transferkit.ImageStream",
                "fingerprint": self._fingerprint,
                "shape": list(self.shape),
                "dtype": self.dtype.str,
            }
        )

    def iter_batches(self, batch_size: int, start: int = 0) -> Iterator[np.ndarray]:
        """Yield images ``start:`` in batches of ``batch_size`` (the last may be smaller)."""
        bs = int(check_positive_int("batch_size", batch_size))  # type: ignore[arg-type]
        n = len(self)
        if (
            isinstance(start, bool)
            or not isinstance(start, int | np.integer)
            or not 0 <= start <= n
        ):
            raise InvalidInputError(f"`start` must be an int in 0..{n}; received {start!r}.")
        make = getattr(self, "_make_batches", None)
        if make is not None:
            return self._rebatch(make, bs, int(start))
        return (self._range(i, min(i + bs, n)) for i in range(int(start), n, bs))

    # -- producing ------------------------------------------------------------------------
    def _check(self, arr: Any, start: int, stop: int, source: str) -> np.ndarray:
        arr = np.asarray(arr)
        expected = (stop - start, *self.shape[1:])
        if arr.shape != expected:
            raise InvalidInputError(
                f"`{source}` returned an array of shape {arr.shape} for images "
                f"{start}..{stop - 1}; expected {expected}."
            )
        if arr.dtype != self.dtype:
            raise InvalidTypeError(
                f"`{source}` returned dtype {arr.dtype} for images {start}..{stop - 1}; "
                f"expected {self.dtype} (the stream's `dtype`)."
            )
        return arr

    def _range(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        make = getattr(self, "_make_batches", None)
        if make is not None:
            batches = self._rebatch(make, stop - start, start)
            try:
                return next(batches)
            finally:
                batches.close()
        return self._check(self._fn(start, stop), start, stop, "fn")

    def _rebatch(
        self, make: Callable[[], Iterable[Any]], bs: int, start: int
    ) -> Iterator[np.ndarray]:
        n = len(self)
        pending: list[np.ndarray] = []
        held = 0
        position = 0  # index of the first image not yet received from the generator
        emitted = start
        for raw in make():
            arr = np.asarray(raw)
            if arr.ndim != 4 or arr.shape[1:] != self.shape[1:] or arr.dtype != self.dtype:
                raise InvalidInputError(
                    f"`make_batches` yielded an array of shape {arr.shape} and dtype "
                    f"{arr.dtype} at image {position}; expected (b, {self.shape[1]}, "
                    f"{self.shape[2]}, 3) and dtype {self.dtype}."
                )
            begin, position = position, position + len(arr)
            if position <= start:
                continue  # before the resume point
            pending.append(arr[max(0, start - begin) :])
            held += len(pending[-1])
            while held >= bs or (position >= n and held):
                block = np.concatenate(pending) if len(pending) > 1 else pending[0]
                take = min(bs, n - emitted)
                out, rest = block[:take], block[take:]
                pending, held = ([rest] if len(rest) else []), len(rest)
                yield out
                emitted += take
                if emitted >= n:
                    return
        if emitted < n:
            raise InvalidInputError(
                f"`make_batches` yielded {position} images; the stream declares n={n}."
            )


def read_in_order(
    index: Any, n: int, read_range: Callable[[int, int], np.ndarray], what: str
) -> np.ndarray:
    """``source[index]`` for a source of ``n`` images read in order.

    Such a source (an :class:`ImageStream`, a ``tf.data`` pipeline) takes an int
    (negative from the end) or a contiguous slice (step 1), nothing else.

    Parameters
    ----------
    index : Any
        The index given to ``__getitem__``.
    n : int
        Number of images of the source.
    read_range : callable
        ``read_range(start, stop)`` returns the images ``start .. stop - 1``
        (``start <= stop``; none when equal) as one array.
    what : str
        The source as errors name it, e.g. ``"an ImageStream"``.

    Returns
    -------
    numpy.ndarray
        One image for an int, an array of images for a slice.

    Raises
    ------
    InvalidInputError
        An int index outside ``[-n, n)``.
    InvalidTypeError
        Any other index than an int or a contiguous slice.
    """
    if isinstance(index, int | np.integer) and not isinstance(index, bool):
        i = int(index) + (n if index < 0 else 0)
        if not 0 <= i < n:
            raise InvalidInputError(f"index {int(index)} is out of range for {n} images.")
        return read_range(i, i + 1)[0]
    if isinstance(index, slice) and index.step in (None, 1):
        start, stop, _ = index.indices(n)
        return read_range(start, max(start, stop))
    raise InvalidTypeError(
        f"{what} is read in order: index it with an int or a contiguous slice; received "
        f"{describe(index)}."
    )


def _unused_fn(start: int, stop: int) -> Any:  # pragma: no cover - from_batches streams
    raise NotImplementedError


