"""Images decoded on demand, as a read-only array-like: what image folders, lists and HF share.

:class:`OnDemandImages` is the array-like protocol of the image sources that index
their images once and decode them when asked
(:class:`~transferkit.datasets.ImageFolderDataset`, and through it
:class:`~transferkit.datasets.ImageListDataset`, and
:class:`~transferkit.datasets.HFImageDataset`): ``len(ds)``, ``ds.shape == (n, H, W,
3)``, ``ds.dtype == uint8``, ``ds[i]``, ``ds[a:b]``, ``ds[[i, j]]``, ``ds[mask]``,
``np.asarray(ds)``, :meth:`~OnDemandImages.load` and
:meth:`~OnDemandImages.iter_batches`, with the same checks and errors for all.

A subclass provides the reading: ``__len__``, ``_target_size()`` (the ``(height,
width)`` every image is decoded to) and ``_read(positions)`` (the images at those
positions as one ``uint8`` array, checking that they fit in memory), plus ``labels``,
``fingerprint()`` and ``__repr__``; their fingerprints hash image files with
:func:`hash_file`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .._validation import check_positive_int, describe
from ..exceptions import InvalidInputError, InvalidTypeError
from .images import resample_filter

__all__ = ["IndexOutOfRangeError", "OnDemandImages", "hash_file"]

_READ_CHUNK = 1 << 20


class IndexOutOfRangeError(InvalidInputError, IndexError):
    """An index outside ``[-len, len)``; also an ``IndexError`` for Python's protocols."""


def hash_file(digest: Any, path: str | os.PathLike[str]) -> None:
    """Feed a file's size (8 bytes, little-endian) and then its bytes to ``digest``.

    The file is read in chunks of 1 MiB, so its size does not matter.

    Parameters
    ----------
    digest : hashlib hash object
        What to update, e.g. ``hashlib.blake2b(digest_size=32)``.
    path : str or os.PathLike
        The file.

    Raises
    ------
    OSError
        The file cannot be opened or read; callers name it in their own error.
    """
    with open(path, "rb") as handle:
        digest.update(os.fstat(handle.fileno()).st_size.to_bytes(8, "little"))
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)


class OnDemandImages:
    """Base of the image sources decoded on demand, as an array-like of uint8 NHWC images.

    Parameters
    ----------
    image_size : tuple of int or None
        ``(height, width)`` images are resized to, or None to keep their size.
    interpolation : str
        Resampling filter used when resizing, one of
        :data:`~transferkit.datasets.images.INTERPOLATIONS`.
    batch_size : int
        Default batch size of :meth:`iter_batches`.

    Attributes
    ----------
    image_size : tuple of int or None
        ``(height, width)`` images are resized to, or None to keep their size.
    interpolation : str
        Resampling filter used when resizing.
    batch_size : int
        Default batch size of :meth:`iter_batches`.
    labels : numpy.ndarray or None
        ``int64`` label of each image, shape ``(n,)``, or None (set by the subclass).
    """

    labels: np.ndarray | None

    def __init__(
        self, image_size: tuple[int, int] | None, interpolation: str, batch_size: int
    ) -> None:
        self.image_size = image_size
        self.interpolation = interpolation
        self.batch_size = batch_size
        self._resample = resample_filter(interpolation)
        self._native_size: tuple[int, int] | None = None

    # -- what a subclass provides ----------------------------------------------------------

    def __len__(self) -> int:
        raise NotImplementedError

    def _target_size(self) -> tuple[int, int]:
        """``(height, width)`` of every image read: ``image_size``, or the first image's."""
        raise NotImplementedError

    def _read(self, positions: Iterable[int]) -> np.ndarray:
        """The images at ``positions`` (in ``0..n-1``) as one ``uint8`` NHWC array."""
        raise NotImplementedError

    # -- array-like protocol ---------------------------------------------------------------

    @property
    def dtype(self) -> np.dtype:
        """Always ``uint8``."""
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        """Always 4: (n, height, width, 3)."""
        return 4

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(n, height, width, 3)``; with ``image_size=None`` the first image's size."""
        height, width = self._target_size()
        return (len(self), height, width, 3)

    def __getitem__(self, index: Any) -> np.ndarray:
        n = len(self)
        if isinstance(index, int | np.integer) and not isinstance(index, bool):
            i = int(index)
            if not -n <= i < n:
                raise IndexOutOfRangeError(
                    f"index {i} is out of range for a dataset of {n} images; use 0..{n - 1} "
                    "or negative indices from the end."
                )
            return self._read([i % n])[0]
        if isinstance(index, slice):
            return self._read(range(*index.indices(n)))
        try:
            positions = np.asarray(index)
        except Exception:
            positions = np.asarray([], dtype=object)
        if positions.dtype == np.bool_ and positions.shape == (n,):
            positions = np.flatnonzero(positions)
        if positions.ndim != 1 or not (
            positions.size == 0 or np.issubdtype(positions.dtype, np.integer)
        ):
            raise InvalidTypeError(
                f"an {type(self).__name__} index must be an int, a slice, a 1-D sequence of "
                f"ints or a boolean mask of length {n}; received {describe(index)}."
            )
        bad = positions[(positions < -n) | (positions >= n)]
        if bad.size:
            raise IndexOutOfRangeError(
                f"index {int(bad[0])} is out of range for a dataset of {n} images."
            )
        return self._read([int(i) % n for i in positions])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if copy is False:
            raise InvalidInputError(
                f"An {type(self).__name__} cannot be viewed as an array without copying (its "
                "images are decoded on demand); use `np.asarray(ds)` or `ds.load()`."
            )
        images = self._read(range(len(self)))
        return images if dtype is None else images.astype(dtype)

    def load(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Read every image into memory.

        Returns
        -------
        x : numpy.ndarray
            ``uint8`` array of shape ``(n, height, width, 3)``.
        y : numpy.ndarray or None
            ``int64`` labels of shape ``(n,)`` (a copy of :attr:`labels`), or None
            for a dataset without labels.

        Raises
        ------
        InvalidInputError
            The images do not fit in memory (use :meth:`iter_batches`), or with
            ``image_size=None`` an image's size differs from the first one's.
        ImageReadError
            An image cannot be read or decoded (it is named).
        """
        labels = None if self.labels is None else np.asarray(self.labels).copy()
        return self._read(range(len(self))), labels

    def iter_batches(self, batch_size: int | None = None, start: int = 0) -> Iterator[np.ndarray]:
        """Yield the images ``start:`` in order, one batch in memory at a time.

        Parameters
        ----------
        batch_size : int, optional
            Images per batch (the last may be smaller); default :attr:`batch_size`.
        start : int, default 0
            Index of the first image, e.g. to resume an interrupted pass; reading
            starts there directly.

        Yields
        ------
        numpy.ndarray
            ``uint8`` arrays of shape ``(b, height, width, 3)``.
        """
        size = check_positive_int("batch_size", batch_size, allow_none=True) or self.batch_size
        n = len(self)
        if isinstance(start, bool) or not isinstance(start, int | np.integer):
            raise InvalidTypeError(f"`start` must be an int in 0..{n}; received {describe(start)}.")
        if not 0 <= start <= n:
            raise InvalidInputError(
                f"`start` must be in 0..{n} (the dataset size); received {start}."
            )
        return self._iter(int(start), int(size))

    def _iter(self, start: int, size: int) -> Iterator[np.ndarray]:
        n = len(self)
        for begin in range(start, n, size):
            yield self._read(range(begin, min(begin + size, n)))
