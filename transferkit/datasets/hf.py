"""Hugging Face ``datasets.Dataset`` of images, read as a transferkit image source.

:func:`from_hf_dataset` wraps a (non-streaming) ``datasets.Dataset`` with an image
column in an :class:`HFImageDataset`: the image-source protocol every transferkit
consumer accepts (``shape``, ``dtype``, ``len()``, indexing, ``iter_batches(batch_size,
start=0)``, ``fingerprint()``, ``labels``, ``class_names``). Importing this module does
not import ``datasets``; it is imported when :func:`from_hf_dataset` is called (install
it with ``pip install "transferkit[hf]"``).

Columns:

* the image column is the one whose feature is ``datasets.Image`` (or
  ``image_column``);
* labels (``int64``, shape ``(n,)``) come from the single ``ClassLabel`` column, else
  from an integer column named ``label`` (then ``labels``), or from ``label_column``;
  ``class_names`` are the ``ClassLabel``'s names, None for a plain integer column.
  A ``ClassLabel`` value of -1 (HF's "no label") is kept as -1;
* other columns are ignored, and the dataset's format and transform
  (``set_format``, ``set_transform``) do not apply: images are read from the Arrow
  table as stored.

Pixels: the encoded bytes of each row (or the file its ``path`` names, for rows
stored as a path only, as ``load_dataset("imagefolder")`` makes them) are decoded by
transferkit, not by ``datasets``, with the rules of
:mod:`transferkit.datasets.images` (:func:`~transferkit.datasets.images.to_rgb_array`):
RGB ``uint8``, EXIF orientation applied, 16-bit grayscale keeps its 8 high bits, a
palette with transparency goes through RGBA, resized to ``image_size`` with the
``interpolation`` filter. So an image gives the same pixels here as in an image
folder. With ``image_size=None`` every image must have the first image's size.
Rows are read by index range, so any range (a resumed extraction, a shard) is as
cheap as the first.

:meth:`HFImageDataset.fingerprint` (format version 1) hashes, with BLAKE2b-256, a
JSON header (format ``"transferkit.HFImageDataset"``, version, decode recipe,
``image_size``, ``interpolation``, ``n``, ``class_names``, whether there are labels)
followed, per row in order, by the length (8 bytes, little-endian) and bytes of the
encoded image (the file's bytes for a path-only row) and, with labels, the label
(8 bytes, little-endian, signed). Invariants:

* it depends only on that content: not on the dataset's own ``_fingerprint``, the
  column names, other columns, file paths, or how the table is stored (in memory,
  memory-mapped, path-only rows or embedded bytes), so ``save_to_disk`` /
  ``load_from_disk`` and ``load_dataset("imagefolder")`` before and after keep it;
* any changed byte of an encoded image, label, class name, the row order or
  selection, ``image_size`` or ``interpolation`` changes it; re-encoding the same
  pixels (another PNG encoder) changes it too;
* it costs one pass over the encoded bytes, without decoding, on the first call; the
  result is kept on the instance (a dataset is immutable; files behind path-only
  rows are assumed not to change while it is in use).

It is what the feature cache keys on, so any change to what goes into it invalidates
every cached feature file of a Hugging Face dataset: bump ``_FINGERPRINT_VERSION``
when the decoded pixels change.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import (
    check_positive_int,
    describe,
)
from ..exceptions import (
    ImageReadError,
    InvalidInputError,
    InvalidTypeError,
    MissingDependencyError,
)
from .image_folder import (
    check_fits_in_memory,
    normalize_image_size,
    normalize_interpolation,
)
from .images import to_rgb_array
from .on_demand import OnDemandImages, hash_file

__all__ = ["HFImageDataset", "from_hf_dataset"]

_FORMAT = "transferkit.HFImageDataset"
_FINGERPRINT_VERSION = 1
_DECODE_RECIPE = "pillow:exif_transpose:rgb"
_INSTALL_HINT = 'pip install "transferkit[hf]"'
#: Rows read from the Arrow table at a time while fingerprinting.
_HASH_ROWS = 256
_INTEGER_DTYPES = frozenset(
    {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
)


# --------------------------------------------------------------------------------------
# Recognising datasets objects without importing `datasets`
# --------------------------------------------------------------------------------------


def _hf_class(obj: Any) -> str | None:
    """Name of the ``datasets`` class ``obj`` is an instance of (by its MRO), or None."""
    for cls in type(obj).__mro__:
        module = getattr(cls, "__module__", "") or ""
        if module.split(".")[0] == "datasets" and cls.__name__ in (
            "Dataset",
            "DatasetDict",
            "IterableDataset",
            "IterableDatasetDict",
        ):
            return cls.__name__
    return None


def _import_datasets(received: Any) -> Any:
    try:
        import datasets
    except ImportError as err:
        raise MissingDependencyError(
            "from_hf_dataset reads Hugging Face datasets and needs the `datasets` package, "
            f"which is not installed: {_INSTALL_HINT}. (`dataset` received "
            f"{describe(received)}.)"
        ) from err
    return datasets


def _feature_name(feature: Any) -> str:
    text = repr(feature)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------------------
# The image source
# --------------------------------------------------------------------------------------


class HFImageDataset(OnDemandImages):
    """Images of a Hugging Face ``datasets.Dataset``, decoded on demand as uint8 NHWC.

    Made by :func:`from_hf_dataset`; nothing is decoded until asked. It duck-types as
    a read-only image array (:class:`~transferkit.datasets.on_demand.OnDemandImages`):
    ``len(ds)``, ``ds.shape == (n, H, W, 3)``, ``ds.dtype == uint8``, ``ds[i]``,
    ``ds[a:b]``, ``ds[[i, j]]`` and ``np.asarray(ds)``; :meth:`iter_batches` streams
    it, and :meth:`fingerprint` identifies its content for the feature cache. It
    pickles (with the dataset: an in-memory table travels whole, a memory-mapped one
    by its file names), so multi-process extraction can read it in other processes.

    Attributes
    ----------
    image_column : str
        Column the images are read from.
    label_column : str or None
        Column the labels were read from, or None.
    labels : numpy.ndarray or None
        ``int64`` label of each row, shape ``(n,)``, or None.
    class_names : list of str or None
        Class names (``ClassLabel`` names); label ``k`` is ``class_names[k]``.
    image_size, interpolation, batch_size
        As for :class:`~transferkit.datasets.on_demand.OnDemandImages`.
    """

    def __init__(
        self,
        source: Any,
        image_column: str,
        label_column: str | None,
        labels: np.ndarray | None,
        class_names: list[str] | None,
        image_size: tuple[int, int] | None,
        interpolation: str,
        batch_size: int,
    ) -> None:
        super().__init__(image_size, interpolation, batch_size)
        self._source = source  # only the used columns, images undecoded, no format
        self.image_column = image_column
        self.label_column = label_column
        self._labels = labels  # as read from the dataset: what the fingerprint covers
        self.labels = None if labels is None else labels.copy()
        self.class_names = class_names
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self._source)

    def __repr__(self) -> str:
        classes = None if self.class_names is None else len(self.class_names)
        return (
            f"HFImageDataset(n={len(self)}, image_column='{self.image_column}', "
            f"label_column={self.label_column!r}, classes={classes}, "
            f"image_size={self.image_size}, interpolation='{self.interpolation}')"
        )

    # -- fingerprint -----------------------------------------------------------------------

    def fingerprint(self) -> str:
        """Stable hex digest of the encoded images, labels and decode settings.

        See the module docstring for the format and its invariants. The first call
        reads every row's encoded bytes once (without decoding); the result is kept.

        Returns
        -------
        str
            64 hexadecimal characters (BLAKE2b, 256 bits).

        Raises
        ------
        ImageReadError
            A row holds no image, or the file of a path-only row cannot be read.
        """
        if self._fingerprint is None:
            self._fingerprint = self._compute_fingerprint()
        return self._fingerprint

    def _compute_fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=32)
        n = len(self)
        labels = self._labels
        header = {
            "format": _FORMAT,
            "version": _FINGERPRINT_VERSION,
            "decode": _DECODE_RECIPE,
            "image_size": list(self.image_size) if self.image_size else None,
            "interpolation": self.interpolation,
            "n": n,
            "class_names": self.class_names,
            "labels": labels is not None,
        }
        digest.update(json.dumps(header, sort_keys=True).encode() + b"\0")
        for begin in range(0, n, _HASH_ROWS):
            stop = min(begin + _HASH_ROWS, n)
            entries = self._source[begin:stop][self.image_column]
            for i, entry in enumerate(entries, start=begin):
                data, path = self._parts(entry, i)
                if data is not None:
                    digest.update(len(data).to_bytes(8, "little"))
                    digest.update(data)
                else:
                    self._hash_file(digest, path, i)
                if labels is not None:
                    digest.update(int(labels[i]).to_bytes(8, "little", signed=True))
        return digest.hexdigest()

    def _hash_file(self, digest: Any, path: str, row: int) -> None:
        try:
            hash_file(digest, path)
        except OSError as err:
            raise ImageReadError(
                f"Could not read the image file '{path}' of row {row} (column "
                f"'{self.image_column}') to fingerprint the dataset: {err}. Check that it "
                "still exists and is readable, or embed the images in the dataset "
                "(`save_to_disk` stores their bytes)."
            ) from err

    # -- reading ---------------------------------------------------------------------------

    def _parts(self, entry: Any, row: int) -> tuple[bytes | None, str | None]:
        """``(bytes, path)`` of a row's undecoded image; bytes None means read ``path``."""
        data = entry.get("bytes") if isinstance(entry, dict) else None
        path = entry.get("path") if isinstance(entry, dict) else None
        if data is None and not path:
            raise ImageReadError(
                f"Row {row} of column '{self.image_column}' holds no image (neither bytes nor "
                "a path). Remove the row (e.g. `dataset.filter(...)`) before reading it."
            )
        return (bytes(data) if data is not None else None), path

    def _decode(self, entry: Any, row: int) -> np.ndarray:
        from PIL import Image

        data, path = self._parts(entry, row)
        try:
            opened = Image.open(io.BytesIO(data)) if data is not None else Image.open(path)
            with opened as image:
                return to_rgb_array(image, self.image_size, self._resample)
        except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, ...
            where = f" (file '{path}')" if data is None else ""
            raise ImageReadError(
                f"Could not decode the image in row {row} of column '{self.image_column}'"
                f"{where}: {type(err).__name__}: {err}. Replace or remove the row."
            ) from err

    def _entries(self, positions: list[int]) -> list[Any]:
        if not positions:
            return []
        first, last = positions[0], positions[-1]
        if last - first + 1 == len(positions) and positions == list(range(first, last + 1)):
            return list(self._source[first : last + 1][self.image_column])
        return list(self._source[positions][self.image_column])

    def _target_size(self) -> tuple[int, int]:
        if self.image_size is not None:
            return self.image_size
        if self._native_size is None:
            first = self._decode(self._entries([0])[0], 0)
            self._native_size = (int(first.shape[0]), int(first.shape[1]))
        return self._native_size

    def _read(self, positions: Any) -> np.ndarray:
        positions = [int(i) for i in positions]
        height, width = self._target_size()  # an empty read has the images' shape too
        check_fits_in_memory(len(positions), height, width)
        out = np.empty((len(positions), height, width, 3), dtype=np.uint8)
        step = max(1, self.batch_size)
        for begin in range(0, len(positions), step):
            chunk = positions[begin : begin + step]
            for k, (row, entry) in enumerate(zip(chunk, self._entries(chunk), strict=True)):
                image = self._decode(entry, row)
                if image.shape[:2] != (height, width):
                    raise InvalidInputError(
                        "With `image_size=None` all images must have the same size, but the "
                        f"image in row {row} is {image.shape[0]}x{image.shape[1]} (height x "
                        f"width) while the one in row 0 is {height}x{width}. Pass "
                        "`image_size=(height, width)` to resize them."
                    )
                out[begin + k] = image
        return out


