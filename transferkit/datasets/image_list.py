"""Image lists: images named by a CSV file or a pandas DataFrame, decoded on demand.

Format:

* ``source`` is a CSV file or a DataFrame with one row per image. A CSV file is
  read as UTF-8 (a byte-order mark is ignored) with the :mod:`csv` module; its
  first row must be a header naming the columns; the delimiter is sniffed among
  ``,`` ``;`` tab and ``|`` (kept only when the header holds it), else ``,``;
  spaces after a delimiter and around header names are ignored, blank lines are
  skipped. A DataFrame is duck-typed (``.columns`` and ``df[column]``); pandas is
  never imported here.
* the path column is ``path_column``, else the first present of ``path``,
  ``filepath``, ``file_path``, ``file``, ``filename``, ``image``, ``image_path``
  (header names compared case-insensitively); other columns are ignored.
* the label column is ``label_column``; with ``"auto"``, ``label`` or ``class``
  (first present, case-insensitively) if any, else there are no labels; with
  None there are no labels (:attr:`ImageListDataset.labels` and
  ``class_names`` are None, ``load()`` returns ``(x, None)``).

Labels (an empty label cell is an error naming its row):

* when every label is an integer (an ``int``, an integral float, or a string of
  digits such as ``"3"``, as every CSV cell is), labels are those ``int64`` values, which must
  be >= 0; ``class_names`` is ``classes`` when given (it must have a name for
  every label) or None;
* otherwise labels are names (strings, stripped; other values through ``str``):
  ``class_names`` is ``classes`` in the order given (every name must be in it;
  classes without rows are allowed) or the sorted unique names; label ``k`` is
  ``class_names[k]``.

Paths (an empty path cell is an error naming its row): a relative path is
resolved against ``root``: by default the CSV file's folder, or for a DataFrame
the current directory at call time; ``root`` is made absolute, and ``~`` in a
cell is not expanded. Every file must exist when the list is loaded (one
``os.stat`` per row, nothing decoded); rows keep their order, and a file listed
twice is read twice.

Pixels are those of :func:`transferkit.datasets.images.read_image`, as for image
folders (:mod:`transferkit.datasets.image_folder`).

:meth:`ImageListDataset.fingerprint` (format version 1) hashes, with BLAKE2b-256,
a JSON header (format name ``"transferkit.ImageList"``, version, decode recipe,
class names or None, whether there are labels, image size, interpolation, count)
and then, per row in order: the file's POSIX path relative to ``root`` when the
file lies inside it (lexically), else its absolute path; its label (when there are
labels); and its size and bytes. So it is kept when the list and the images are
moved together, changes when a file's bytes, a label, the class names or the
order change, and never equals the fingerprint of an image folder holding the
same files (whose header names another format). The feature cache keys on it:
bump ``_FINGERPRINT_VERSION`` when the decoded pixels change.
"""

from __future__ import annotations

import csv
import math
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_positive_int, describe
from ..exceptions import DatasetNotFoundError, InvalidInputError, InvalidTypeError
from ._paths import as_path
from .image_folder import (
    ImageFolderDataset,
    check_fits_in_memory,
    normalize_image_size,
    normalize_interpolation,
)

__all__ = ["ImageListDataset", "load_image_list"]

_FINGERPRINT_VERSION = 1

#: Column names tried, in order and case-insensitively, when ``path_column=None``.
PATH_COLUMNS: tuple[str, ...] = (
    "path",
    "filepath",
    "file_path",
    "file",
    "filename",
    "image",
    "image_path",
)

#: Column names tried, in order and case-insensitively, when ``label_column="auto"``.
LABEL_COLUMNS: tuple[str, ...] = ("label", "class")

_DELIMITERS = ",;\t|"
_SNIFF_CHARS = 1 << 16
_INTEGER = re.compile(r"[+-]?[0-9]+")


