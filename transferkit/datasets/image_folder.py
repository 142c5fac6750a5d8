"""Image folders: ``root/<class>/...`` indexed once, decoded on demand.

Layout and labels:

* ``root`` holds one subfolder per class; files may sit at any depth inside a
  class folder, symlinked files and folders are followed, and a folder reached
  twice is read once (see :mod:`transferkit.datasets.images`);
* class names are the subfolder names sorted alphabetically, or ``classes`` in
  the order given (which must name exactly the subfolders); label ``k`` is
  ``class_names[k]``;
* files are grouped by class in label order, then sorted by their path relative
  to the class folder; indexing never decodes anything.

Pixels are those of :func:`transferkit.datasets.images.read_image`: RGB ``uint8``
``(n, height, width, 3)``, EXIF orientation applied, resized to ``image_size`` with
the ``interpolation`` filter; with ``image_size=None`` every image must have the
first image's size.

:meth:`ImageFolderDataset.fingerprint` (format version 1) hashes, with BLAKE2b-256,
a JSON header (format name, version, decode recipe, class names, image size,
interpolation, count) and then, per file in order: its path relative to ``root``,
its label and its size and bytes. It is what the feature cache keys on, so any
change to what goes into it invalidates every cached image-folder feature file;
bump ``_FINGERPRINT_VERSION`` when the decoded pixels change.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import (
    check_choice,
    check_positive_int,
    describe,
    format_bytes,
    memory_limit_bytes,
)
from ..exceptions import (
    DatasetNotFoundError,
    ImageReadError,
    InvalidInputError,
    InvalidTypeError,
)
from ._paths import as_path
from .images import (
    IMAGE_EXTENSIONS,
    INTERPOLATIONS,
    list_image_files,
    read_image,
    read_image_size,
)
from .on_demand import OnDemandImages, hash_file

__all__ = ["ImageFolderDataset", "load_image_folder"]

_FINGERPRINT_VERSION = 1


def normalize_image_size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        side = check_positive_int("image_size", value)
        return (side, side)  # type: ignore[return-value]
    if isinstance(value, list | tuple) and len(value) == 2:
        height = check_positive_int("image_size[0] (height)", value[0])
        width = check_positive_int("image_size[1] (width)", value[1])
        return (height, width)  # type: ignore[return-value]
    raise InvalidTypeError(
        "`image_size` must be None (keep each image's size), a positive int (square "
        f"images) or a (height, width) pair of positive ints; received {describe(value)}."
    )


def normalize_interpolation(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidTypeError(
            f"`interpolation` must be one of {list(INTERPOLATIONS)}; received {describe(value)}."
        )
    return check_choice("interpolation", value.lower(), INTERPOLATIONS)


def _normalize_extensions(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable) or isinstance(items, bytes):
        raise InvalidTypeError(
            "`extensions` must be a string or a sequence of strings such as ('.jpg', '.png'); "
            f"received {describe(value)}."
        )
    out = []
    for ext in items:
        if not isinstance(ext, str) or not ext.strip(". "):
            raise InvalidInputError(
                "`extensions` must hold non-empty strings such as '.jpg'; received "
                f"{describe(value)}."
            )
        ext = ext.strip().lower()
        out.append(ext if ext.startswith(".") else "." + ext)
    if not out:
        raise InvalidInputError("`extensions` is empty; pass at least one, e.g. ('.jpg', '.png').")
    return tuple(dict.fromkeys(out))


class ImageFolderDataset(OnDemandImages):
    """Images in ``root/<class>/...`` read on demand, as an array-like of uint8 NHWC images.

    Made by :func:`load_image_folder`; nothing is decoded until asked. It duck-types
    as a read-only image array (:class:`~transferkit.datasets.on_demand.OnDemandImages`):
    ``len(ds)``, ``ds.shape == (n, H, W, 3)``, ``ds.dtype == uint8``, ``ds[i]``,
    ``ds[a:b]``, ``ds[[i, j]]`` and ``np.asarray(ds)``; :meth:`iter_batches` streams
    it, and :meth:`fingerprint` identifies its content for the feature cache.

    Attributes
    ----------
    root : pathlib.Path
        The dataset folder.
    class_names : list of str
        Class names; label ``k`` is ``class_names[k]``.
    files : list of pathlib.Path
        Image files, grouped by class in ``class_names`` order, then sorted by path.
    labels : numpy.ndarray
        ``int64`` label of each file, shape ``(n,)``.
    image_size, interpolation, batch_size
        As for :class:`~transferkit.datasets.on_demand.OnDemandImages`.
    """

    def __init__(
        self,
        root: Path,
        class_names: list[str],
        files: list[Path],
        labels: np.ndarray,
        image_size: tuple[int, int] | None,
        interpolation: str,
        batch_size: int,
    ) -> None:
        super().__init__(image_size, interpolation, batch_size)
        self.root = root
        self.class_names = class_names
        self.files = files
        self.labels = labels

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset(root='{self.root}', n={len(self.files)}, "
            f"classes={len(self.class_names)}, image_size={self.image_size}, "
            f"interpolation='{self.interpolation}')"
        )

    def subset(self, start: int, stop: int) -> ImageFolderDataset:
        """The images ``start .. stop - 1`` as a dataset of their own, read lazily too.

        Its images have the size of the whole dataset's (with ``image_size=None``, the
        first image's of the whole folder), so a subset's batches equal the
        corresponding rows of the whole dataset: this is how shards of a distributed
        extraction read their part of a folder in another process.
        """
        n = len(self.files)
        if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start <= stop <= n):
            raise InvalidInputError(
                f"`start` and `stop` must satisfy 0 <= start <= stop <= {n}; received "
                f"start={start!r}, stop={stop!r}."
            )
        part = copy.copy(self)
        part._native_size = self._target_size()
        part.files = self.files[start:stop]
        part.labels = None if self.labels is None else self.labels[start:stop]
        return part

    # -- reading ---------------------------------------------------------------------------

    def _target_size(self) -> tuple[int, int]:
        if self.image_size is not None:
            return self.image_size
        if self._native_size is None:
            self._native_size = read_image_size(self.files[0])
        return self._native_size

    def _read(self, positions: Iterable[int]) -> np.ndarray:
        positions = list(positions)
        height, width = self._target_size() if positions else (0, 0)
        check_fits_in_memory(len(positions), height, width)
        out = np.empty((len(positions), height, width, 3), dtype=np.uint8)
        for k, i in enumerate(positions):
            image = read_image(self.files[i], self.image_size, self._resample)
            if image.shape[:2] != (height, width):
                raise InvalidInputError(
                    f"With `image_size=None` all images must have the same size, but "
                    f"'{self.files[i]}' is {image.shape[0]}x{image.shape[1]} (height x width) "
                    f"while '{self.files[0]}' is {height}x{width}. Pass `image_size=(height, "
                    "width)` to resize them."
                )
            out[k] = image
        return out

    def fingerprint(self) -> str:
        """Stable hex digest of everything that determines the pixels and labels.

        It covers the class names, each file's path relative to :attr:`root`, its
        label and its bytes (so any edited pixel changes it), plus ``image_size``
        and ``interpolation``. Moving or copying the folder keeps it. Every call
        reads all files again.

        Returns
        -------
        str
            64 hexadecimal characters (BLAKE2b, 256 bits).
        """
        digest = hashlib.blake2b(digest_size=32)
        digest.update(json.dumps(self._fingerprint_header(), sort_keys=True).encode() + b"\0")
        labels = [None] * len(self.files) if self.labels is None else self.labels
        for file, label in zip(self.files, labels, strict=True):
            name = self._fingerprint_path(file).encode("utf-8", "surrogateescape")
            digest.update(len(name).to_bytes(8, "little") + name)
            if label is not None:  # a dataset without labels says so in its header
                digest.update(int(label).to_bytes(8, "little"))
            try:
                hash_file(digest, file)
            except OSError as err:
                raise ImageReadError(
                    f"Could not read the image file '{file}' to fingerprint the dataset: "
                    f"{err}. Check that it still exists and is readable."
                ) from err
        return digest.hexdigest()

    def _fingerprint_header(self) -> dict[str, Any]:
        """The JSON header :meth:`fingerprint` hashes first (subclasses name their format)."""
        return {
            "format": "transferkit.ImageFolderDataset",
            "version": _FINGERPRINT_VERSION,
            "decode": "pillow:exif_transpose:rgb",
            "class_names": self.class_names,
            "image_size": list(self.image_size) if self.image_size else None,
            "interpolation": self.interpolation,
            "n": len(self.files),
        }

    def _fingerprint_path(self, file: Path) -> str:
        """How :meth:`fingerprint` names ``file``: its POSIX path relative to :attr:`root`."""
        return file.relative_to(self.root).as_posix()


def load_image_folder(
    root: str | os.PathLike[str],
    *,
    image_size: int | Sequence[int] | None = (224, 224),
    classes: Sequence[str] | None = None,
    batch_size: int = 256,
    interpolation: str = "bilinear",
    extensions: str | Sequence[str] = IMAGE_EXTENSIONS,
) -> ImageFolderDataset:
    """Index a folder of images with one subfolder per class.

    ``root/<class>/<file>`` (files may also sit deeper, in subfolders of a class
    folder; symlinked files and folders are followed, and a folder reached twice, as
    through a symlink loop, is read once, with a warning naming the link). Files
    whose extension is not in ``extensions`` and names starting with ``.`` are
    ignored. Nothing is decoded here: the returned dataset reads
    images on demand, converting them to RGB (grayscale, palette, RGBA and CMYK
    alike; alpha is dropped, 16-bit grayscale keeps its 8 high bits), applying the
    EXIF orientation, and resizing them to ``image_size`` with Pillow.

    Parameters
    ----------
    root : str or os.PathLike
        Dataset folder.
    image_size : int or (height, width) or None, default (224, 224)
        Size images are resized to; an int means a square. None keeps each
        image's size, which then must be the same for all images.
    classes : sequence of str, optional
        Class names in label order. They must be exactly the class subfolders of
        ``root``; by default the subfolder names sorted alphabetically.
    batch_size : int, default 256
        Default batch size of :meth:`ImageFolderDataset.iter_batches`.
    interpolation : {"bilinear", "nearest", "bicubic", "lanczos", "box", "hamming"}
        Pillow resampling filter used when resizing (Pillow antialiases when
        shrinking).
    extensions : str or sequence of str, default IMAGE_EXTENSIONS
        File extensions to read, case-insensitive.

    Returns
    -------
    ImageFolderDataset
        Files sorted by class then by path within the class, with their labels.
        Call ``.load()`` for ``(x, y)`` arrays or ``.iter_batches()`` to stream.

    Raises
    ------
    DatasetNotFoundError
        ``root`` does not exist.
    InvalidInputError
        ``root`` has no class subfolders, a class folder holds no images, or
        ``classes`` does not match the subfolders.
    ImageReadError
        Raised later, while reading, for a corrupt or unreadable file (named).

    Examples
    --------
    >>> ds = load_image_folder("flowers/", image_size=160)  # doctest: +SKIP
    >>> ds.class_names, ds.shape  # doctest: +SKIP
    (['daisy', 'rose', 'tulip'], (1532, 160, 160, 3))
    >>> x, y = ds.load()  # doctest: +SKIP
    """
    folder = as_path("root", root)
    size = normalize_image_size(image_size)
    if size is not None:
        check_fits_in_memory(1, *size)
    batch = check_positive_int("batch_size", batch_size)
    interpolation = normalize_interpolation(interpolation)
    exts = _normalize_extensions(extensions)
    if not folder.exists():
        raise DatasetNotFoundError(
            f"`root` '{folder}' does not exist. Pass a folder holding one subfolder of images "
            "per class, e.g. root/cat/001.jpg, root/dog/001.jpg."
        )
    if not folder.is_dir():
        raise InvalidInputError(
            f"`root` '{folder}' is a file, not a folder. Pass a folder holding one subfolder "
            "of images per class, e.g. root/cat/001.jpg, root/dog/001.jpg."
        )
    subfolders = sorted(
        p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not subfolders:
        loose = _count_loose_images(folder, exts)
        hint = (
            f" It holds {loose} image files directly; move them into one subfolder per class."
            if loose
            else ""
        )
        raise InvalidInputError(
            f"`root` '{folder}' has no class subfolders.{hint} Expected one subfolder of "
            "images per class, e.g. root/cat/001.jpg, root/dog/001.jpg."
        )
    if classes is None:
        class_names = subfolders
    else:
        if isinstance(classes, str) or not isinstance(classes, Sequence):
            raise InvalidTypeError(
                f"`classes` must be a sequence of class-folder names or None; received "
                f"{describe(classes)}."
            )
        class_names = list(classes)
        if not all(isinstance(c, str) for c in class_names):
            raise InvalidTypeError(
                f"`classes` must hold strings (folder names); received {describe(classes)}."
            )
        duplicates = sorted({c for c in class_names if class_names.count(c) > 1})
        if duplicates:
            raise InvalidInputError(f"`classes` lists {duplicates} more than once.")
        missing = sorted(set(class_names) - set(subfolders))
        extra = sorted(set(subfolders) - set(class_names))
        if missing or extra:
            raise InvalidInputError(
                f"`classes` must name exactly the class subfolders of '{folder}' "
                f"({subfolders}); no folder for {missing}, not listed: {extra}. Fix `classes` "
                "or the folders, or pass classes=None to use all subfolders sorted by name."
            )
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        found = list_image_files(folder / name, exts)
        if not found:
            raise InvalidInputError(
                f"The class folder '{folder / name}' holds no image files with extensions "
                f"{list(exts)}. Add images, remove the folder, or adjust `extensions`."
            )
        files.extend(found)
        labels.extend([label] * len(found))
    return ImageFolderDataset(
        root=folder,
        class_names=list(class_names),
        files=files,
        labels=np.asarray(labels, dtype=np.int64),
        image_size=size,
        interpolation=interpolation,
        batch_size=batch,  # type: ignore[arg-type]
    )


def check_fits_in_memory(n: int, height: int, width: int) -> None:
    """Raise before allocating ``n`` decoded images of ``height`` x ``width`` beyond memory."""
    limit = memory_limit_bytes()
    needed = n * height * width * 3
    if limit is None or needed <= limit:
        return
    what = "one image" if n == 1 else f"{n} images"
    raise InvalidInputError(
        f"`image_size` ({height}, {width}) needs {format_bytes(needed)} of memory for {what} "
        f"(height x width x 3 bytes each), more than the {format_bytes(limit)} this machine "
        "has; pass a smaller `image_size`"
        + ("." if n == 1 else ", or read fewer images at once (`iter_batches(batch_size)`).")
    )


def _count_loose_images(folder: Path, extensions: tuple[str, ...]) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)