# --------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------


def _is_integer_feature(datasets: Any, feature: Any) -> bool:
    return isinstance(feature, datasets.ClassLabel) or (
        isinstance(feature, datasets.Value) and str(feature.dtype) in _INTEGER_DTYPES
    )


def _resolve_image_column(datasets: Any, features: Any, image_column: str | None) -> str:
    columns = list(features)
    image_columns = [c for c, f in features.items() if isinstance(f, datasets.Image)]
    hint = (
        "If a column holds image paths or encoded bytes, cast it first: "
        "`dataset = dataset.cast_column(name, datasets.Image())`."
    )
    if image_column is None:
        if len(image_columns) == 1:
            return image_columns[0]
        if not image_columns:
            raise InvalidInputError(
                "`dataset` has no image column (a column whose feature is `datasets.Image`); "
                f"its columns are {columns}. {hint} Then pass `image_column=name`."
            )
        raise InvalidInputError(
            f"`dataset` has several image columns {image_columns}; pass `image_column=` to "
            f"choose one (its columns are {columns})."
        )
    if not isinstance(image_column, str):
        raise InvalidTypeError(
            f"`image_column` must be a column name (str) or None; received "
            f"{describe(image_column)}."
        )
    if image_column not in features:
        raise InvalidInputError(
            f"`image_column` {image_column!r} is not a column of `dataset`; its columns are "
            f"{columns} (image columns: {image_columns})."
        )
    if not isinstance(features[image_column], datasets.Image):
        raise InvalidInputError(
            f"`image_column` {image_column!r} is not an image column: its feature is "
            f"{_feature_name(features[image_column])}, not `datasets.Image`. Image columns: "
            f"{image_columns}; columns: {columns}. {hint}"
        )
    return image_column