class ImageListDataset(ImageFolderDataset):
    """Images named by a CSV file or a DataFrame, read on demand, as a uint8 NHWC array-like.

    Made by :func:`load_image_list`; nothing is decoded until asked. Like
    :class:`~transferkit.datasets.ImageFolderDataset` it duck-types as a read-only
    image array (``len(ds)``, ``ds.shape``, ``ds.dtype``, ``ds[i]``, ``ds[a:b]``,
    ``ds[[i, j]]``, ``np.asarray(ds)``), streams with :meth:`iter_batches`, splits
    with :meth:`subset` and pickles (for multi-process extraction).

    Attributes
    ----------
    source : pathlib.Path or None
        The CSV file, or None when the list came from a DataFrame.
    root : pathlib.Path
        Absolute folder relative paths were resolved against.
    class_names : list of str or None
        Class names (label ``k`` is ``class_names[k]``), or None for integer labels
        given without ``classes`` and for a list without labels.
    files : list of pathlib.Path
        Image files in row order.
    labels : numpy.ndarray or None
        ``int64`` label of each file, shape ``(n,)``; None without a label column.
    image_size, interpolation, batch_size
        As for :class:`~transferkit.datasets.on_demand.OnDemandImages`.
    """

    def __init__(
        self,
        root: Path,
        class_names: list[str] | None,
        files: list[Path],
        labels: np.ndarray | None,
        image_size: tuple[int, int] | None,
        interpolation: str,
        batch_size: int,
        source: Path | None = None,
    ) -> None:
        super().__init__(
            root=root,
            class_names=class_names,  # type: ignore[arg-type]
            files=files,
            labels=labels,  # type: ignore[arg-type]
            image_size=image_size,
            interpolation=interpolation,
            batch_size=batch_size,
        )
        self.source = source

    def __repr__(self) -> str:
        origin = "DataFrame" if self.source is None else f"'{self.source}'"
        if self.labels is None:
            classes = "unlabeled"
        elif self.class_names is None:
            classes = "integer labels"
        else:
            classes = f"classes={len(self.class_names)}"
        return (
            f"ImageListDataset(source={origin}, root='{self.root}', n={len(self.files)}, "
            f"{classes}, image_size={self.image_size}, interpolation='{self.interpolation}')"
        )

    def fingerprint(self) -> str:
        """Stable hex digest of everything that determines the pixels and labels.

        It covers the class names, whether there are labels, each file's path
        (relative to :attr:`root` when inside it, else absolute), its label and its
        bytes, plus ``image_size`` and ``interpolation``; see the module docstring.
        Every call reads all files again.

        Returns
        -------
        str
            64 hexadecimal characters (BLAKE2b, 256 bits).
        """
        return super().fingerprint()

    def _fingerprint_header(self) -> dict[str, Any]:
        # The folder's header (hashed with sorted keys) under this format's name and
        # version, plus whether there are labels.
        return {
            **super()._fingerprint_header(),
            "format": "transferkit.ImageList",
            "version": _FINGERPRINT_VERSION,
            "labeled": self.labels is not None,
        }

    def _fingerprint_path(self, file: Path) -> str:
        try:
            return file.relative_to(self.root).as_posix()
        except ValueError:  # outside root: named absolutely
            return file.absolute().as_posix()


