"""The pipelined extraction path: inputs read ahead, features written behind.

Extraction runs three stages at once, each on its own thread, joined by bounded
queues so memory stays flat however many images there are::

    reader thread             calling thread              writer thread (cache only)
    read / decode / check  -> backbone (compiled, TF   -> HDF5 rows + progress + flush
    batch k+1                 releases the GIL) batch k    batch k-1

* :func:`prefetch` runs an iterator on a background thread, at most ``depth``
  items ahead of its consumer. :meth:`BaseExtractor.iter_features` uses it to read,
  decode and check the next uint8 batch while the current one computes.
* :class:`BackgroundWriter` hands items to a writer thread through a bounded queue
  and writes them in order. :class:`~transferkit.cache.FeatureCache` uses it so the
  HDF5 writes of batch ``k`` overlap the computation of batch ``k + 1``.
* :class:`ImageStream` presents images produced on demand (a function of the index
  range, or a generator) as the image collection the extractors and the cache accept,
  for data sets larger than memory.
* :func:`keras_dtype_policy` builds Keras models in bfloat16 (``dtype="bfloat16"`` or
  ``"mixed_bfloat16"`` on the extractors).

Nothing here imports TensorFlow at import time: extractors that are not compiled
(``compiled = False``) use the threads without it.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ._hashing import hash_json
from ._validation import check_positive_int, describe
from .exceptions import InvalidInputError, InvalidTypeError

__all__ = [
    "COMPUTE_DTYPES",
    "BackgroundWriter",
    "ImageStream",
    "cpu_supports_bf16",
    "keras_dtype_policy",
    "prefetch",
]

#: Compute dtypes the Keras extractors accept. Features are float32 in every case.
#: ``"bfloat16"``: weights and activations in bfloat16; ``"mixed_bfloat16"``: float32
#: weights, bfloat16 activations (Keras' mixed precision).
COMPUTE_DTYPES = ("float32", "bfloat16", "mixed_bfloat16")

_POLL_SECONDS = 0.05


# ====================================================================================
# Reading ahead
# ====================================================================================
def prefetch(
    items: Iterable[Any], *, depth: int = 1, name: str = "transferkit-reader"
) -> Iterator[Any]:
    """Iterate ``items`` on a background thread, at most ``depth`` items ahead.

    The producer thread holds at most one item it is making plus ``depth`` finished
    ones in the queue, so at most ``depth + 1`` items exist beyond the one the
    consumer works on. Exceptions raised by ``items`` are re-raised in the consumer,
    at the position they occurred, with their traceback. Closing the returned
    generator (or dropping it) stops the thread after the item it is making.

    Parameters
    ----------
    items : iterable
        Iterated on the background thread only.
    depth : int, default=1
        Finished items waiting in the queue.
    name : str
        Thread name (shows in debuggers and ``threading.enumerate()``).

    Yields
    ------
    The items of ``items``, in order.
    """
    depth = int(check_positive_int("depth", depth))  # type: ignore[arg-type]
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                q.put((kind, value), timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put("item", item):
                    break
            else:
                put("done", None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put("error", exc)
        finally:
            close = getattr(iterator, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()  # a generator is closed on the thread that ran it

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
            value = None  # drop the reference before waiting for the next item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()  # wake a producer blocked on a full queue
        thread.join()


# ====================================================================================
# Writing behind
# ====================================================================================
class BackgroundWriter:
    """Apply ``write(item)`` to items in order on a writer thread.

    :meth:`put` blocks while ``maxsize`` items wait, so a slow writer slows the
    producer instead of piling up memory. The first exception raised by ``write``
    stops the writer: later items are dropped, and :meth:`put` and :meth:`close`
    re-raise it (with :attr:`failed_item` telling which item failed).

    Parameters
    ----------
    write : callable
        Called once per item, on the writer thread, in ``put`` order.
    maxsize : int, default=2
        Items waiting to be written.
    name : str
        Thread name.
    """

    def __init__(
        self, write: Callable[[Any], None], *, maxsize: int = 2, name: str = "transferkit-writer"
    ) -> None:
        self._write = write
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        self.failed_item: Any = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            last, item = self._queue.get()
            if last:
                return
            if self.error is not None:
                continue  # failed: drop the rest, keep draining so put() never blocks
            try:
                self._write(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the producer
                self.error, self.failed_item = exc, item

    def put(self, item: Any) -> None:
        """Queue ``item`` for writing; raise the writer's error if it has failed."""
        if self.error is not None:
            raise self.error
        self._queue.put((False, item))

    def close(self) -> None:
        """Write every queued item, stop the thread; raise the writer's error if any."""
        if not self._closed:
            self._closed = True
            self._queue.put((True, None))
            self._thread.join()
        if self.error is not None:
            raise self.error

    @property
    def failed(self) -> bool:
        """Whether a write raised."""
        return self.error is not None


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
        n = len(self)
        if isinstance(index, int | np.integer) and not isinstance(index, bool):
            i = int(index) + (n if index < 0 else 0)
            if not 0 <= i < n:
                raise InvalidInputError(f"index {int(index)} is out of range for {n} images.")
            return self._range(i, i + 1)[0]
        if isinstance(index, slice) and index.step in (None, 1):
            start, stop, _ = index.indices(n)
            return self._range(start, max(start, stop))
        raise InvalidTypeError(
            "an ImageStream is read in order: index it with an int or a contiguous slice; "
            f"received {describe(index)}."
        )

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


def _unused_fn(start: int, stop: int) -> Any:  # pragma: no cover - from_batches streams
    raise NotImplementedError


# ====================================================================================
# bfloat16
# ====================================================================================
def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), on Linux.

    Elsewhere (or if ``/proc/cpuinfo`` is unreadable) this returns ``False``; bfloat16
    still works there, emulated and usually slower than float32.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


@contextlib.contextmanager
def keras_dtype_policy(dtype: str) -> Iterator[None]:
    """Build Keras layers under the policy for ``dtype`` (one of :data:`COMPUTE_DTYPES`).

    Layers created inside the block compute in ``dtype`` (``"mixed_bfloat16"``: float32
    variables, bfloat16 computation); the previous global policy is restored on exit.
    """
    if dtype == "float32":
        yield
        return
    from ._lazy import import_keras

    keras = import_keras()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