def _resolve_label_column(
    datasets: Any, features: Any, label_column: Any, image_column: str
) -> str | None:
    columns = list(features)
    if label_column is None:
        return None
    if not isinstance(label_column, str):
        raise InvalidTypeError(
            f"`label_column` must be a column name (str), 'auto' or None; received "
            f"{describe(label_column)}."
        )
    if label_column == "auto":
        class_labels = [c for c, f in features.items() if isinstance(f, datasets.ClassLabel)]
        if len(class_labels) == 1:
            return class_labels[0]
        for name in ("label", "labels"):
            if name in features and _is_integer_feature(datasets, features[name]):
                return name
        if class_labels:
            warnings.warn(
                f"`label_column='auto'` found several ClassLabel columns {class_labels} and "
                "no integer 'label' column, so the images are read without labels; pass "
                "`label_column=` to choose one.",
                UserWarning,
                stacklevel=3,
            )
        return None
    if label_column not in features:
        raise InvalidInputError(
            f"`label_column` {label_column!r} is not a column of `dataset`; its columns are "
            f"{columns}. Pass one of them, 'auto' or None (no labels)."
        )
    if label_column == image_column or not _is_integer_feature(datasets, features[label_column]):
        raise InvalidInputError(
            f"`label_column` {label_column!r} must hold integer labels (a ClassLabel or an "
            f"integer Value column); its feature is {_feature_name(features[label_column])}. "
            "For a column of class-name strings, use "
            f"`dataset.class_encode_column({label_column!r})` first."
        )
    return label_column