def load_image_list(
    source: str | os.PathLike[str] | Any,
    *,
    root: str | os.PathLike[str] | None = None,
    path_column: str | None = None,
    label_column: str | None = "auto",
    classes: Sequence[str] | None = None,
    image_size: int | Sequence[int] | None = (224, 224),
    batch_size: int = 256,
    interpolation: str = "bilinear",
) -> ImageListDataset:
    """Index the images named by a CSV file or a pandas DataFrame of paths and labels.

    One row per image; the rows' order is kept. Nothing is decoded here (each file
    is only checked to exist): the returned dataset reads images on demand exactly
    as :func:`~transferkit.datasets.load_image_folder` does (RGB, EXIF orientation
    applied, resized to ``image_size`` with Pillow).

    Parameters
    ----------
    source : str, os.PathLike or pandas.DataFrame
        A CSV file (UTF-8, with a header row; delimiter ``,``, ``;``, tab or ``|``)
        or a DataFrame.
    root : str or os.PathLike, optional
        Folder relative paths are resolved against; default the CSV file's folder,
        or for a DataFrame the current directory.
    path_column : str, optional
        Column of image paths; by default the first of ``path``, ``filepath``,
        ``file_path``, ``file``, ``filename``, ``image``, ``image_path`` present
        (case-insensitively).
    label_column : str or None, default "auto"
        Column of labels; ``"auto"`` takes ``label`` or ``class`` if present
        (case-insensitively) and none otherwise; None reads no labels.
    classes : sequence of str, optional
        Class names in label order. With label names, every name must be listed;
        with integer labels, they name the labels (one name for each).
    image_size : int or (height, width) or None, default (224, 224)
        Size images are resized to; an int means a square. None keeps each
        image's size, which then must be the same for all images.
    batch_size : int, default 256
        Default batch size of :meth:`ImageListDataset.iter_batches`.
    interpolation : {"bilinear", "nearest", "bicubic", "lanczos", "box", "hamming"}
        Pillow resampling filter used when resizing.

    Returns
    -------
    ImageListDataset
        Files in row order with their labels (or None). Call ``.load()`` for
        ``(x, y)`` arrays or ``.iter_batches()`` to stream.

    Raises
    ------
    InvalidTypeError
        ``source`` is neither a path nor a DataFrame, or an argument has the wrong type.
    DatasetNotFoundError
        The CSV file does not exist.
    InvalidInputError
        The list is empty, a column is missing, a cell is empty, a label is not
        in ``classes``, or an image file does not exist (row and path named).
    ImageReadError
        Raised later, while reading, for a corrupt or unreadable file (named).

    Examples
    --------
    >>> ds = load_image_list("train.csv", image_size=160)  # doctest: +SKIP
    >>> ds.class_names, ds.shape  # doctest: +SKIP
    (['daisy', 'rose', 'tulip'], (1532, 160, 160, 3))
    >>> x, y = ds.load()  # doctest: +SKIP
    """
    size = normalize_image_size(image_size)
    if size is not None:
        check_fits_in_memory(1, *size)
    batch = check_positive_int("batch_size", batch_size)
    interpolation = normalize_interpolation(interpolation)
    if path_column is not None and not isinstance(path_column, str):
        raise InvalidTypeError(
            f"`path_column` must be a column name (str) or None (detect it); received "
            f"{describe(path_column)}."
        )
    if label_column is not None and not isinstance(label_column, str):
        raise InvalidTypeError(
            f"`label_column` must be a column name (str), 'auto' or None (no labels); "
            f"received {describe(label_column)}."
        )
    class_list = _check_classes(classes)

    table = _read_table(source)
    base = _resolve_root(root, table.default_root)
    path_index = _find_path_column(table, path_column)
    label_index = _find_label_column(table, label_column)
    if label_index is not None and label_index == path_index:
        raise InvalidInputError(
            f"`label_column` and `path_column` both name the column "
            f"{table.columns[path_index]!r}; pass different columns."
        )
    if not table.rows:
        raise InvalidInputError(
            f"{table.where} lists no images: it has a header ({table.columns}) but no rows."
        )
    if label_index is None and class_list is not None:
        raise InvalidInputError(
            f"`classes` was given ({class_list}) but {table.where} has no label column "
            f"(columns: {table.columns}); pass `label_column=` or drop `classes`."
        )

    files = [
        _resolve_file(table, k, cell, base) for k, cell in enumerate(table.column(path_index))
    ]
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    if label_index is not None:
        labels, class_names = _parse_labels(table, label_index, class_list)
    return ImageListDataset(
        root=base,
        class_names=class_names,
        files=files,
        labels=labels,
        image_size=size,
        interpolation=interpolation,
        batch_size=batch,  # type: ignore[arg-type]
        source=table.path,
    )


# --------------------------------------------------------------------------------------
# Reading the table
# --------------------------------------------------------------------------------------


class _Table:
    """Header and cells of a CSV file or a DataFrame, with how to name a row in errors."""

    def __init__(
        self,
        columns: list[Any],
        rows: list[list[Any]],
        row_names: list[str],
        where: str,
        path: Path | None,
        default_root: Path,
        from_csv: bool,
    ) -> None:
        self.columns = columns
        self.rows = rows  # rows[k][j]: row k's cell of column j (None past a short row)
        self.row_names = row_names
        self.where = where
        self.path = path
        self.default_root = default_root
        self.from_csv = from_csv

    def column(self, index: int) -> list[Any]:
        return [row[index] if index < len(row) else None for row in self.rows]


