"""Keras' data pipelines as image sources: ``tf.data.Dataset`` and ``keras.utils.PyDataset``.

:func:`from_keras_data` wraps either in a :class:`KerasDataSource`, which every
transferkit consumer accepts like an image array (``shape``, ``dtype``,
``iter_batches(batch_size, start=0)``, ``fingerprint()``, ``labels``,
``class_names``). :func:`transferkit.datasets.as_image_source` does it for you
wherever images are taken, so ``cache.extract(ext, dataset)`` just works.

Elements (what the pipeline yields):

* images alone, or ``(images, labels)`` / ``(images, labels, sample_weights)`` tuples,
  or dicts with an ``"image"`` (or ``"images"``) and optionally a ``"label"`` (or
  ``"labels"``) key, as ``tfds`` gives them;
* batched ``(b, height, width, 3)`` or not ``(height, width, 3)``; every image has the
  same size; ``uint8``, or floats holding values in [0, 255] (what
  ``keras.utils.image_dataset_from_directory`` yields);
* labels: integers, integer-valued floats (``label_mode="binary"``), one-hot rows
  (``label_mode="categorical"``, turned to indices) or strings (turned to indices into
  ``class_names``, sorted unless given). The dataset's ``class_names`` attribute
  (set by ``image_dataset_from_directory``) is kept with the labels.

Passes and keys. A pipeline cannot be keyed before it is read, so the first use of
``shape``, ``labels`` or ``fingerprint()`` reads it once (the *scan*), holding one
batch at a time: it counts the images, checks their shape and values, keeps the labels
and a 16-byte BLAKE2b digest of every image. Every later pass (the extraction, a
resumed extraction, ``np.asarray``) reads the pipeline again from its start and checks
each image against its digest *before* handing it on; a pipeline that yields other
images or another order (``shuffle`` reshuffling each iteration, random augmentation,
a changed folder) raises :class:`~transferkit.exceptions.InvalidInputError` at the
first differing image, so nothing from it is ever written into a cache entry, and a
changed pipeline gets another fingerprint, hence another entry, never a mixed one.

Fingerprint, format version 1: BLAKE2b-256 of a JSON header (format name, version, the
image shape and dtype, ``n``, ``class_names``) followed by every image's digest in
order and, when there are labels, their ``int64`` bytes. It covers content and order,
not how the pipeline was written: two pipelines yielding the same images share
features. Bump ``_FINGERPRINT_VERSION`` if what is hashed changes.

A ``tf.data.Dataset`` lives in this process: it cannot be pickled, so process-based
extraction (``extract_distributed`` over Dask) refuses it; a ``PyDataset`` pickles if
its class does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .._validation import describe, format_bytes, memory_limit_bytes
from ..exceptions import InvalidInputError, InvalidTypeError
from .stream import read_in_order

__all__ = ["KerasDataSource", "from_keras_data", "is_keras_data"]

_FINGERPRINT_VERSION = 1
_DIGEST_BYTES = 16
_SCAN_BATCH = 256  # unbatched tf.data elements are read in batches of this many


def _class_in_mro(obj: Any, module_prefix: str, names: tuple[str, ...]) -> bool:
    return any(
        c.__name__ in names and c.__module__.startswith(module_prefix)
        for c in type(obj).__mro__
    )


def _is_tf_dataset(obj: Any) -> bool:
    return _class_in_mro(obj, "tensorflow", ("DatasetV2", "DatasetV1"))


def _is_py_dataset(obj: Any) -> bool:
    return _class_in_mro(obj, "keras", ("PyDataset",))


def is_keras_data(obj: Any) -> bool:
    """Whether ``obj`` is a ``tf.data.Dataset`` or a ``keras.utils.PyDataset``.

    Neither TensorFlow nor Keras is imported to tell.
    """
    return _is_tf_dataset(obj) or _is_py_dataset(obj)


# ====================================================================================
# Reading elements
# ====================================================================================
_IMAGE_KEYS = ("image", "images")
_LABEL_KEYS = ("label", "labels")


def _split_element(element: Any, kind: str, name: str) -> tuple[Any, Any]:
    """``(images, labels or None)`` of one element (spec or value) of the pipeline."""
    if isinstance(element, dict):
        image_key = next((k for k in _IMAGE_KEYS if k in element), None)
        if image_key is None:
            raise InvalidInputError(
                f"`{name}`: the {kind} yields dicts with keys {sorted(element)}; transferkit "
                f"reads the images from an 'image' key (and labels from 'label'). Map it to "
                "(image, label) pairs, e.g. `ds.map(lambda d: (d['img'], d['y']))`."
            )
        label_key = next((k for k in _LABEL_KEYS if k in element), None)
        return element[image_key], (element[label_key] if label_key else None)
    if isinstance(element, tuple | list):
        if not 1 <= len(element) <= 3:
            raise InvalidInputError(
                f"`{name}`: the {kind} yields tuples of {len(element)} items; expected "
                "images, (images, labels) or (images, labels, sample_weights)."
            )
        return element[0], (element[1] if len(element) > 1 else None)
    return element, None


def _check_tf_spec(dataset: Any, name: str) -> int:
    """Check the dataset's element spec and size before reading it.

    Returns the images' rank: 4 (batched), 3 (single images of a known size) or -3
    (single images whose size the spec leaves open, read one at a time so that a
    differing size gets transferkit's error, not TensorFlow's batching error).
    """
    import tensorflow as tf

    if int(dataset.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        raise InvalidInputError(
            f"`{name}` is an infinite tf.data.Dataset (made with `repeat()`); transferkit "
            "reads every image once per pass, so pass a finite one: drop `.repeat()`, or "
            "`.take(n)` the images you mean."
        )
    image_spec, _ = _split_element(dataset.element_spec, "tf.data.Dataset", name)
    if not isinstance(image_spec, tf.TensorSpec):
        raise InvalidTypeError(
            f"`{name}`: the tf.data.Dataset's images must be dense tensors; received "
            f"{describe(image_spec)}. Resize ragged images in the pipeline, e.g. "
            "`ds.map(lambda x, y: (tf.image.resize(x, (224, 224)), y))`."
        )
    shape, dtype = image_spec.shape, image_spec.dtype
    rank = shape.rank
    if rank not in (3, 4) or shape[-1] not in (3, None):
        raise InvalidInputError(
            f"`{name}`: the tf.data.Dataset's images must have shape (height, width, 3), or "
            f"(batch, height, width, 3) when batched; received element shape {shape}."
        )
    if not (dtype == tf.uint8 or dtype.is_floating):
        raise InvalidTypeError(
            f"`{name}`: the tf.data.Dataset's images must be uint8, or floats with values "
            f"in [0, 255]; received dtype {dtype.name}."
        )
    if rank == 3 and None in (shape[0], shape[1]):
        return -3
    return int(rank)


def _tf_batches(dataset: Any, name: str) -> Iterator[tuple[Any, Any]]:
    rank = _check_tf_spec(dataset, name)
    if rank == -3:
        for element in dataset.as_numpy_iterator():
            images, labels = _split_element(element, "tf.data.Dataset", name)
            yield np.asarray(images)[None], (None if labels is None else np.asarray(labels)[None])
        return
    batched = dataset if rank == 4 else dataset.batch(_SCAN_BATCH)
    for element in batched.as_numpy_iterator():
        yield _split_element(element, "tf.data.Dataset", name)


def _py_dataset_batches(dataset: Any, name: str) -> Iterator[tuple[Any, Any]]:
    count = getattr(dataset, "num_batches", None)
    if count is None:
        raise InvalidInputError(
            f"`{name}` is a PyDataset without a length (`num_batches` is None: an infinite "
            "one); give it `__len__` so transferkit knows where the images end."
        )
    for i in range(int(count)):
        yield _split_element(dataset[i], "PyDataset", name)


def _label_array(raw: Any, n: int, kind: str, name: str) -> np.ndarray:
    """A batch's labels as a 1-D array (integers, or strings to be indexed later)."""
    arr = np.asarray(raw)
    if arr.dtype.kind in "SUO":
        arr = np.asarray([v.decode() if isinstance(v, bytes) else str(v)
                          for v in arr.reshape(-1)], dtype=object)
    elif arr.ndim == 2 and arr.shape[1] > 1:  # one-hot rows
        arr = np.argmax(arr, axis=1)
    else:
        arr = arr.reshape(-1) if arr.ndim == 2 and arr.shape[1] == 1 else arr
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise InvalidInputError(
                    f"`{name}`: the {kind}'s labels must be class indices, one-hot rows or "
                    f"names; received non-integer values such as {arr[arr != np.round(arr)][:3]}."
                )
            arr = arr.astype(np.int64)
        elif arr.dtype.kind not in "iub":
            raise InvalidTypeError(
                f"`{name}`: the {kind}'s labels must be integers, one-hot rows or strings; "
                f"received dtype {arr.dtype}."
            )
    if arr.shape != (n,):
        raise InvalidInputError(
            f"`{name}`: the {kind} yielded {n} images with labels of shape "
            f"{np.asarray(raw).shape}; expected one label per image."
        )
    return arr