def _read_labels(dataset: Any, label_column: str) -> np.ndarray:
    table = dataset.select_columns([label_column]).with_format("arrow")[:]
    column = table.column(label_column)
    if column.null_count:
        first = int(np.flatnonzero(np.asarray(column.is_null()))[0])
        raise InvalidInputError(
            f"`label_column` {label_column!r} has missing labels (first in row {first}); "
            "fill or remove those rows, or pass `label_column=None`."
        )
    labels = np.asarray(column.to_numpy(), dtype=np.int64)
    missing = int(np.count_nonzero(labels == -1))  # ClassLabel's "no label"
    if missing:
        if missing < len(labels):
            warnings.warn(
                f"`label_column` {label_column!r}: {missing} of {len(labels)} rows have no "
                "label (-1), so no labels are kept; select the labelled rows "
                "(`ds.filter(lambda r: r[...] >= 0)`) to keep them.", UserWarning, stacklevel=3)
        return None  # type: ignore[return-value]
    if labels.size and labels.min() < -1:
        raise InvalidInputError(
            f"`label_column` {label_column!r} holds negative labels (down to "
            f"{int(labels.min())}); labels must be class indices >= 0.")
    return labels


def from_hf_dataset(
    dataset: Any,
    *,
    image_column: str | None = None,
    label_column: str | None = "auto",
    image_size: int | Sequence[int] | None = None,
    interpolation: str = "bilinear",
    batch_size: int = 256,
) -> HFImageDataset:
    """Read a Hugging Face ``datasets.Dataset`` of images as a transferkit image source.

    Nothing is decoded here (only the label column is read): the returned dataset
    decodes each image on demand, from the bytes stored in the Arrow table (or the
    file a row's path names), with transferkit's rules (see
    :mod:`transferkit.datasets.images`): RGB ``uint8``, EXIF orientation applied,
    resized to ``image_size`` with Pillow. The dataset's own format and transforms
    are not applied.

    Parameters
    ----------
    dataset : datasets.Dataset
        One split (``dataset_dict["train"]``), in memory or memory-mapped; streaming
        (``IterableDataset``) datasets are not supported.
    image_column : str, optional
        Column of images; by default the single column whose feature is
        ``datasets.Image``.
    label_column : str or "auto" or None, default "auto"
        Column of integer labels. ``"auto"``: the single ``ClassLabel`` column, else
        an integer column named ``"label"`` (then ``"labels"``), else no labels (a
        warning says so when several ``ClassLabel`` columns made the choice
        ambiguous). None: no labels.
    image_size : int or (height, width) or None, default None
        Size images are resized to; an int means a square. None keeps each
        image's size, which then must be the same for all images.
    interpolation : {"bilinear", "nearest", "bicubic", "lanczos", "box", "hamming"}
        Pillow resampling filter used when resizing (Pillow antialiases when
        shrinking).
    batch_size : int, default 256
        Default batch size of :meth:`HFImageDataset.iter_batches`.

    Returns
    -------
    HFImageDataset
        The images, with ``labels`` (``int64``) and ``class_names`` (the
        ``ClassLabel``'s names) when there is a label column. Call ``.load()`` for
        ``(x, y)`` arrays or ``.iter_batches()`` to stream.

    Raises
    ------
    MissingDependencyError
        ``datasets`` is not installed (``pip install "transferkit[hf]"``).
    InvalidTypeError
        ``dataset`` is not a ``datasets.Dataset`` (or is a streaming one), or an
        argument has the wrong type.
    InvalidInputError
        ``dataset`` is a ``DatasetDict`` (pick a split), is empty, or the image or
        label column cannot be found or is not of the right kind.
    ImageReadError
        Raised later, while reading, for a row whose image cannot be decoded (named).

    Examples
    --------
    >>> from datasets import load_dataset  # doctest: +SKIP
    >>> ds = from_hf_dataset(load_dataset("beans", split="train"), image_size=224)  # doctest: +SKIP
    >>> ds.shape, ds.class_names  # doctest: +SKIP
    ((1034, 224, 224, 3), ['angular_leaf_spot', 'bean_rust', 'healthy'])
    >>> features = cache.extract(vgg, ds, lazy=True)  # doctest: +SKIP
    """
    datasets = _import_datasets(dataset)
    kind = _hf_class(dataset)
    if kind == "DatasetDict":
        splits = list(dataset.keys())
        example = f"dataset[{splits[0]!r}]" if splits else "dataset['train']"
        raise InvalidInputError(
            f"`dataset` is a DatasetDict with the splits {splits}; pass one split, e.g. "
            f"`{example}`."
        )
    if kind in ("IterableDataset", "IterableDatasetDict"):
        raise InvalidTypeError(
            f"`dataset` is a streaming {kind}, which is not supported: transferkit reads "
            "images by index (to resume an extraction, to split it into shards). Load it "
            "without `streaming=True`, or build a `datasets.Dataset` with "
            "`datasets.Dataset.from_generator(...)`."
        )
    if kind != "Dataset":
        raise InvalidTypeError(
            "`dataset` must be a Hugging Face `datasets.Dataset` (one split, e.g. "
            f"`load_dataset(name, split='train')`); received {describe(dataset)}."
        )
    size = normalize_image_size(image_size)
    if size is not None:
        check_fits_in_memory(1, *size)
    batch = int(check_positive_int("batch_size", batch_size))  # type: ignore[arg-type]
    interpolation = normalize_interpolation(interpolation)
    if image_column is not None and not isinstance(image_column, str):
        raise InvalidTypeError(
            f"`image_column` must be a column name (str) or None; received "
            f"{describe(image_column)}."
        )
    features = dataset.features
    image_col = _resolve_image_column(datasets, features, image_column)
    label_col = _resolve_label_column(datasets, features, label_column, image_col)
    if len(dataset) == 0:
        raise InvalidInputError("`dataset` has no rows; pass a dataset with at least one image.")
    labels = class_names = None
    if label_col is not None:
        labels = _read_labels(dataset, label_col)
        feature = features[label_col]
        if isinstance(feature, datasets.ClassLabel):
            class_names = [str(name) for name in feature.names]
    if labels is None:  # an unlabelled split (every label -1): read as images alone
        label_col = None
    used = [image_col] + ([label_col] if label_col is not None else [])
    source = (
        dataset.select_columns(used)
        .cast_column(image_col, datasets.Image(decode=False))
        .with_format(None)
    )
    return HFImageDataset(
        source, image_col, label_col, labels, class_names, size, interpolation, batch
    )