def _read_table(source: Any) -> _Table:
    if isinstance(source, str | os.PathLike) and not isinstance(source, bytes):
        return _read_csv(as_path("source", source))
    if hasattr(source, "columns") and hasattr(source, "__getitem__"):
        return _read_frame(source)
    raise InvalidTypeError(
        "`source` must be the path of a CSV file (str or os.PathLike) or a pandas DataFrame "
        f"with a column of image paths; received {describe(source)}."
    )


def _read_csv(path: Path) -> _Table:
    if not path.exists():
        raise DatasetNotFoundError(
            f"`source` '{path}' does not exist. Pass a CSV file with a header row and a "
            "column of image paths (e.g. 'path,label'), or a pandas DataFrame."
        )
    if path.is_dir():
        raise InvalidInputError(
            f"`source` '{path}' is a folder, not a CSV file. For a folder with one subfolder "
            "per class use `load_image_folder`."
        )
    where = f"the CSV file '{path}'"
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            delimiter = _sniff_delimiter(handle.read(_SNIFF_CHARS))
            handle.seek(0)
            reader = csv.reader(handle, delimiter=delimiter, skipinitialspace=True)
            header: list[str] | None = None
            rows: list[list[Any]] = []
            row_names: list[str] = []
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue  # blank line
                if header is None:
                    header = [cell.strip() for cell in cells]
                    continue
                rows.append(cells)
                row_names.append(f"row {len(rows)} (line {reader.line_num})")
    except UnicodeDecodeError as err:
        raise InvalidInputError(
            f"{where} is not UTF-8 text ({err}); save it as UTF-8 CSV."
        ) from err
    except csv.Error as err:
        raise InvalidInputError(f"{where} is not valid CSV: {err}.") from err
    except OSError as err:
        raise InvalidInputError(f"Could not read {where}: {err}.") from err
    if header is None:
        raise InvalidInputError(
            f"{where} is empty; it must start with a header row naming the columns, "
            "e.g. 'path,label', followed by one row per image."
        )
    return _Table(header, rows, row_names, where, path, path.parent, from_csv=True)


def _sniff_delimiter(sample: str) -> str:
    """The delimiter of a CSV sample: the sniffed one when the header holds it, else ','."""
    if "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]  # whole lines only
    header = sample.splitlines()[0] if sample else ""
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return ","
    return delimiter if delimiter in header else ","


def _read_frame(frame: Any) -> _Table:
    columns = list(frame.columns)
    cells = []
    for name in columns:
        values = frame[name]
        if hasattr(values, "columns"):  # a duplicated name selects several columns
            raise InvalidInputError(
                f"The DataFrame has more than one column named {name!r}; rename them."
            )
        cells.append(list(values))
    rows = [list(row) for row in zip(*cells, strict=True)] if cells else []
    index = getattr(frame, "index", None)
    labels = list(index) if index is not None and len(index) == len(rows) else None
    row_names = [
        f"row {k + 1}" + ("" if labels is None else f" (index {labels[k]!r})")
        for k in range(len(rows))
    ]
    return _Table(
        columns, rows, row_names, "the DataFrame", None, Path.cwd(), from_csv=False
    )


# --------------------------------------------------------------------------------------
# Columns, paths and labels
# --------------------------------------------------------------------------------------


def _find_column(columns: list[Any], candidates: Sequence[str]) -> int | None:
    folded = [c.strip().lower() if isinstance(c, str) else None for c in columns]
    for candidate in candidates:
        if candidate in folded:
            return folded.index(candidate)
    return None


def _find_path_column(table: _Table, path_column: str | None) -> int:
    if path_column is not None:
        if path_column not in table.columns:
            raise InvalidInputError(
                f"`path_column` {path_column!r} is not a column of {table.where}; its columns "
                f"are {table.columns}."
            )
        return table.columns.index(path_column)
    index = _find_column(table.columns, PATH_COLUMNS)
    if index is None:
        header = " (the first row must be a header naming the columns)" if table.from_csv else ""
        raise InvalidInputError(
            f"{table.where} has no column of image paths: none of its columns "
            f"{table.columns}{header} is one of {list(PATH_COLUMNS)}. Pass "
            "`path_column=` to name it."
        )
    return index