class _Scan:
    """What one full pass learned: size, image shape and dtype, digests, labels."""

    def __init__(self) -> None:
        self.n = 0
        self.image_shape: tuple[int, int, int] | None = None
        self.dtype: np.dtype | None = None
        self.digests: list[bytes] = []
        self.labels: list[np.ndarray] = []
        self.has_labels: bool | None = None


def _digests(images: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(memoryview(np.ascontiguousarray(im)).cast("B"),
                            digest_size=_DIGEST_BYTES).digest() for im in images]


# ====================================================================================
# The source
# ====================================================================================
class KerasDataSource:
    """A ``tf.data.Dataset`` or ``keras.utils.PyDataset`` as a transferkit image source.

    Made by :func:`from_keras_data` (or implicitly by
    :func:`~transferkit.datasets.as_image_source`). It duck-types as a read-only image
    array: ``len()``, ``shape``, ``dtype``, ``iter_batches``, ``fingerprint()``,
    ``labels``, ``class_names`` and ``np.asarray(source)``. The pipeline is read once
    to learn its size and key (see the module docstring), then once per use, each
    image checked against that first pass.

    Attributes
    ----------
    dataset : tf.data.Dataset or keras.utils.PyDataset
        The wrapped pipeline.
    kind : str
        ``"tf.data.Dataset"`` or ``"PyDataset"``.
    """

    ndim = 4

    def __init__(self, dataset: Any, *, class_names: Sequence[str] | None = None,
                 name: str = "images") -> None:
        if _is_tf_dataset(dataset):
            self.kind = "tf.data.Dataset"
            _check_tf_spec(dataset, name)  # refuse a wrong spec before any reading
        elif _is_py_dataset(dataset):
            self.kind = "PyDataset"
        else:
            raise InvalidTypeError(
                f"`{name}` must be a tf.data.Dataset or a keras.utils.PyDataset; received "
                f"{describe(dataset)}."
            )
        if class_names is None:
            found = getattr(dataset, "class_names", None)
            class_names = list(found) if isinstance(found, list | tuple) else None
        elif isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
            raise InvalidTypeError(
                f"`class_names` must be a list of strings or None; received "
                f"{describe(class_names)}."
            )
        self.dataset = dataset
        self._given_class_names = list(class_names) if class_names is not None else None
        self._name = name
        self._scan: _Scan | None = None
        self._labels: np.ndarray | None = None
        self._class_names: list[str] | None = None
        self._fingerprint: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        if self.kind == "tf.data.Dataset":
            raise InvalidTypeError(
                f"`{self._name}`: a tf.data.Dataset cannot be sent to another process; "
                "extract it in this process (FeatureCache.extract, or extract_distributed "
                "without a Dask client), or save its images to files first "
                "(e.g. an image folder, or `tf.data.Dataset.save` and a PyDataset over it)."
            )
        return dict(self.__dict__)

    # -- reading ------------------------------------------------------------------------
    def _raw_batches(self) -> Iterator[tuple[Any, Any]]:
        if self.kind == "tf.data.Dataset":
            return _tf_batches(self.dataset, self._name)
        return _py_dataset_batches(self.dataset, self._name)

    def _checked(self, raw: Any, offset: int, scan: _Scan) -> np.ndarray:
        images = np.asarray(raw)
        if images.ndim == 3 and self.kind == "PyDataset":
            raise InvalidInputError(
                f"`{self._name}`: the PyDataset's item {offset} is one image of shape "
                f"{images.shape}; a PyDataset yields batches (b, height, width, 3)."
            )
        if images.ndim != 4 or images.shape[-1] != 3:
            raise InvalidInputError(
                f"`{self._name}`: the {self.kind} yielded images of shape {images.shape} at "
                f"image {offset}; expected batches of shape (b, height, width, 3)."
            )
        if not (images.dtype == np.uint8 or images.dtype.kind == "f"):
            raise InvalidTypeError(
                f"`{self._name}`: the {self.kind} yielded images of dtype {images.dtype}; "
                "expected uint8, or floats with values in [0, 255]."
            )
        if scan.image_shape is not None and (
            images.shape[1:] != scan.image_shape or images.dtype != scan.dtype
        ):
            raise InvalidInputError(
                f"`{self._name}`: the {self.kind} yielded images of shape "
                f"{images.shape[1:]} and dtype {images.dtype} at image {offset}, after "
                f"{scan.image_shape} and {scan.dtype}; every image must have the same size "
                "and dtype: resize them in the pipeline (e.g. `tf.image.resize`)."
            )
        if images.dtype.kind == "f" and len(images):
            low, high = float(np.min(images)), float(np.max(images))
            if not (np.isfinite(low) and np.isfinite(high) and low >= 0 and high <= 255):
                raise InvalidInputError(
                    f"`{self._name}`: the {self.kind}'s float images must hold values in "
                    f"[0, 255] (raw pixels, as image_dataset_from_directory gives them); "
                    f"received values in [{low:g}, {high:g}] around image {offset}. Remove the "
                    "pipeline's rescaling: each backbone applies its own preprocessing."
                )
        return images

    def _run_scan(self) -> _Scan:
        if self._scan is not None:
            return self._scan
        scan = _Scan()
        for raw_images, raw_labels in self._raw_batches():
            images = self._checked(raw_images, scan.n, scan)
            if scan.image_shape is None:
                scan.image_shape, scan.dtype = images.shape[1:], images.dtype
            has = raw_labels is not None
            if scan.has_labels is None:
                scan.has_labels = has
            elif scan.has_labels != has:
                raise InvalidInputError(
                    f"`{self._name}`: the {self.kind} yields labels with some batches and not "
                    "others.")
            if has:
                scan.labels.append(_label_array(raw_labels, len(images), self.kind,
                                                self._name))
            scan.digests.extend(_digests(images))
            scan.n += len(images)
        if scan.n == 0:
            raise InvalidInputError(f"`{self._name}`: the {self.kind} yields no images.")
        self._scan = scan
        self._labels, self._class_names = self._resolve_labels(scan)
        return scan

    def _resolve_labels(self, scan: _Scan) -> tuple[np.ndarray | None, list[str] | None]:
        names = self._given_class_names
        if not scan.has_labels:
            return None, names
        raw = np.concatenate(scan.labels)
        if raw.dtype == object:  # label names
            known = names if names is not None else sorted(set(raw.tolist()))
            index = {c: i for i, c in enumerate(known)}
            unknown = sorted(set(raw.tolist()) - set(index))
            if unknown:
                raise InvalidInputError(
                    f"`class_names` must list every label the {self.kind} yields; missing "
                    f"{unknown[:10]}."
                )
            return np.asarray([index[v] for v in raw.tolist()], dtype=np.int64), list(known)
        labels = raw.astype(np.int64)
        if labels.min() < 0 or (names is not None and labels.max() >= len(names)):
            raise InvalidInputError(
                f"`{self._name}`: the {self.kind}'s labels must be in 0.."
                f"{(len(names) - 1) if names is not None else 'n_classes - 1'}; received "
                f"values from {labels.min()} to {labels.max()}."
            )
        return labels, names

    # -- the image-source protocol --------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(n, height, width, 3)``; reading it the first time scans the pipeline."""
        scan = self._run_scan()
        return (scan.n, *scan.image_shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        """The images' dtype (``uint8`` or a float dtype)."""
        return self._run_scan().dtype  # type: ignore[return-value]

    @property
    def labels(self) -> np.ndarray | None:
        """``int64`` labels, one per image, or None when the pipeline yields none."""
        self._run_scan()
        return self._labels

    @property
    def class_names(self) -> list[str] | None:
        """Class names (label ``k`` is ``class_names[k]``), or None when unknown."""
        self._run_scan()
        return self._class_names

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        size = f"n={self._scan.n}, " if self._scan is not None else ""
        state = "scanned" if self._scan is not None else "not read yet"
        return f"KerasDataSource({self.kind}, {size}{state})"

    def fingerprint(self) -> str:
        """BLAKE2b-256 of the images' content and order (and labels); see the module docs."""
        if self._fingerprint is None:
            scan = self._run_scan()
            digest = hashlib.blake2b(digest_size=32)
            header = {
                "format": "transferkit.KerasDataSource",
                "version": _FINGERPRINT_VERSION,
                "image_shape": list(scan.image_shape),  # type: ignore[arg-type]
                "dtype": scan.dtype.str,  # type: ignore[union-attr]
                "n": scan.n,
                "class_names": self._class_names,
            }
            digest.update(json.dumps(header, sort_keys=True).encode() + b"\0")
            for d in scan.digests:
                digest.update(d)
            if self._labels is not None:
                digest.update(np.ascontiguousarray(self._labels, dtype="<i8").tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def iter_batches(self, batch_size: int, start: int = 0) -> Iterator[np.ndarray]:
        """Yield images ``start:`` in batches of ``batch_size``, each checked against the scan.

        Raises
        ------
        InvalidInputError
            The pipeline yields another image (or another number of images) than on its
            first pass: it is shuffled or randomly augmented on every pass.
        """
        from .._validation import check_positive_int

        bs = int(check_positive_int("batch_size", batch_size))  # type: ignore[arg-type]
        n = len(self)
        if isinstance(start, bool) or not isinstance(start, int | np.integer) \
                or not 0 <= start <= n:
            raise InvalidInputError(f"`start` must be an int in 0..{n}; received {start!r}.")
        return self._verified(bs, int(start))

    def _verified(self, bs: int, start: int) -> Iterator[np.ndarray]:
        scan = self._run_scan()
        pending: list[np.ndarray] = []
        held, position = 0, 0
        for raw_images, _ in self._raw_batches():
            images = self._checked(raw_images, position, scan)
            got = _digests(images)
            expected = scan.digests[position: position + len(images)]
            if got != expected:
                bad = position + next(
                    (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                    min(len(got), len(expected)))
                raise InvalidInputError(
                    f"`{self._name}`: the {self.kind} yielded a different image at position "
                    f"{bad} than on its first pass: it changes between passes (a `shuffle()` "
                    "that reshuffles each iteration, random augmentation in `map`, or files "
                    "changed meanwhile). transferkit reads a pipeline more than once (to key "
                    "the cache, to resume) and needs the same images in the same order: "
                    "shuffle with a seed and `reshuffle_each_iteration=False`, or not at all, "
                    "and augment after extraction (transferkit.views)."
                )
            begin, position = position, position + len(images)
            if position <= start:
                continue
            pending.append(images[max(0, start - begin):])
            held += len(pending[-1])
            while held >= bs or (position >= scan.n and held):
                block = np.concatenate(pending) if len(pending) > 1 else pending[0]
                out, rest = block[:bs], block[bs:]
                pending, held = ([rest] if len(rest) else []), len(rest)
                yield out
        if position != scan.n:
            raise InvalidInputError(
                f"`{self._name}`: the {self.kind} yielded {position} images on this pass and "
                f"{scan.n} on its first; it must yield the same images every time."
            )

    def __getitem__(self, index: Any) -> np.ndarray:
        return read_in_order(index, len(self), self._range, "a tf.data / PyDataset source")

    def _range(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        batches = self._verified(stop - start, start)
        try:
            return next(batches)
        finally:
            batches.close()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if copy is False:
            raise InvalidInputError(
                f"A {self.kind} cannot be viewed as an array without copying; use "
                "`np.asarray(source)`."
            )
        need = int(np.prod(self.shape)) * self.dtype.itemsize
        limit = memory_limit_bytes()
        if limit is not None and need > limit:
            raise InvalidInputError(
                f"`{self._name}`: reading all {len(self)} images of the {self.kind} needs "
                f"{format_bytes(need)} of memory, more than the {format_bytes(limit)} this "
                "machine has; stream it instead (FeatureCache.extract, iter_batches)."
            )
        images = self[:]
        return images if dtype is None else images.astype(dtype)

    def load(self) -> tuple[np.ndarray, np.ndarray | None]:
        """All images and their labels (or None) in memory."""
        return np.asarray(self), (None if self.labels is None else self.labels.copy())


def from_keras_data(dataset: Any, *, class_names: Sequence[str] | None = None) -> KerasDataSource:
    """Wrap a ``tf.data.Dataset`` or ``keras.utils.PyDataset`` as an image source.

    transferkit does this itself wherever it takes images; call it to pass
    ``class_names`` the pipeline has lost (``image_dataset_from_directory`` sets them,
    but ``ds.map(...)`` returns a dataset without them), or to scan once and reuse.

    Parameters
    ----------
    dataset : tf.data.Dataset or keras.utils.PyDataset
        Finite, yielding images or ``(images, labels)``, batched or not (see the module
        docstring for the element formats).
    class_names : list of str, optional
        Names of the label indices, or of the classes in order when labels are strings.

    Returns
    -------
    KerasDataSource

    Raises
    ------
    InvalidTypeError
        ``dataset`` is neither, or its images are not uint8 / float.
    InvalidInputError
        An infinite dataset, or an element shape that is not images.

    Examples
    --------
    >>> ds = keras.utils.image_dataset_from_directory(
    ...     "photos/", image_size=(224, 224))  # doctest: +SKIP
    >>> features = cache.extract(ext, ds)  # stores labels, class_names  # doctest: +SKIP
    """
    return KerasDataSource(dataset, class_names=class_names, name="dataset")