def _find_label_column(table: _Table, label_column: str | None) -> int | None:
    if label_column is None:
        return None
    if label_column == "auto":
        return _find_column(table.columns, LABEL_COLUMNS)
    if label_column not in table.columns:
        raise InvalidInputError(
            f"`label_column` {label_column!r} is not a column of {table.where}; its columns "
            f"are {table.columns}. Pass label_column=None to read no labels."
        )
    return table.columns.index(label_column)


def _resolve_root(root: Any, default: Path) -> Path:
    if root is None:
        return default.absolute()
    folder = as_path("root", root).absolute()
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise InvalidInputError(
            f"`root` '{folder}' {state}; pass the folder relative image paths are resolved "
            "against, or None for the default."
        )
    return folder


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float | np.floating):
        return math.isnan(float(value))
    return type(value).__name__ in ("NAType", "NaTType")  # pandas' missing values


def _resolve_file(table: _Table, k: int, cell: Any, root: Path) -> Path:
    row = table.row_names[k]
    if _is_empty(cell):
        raise InvalidInputError(f"{table.where}, {row}: the path cell is empty.")
    if not isinstance(cell, str | os.PathLike) or isinstance(cell, bytes):
        raise InvalidInputError(
            f"{table.where}, {row}: the path cell holds {describe(cell)}; expected an "
            "image file path."
        )
    written = os.fspath(cell)
    file = root / written
    try:
        mode = os.stat(file).st_mode
    except OSError as err:
        raise InvalidInputError(
            f"{table.where}, {row}: the image file {written!r} does not exist (looked for "
            f"'{file}': {err.strerror}). Relative paths are resolved against `root` "
            f"('{root}'); fix the path or pass `root=`."
        ) from err
    if stat.S_ISDIR(mode):
        raise InvalidInputError(
            f"{table.where}, {row}: {written!r} ('{file}') is a folder, not an image file."
        )
    return file


def _as_int(value: Any) -> int | None:
    """``value`` as an integer label, or None when it is not an integer."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _check_classes(classes: Any) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, str) or not isinstance(classes, Sequence | np.ndarray):
        raise InvalidTypeError(
            f"`classes` must be a sequence of class names or None; received {describe(classes)}."
        )
    names = list(classes)
    if not all(isinstance(c, str) for c in names):
        raise InvalidTypeError(
            f"`classes` must hold class names (strings); received {describe(classes)}."
        )
    if not names:
        raise InvalidInputError("`classes` is empty; pass the class names, or None.")
    duplicates = sorted({c for c in names if names.count(c) > 1})
    if duplicates:
        raise InvalidInputError(f"`classes` lists {duplicates} more than once.")
    return names


def _parse_labels(
    table: _Table, index: int, classes: list[str] | None
) -> tuple[np.ndarray, list[str] | None]:
    column = table.columns[index]
    cells = table.column(index)
    for k, cell in enumerate(cells):
        if _is_empty(cell):
            raise InvalidInputError(
                f"{table.where}, {table.row_names[k]}: the label cell (column {column!r}) is "
                "empty; every row needs a label, or pass label_column=None to read none."
            )
    integers = [_as_int(cell) for cell in cells]
    if all(i is not None for i in integers):
        for k, label in enumerate(integers):
            if label < 0:  # type: ignore[operator]
                raise InvalidInputError(
                    f"{table.where}, {table.row_names[k]}: label {label} is negative; integer "
                    "labels must be >= 0."
                )
        labels = np.asarray(integers, dtype=np.int64)
        if classes is not None:
            top = int(labels.argmax())
            if labels[top] >= len(classes):
                raise InvalidInputError(
                    f"`classes` has {len(classes)} names but {table.where}, "
                    f"{table.row_names[top]} has label {int(labels[top])}; integer labels "
                    f"index `classes`, which needs at least {int(labels[top]) + 1} names."
                )
        return labels, classes
    names = [cell.strip() if isinstance(cell, str) else str(cell) for cell in cells]
    if classes is None:
        class_names = sorted(set(names))
    else:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            first = table.row_names[next(k for k, n in enumerate(names) if n in unknown)]
            raise InvalidInputError(
                f"Labels {unknown} of {table.where} (first in {first}) are not in `classes` "
                f"{classes}; add them to `classes` or pass classes=None."
            )
        class_names = classes
    position = {name: k for k, name in enumerate(class_names)}
    return np.asarray([position[n] for n in names], dtype=np.int64), class_names
