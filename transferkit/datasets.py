"""Datasets: CIFAR-10, a small bundled CIFAR-10 sample, and your own image folders.

* :func:`load_cifar10` returns the full CIFAR-10 dataset from a file or folder you
  pass, from a local data folder, or from Keras' download.
* :func:`load_cifar10_sample` returns 6,000 CIFAR-10 images shipped inside the
  package, so examples and tests work offline.
* :func:`load_image_folder` indexes a folder with one subfolder per class and reads
  the images on demand (all at once, by slices, or batch by batch).

Importing this module is cheap: Keras is imported only when a download is tried,
and Pillow only when images are decoded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ._validation import (
    check_choice,
    check_positive_int,
    describe,
    format_bytes,
    memory_limit_bytes,
)
from .exceptions import (
    DatasetNotFoundError,
    ImageReadError,
    InvalidInputError,
    InvalidTypeError,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_URL",
    "DATA_DIR_ENV",
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "ImageFolderDataset",
    "balanced_subset",
    "get_data_dir",
    "load_cifar10",
    "load_cifar10_or_sample",
    "load_cifar10_sample",
    "load_image_folder",
]

#: CIFAR-10 class names; ``CIFAR10_CLASSES[label]`` is the name of integer ``label``.
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

#: Where the official CIFAR-10 archive (Python version) is published.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

#: Environment variable naming transferkit's local data folder.
DATA_DIR_ENV = "TRANSFERKIT_DATA"

#: File extensions :func:`load_image_folder` reads by default (case-insensitive).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
)

#: Resampling filters accepted as ``interpolation`` (Pillow's filters of those names).
INTERPOLATIONS: tuple[str, ...] = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")

_DEFAULT_DATA_DIR = "~/.transferkit/data"
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_BATCH = "test_batch"
_BATCH_NAMES = (*_TRAIN_BATCHES, _TEST_BATCH)
_SAMPLE_FORMAT_VERSION = 1
_FINGERPRINT_VERSION = 1
_READ_CHUNK = 1 << 20
_EXIF_ORIENTATION = 0x0112

_CIFAR_LAYOUTS = (
    f"  - the official archive 'cifar-10-python.tar.gz' ({CIFAR10_URL});\n"
    "  - its extracted folder 'cifar-10-batches-py/' (data_batch_1 ... data_batch_5 and "
    "test_batch), or a folder that contains it;\n"
    "  - an image tree 'train/<class>/*.jpg|png' plus 'test/<class>/*' whose class folders "
    f"are exactly the 10 CIFAR-10 classes {list(CIFAR10_CLASSES)}, or a folder that "
    "contains such a tree named 'cifar10-jpg/';\n"
    "  - a .tar.gz of such an image tree (e.g. 'cifar10-jpg.tar.gz')."
)

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class _IndexOutOfRangeError(InvalidInputError, IndexError):
    """An index outside ``[-len, len)``; also an ``IndexError`` for Python's protocols."""


# --------------------------------------------------------------------------------------
# Paths and argument checks
# --------------------------------------------------------------------------------------


def get_data_dir() -> Path:
    """Return transferkit's local data folder.

    It is the value of the ``TRANSFERKIT_DATA`` environment variable when set,
    otherwise ``~/.transferkit/data``, with ``~`` expanded and the path made
    absolute. The folder is not created.

    Returns
    -------
    pathlib.Path
        The resolved data folder.
    """
    raw = os.environ.get(DATA_DIR_ENV) or _DEFAULT_DATA_DIR
    return Path(raw).expanduser().resolve()


def _keras_dataset_dirs() -> list[Path]:
    """Folders where Keras caches its dataset downloads (``$KERAS_HOME/datasets``)."""
    home = os.environ.get("KERAS_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".keras"
    dirs = [base / "datasets"]
    if not home and not os.access(base.parent, os.W_OK):
        dirs.append(Path("/tmp/.keras/datasets"))  # Keras' fallback for a read-only home
    return dirs


def _as_path(name: str, value: Any) -> Path:
    if isinstance(value, bool) or not isinstance(value, str | os.PathLike):
        raise InvalidTypeError(
            f"`{name}` must be a path (str or os.PathLike); received {describe(value)}."
        )
    return Path(value).expanduser()


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise InvalidTypeError(f"`{name}` must be True or False; received {describe(value)}.")
    return bool(value)


def _normalize_image_size(value: Any) -> tuple[int, int] | None:
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


def _resample_filter(interpolation: str) -> int:
    from PIL import Image

    resampling = getattr(Image, "Resampling", Image)  # Pillow < 9.1 has no Resampling enum
    return int(getattr(resampling, interpolation.upper()))


# --------------------------------------------------------------------------------------
# Safe unpickling of the official CIFAR-10 batches
# --------------------------------------------------------------------------------------


def _numpy_global(module: str, name: str) -> Any:
    """Return one of numpy's array-reconstruction helpers without importing numpy.core."""
    for candidate in (module.replace("numpy.core.", "numpy._core."), module):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no `{module}.{name}`")


class _RefusedGlobalError(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"refused global `{module}.{name}`")
        self.module = module
        self.name = name


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild plain containers and NumPy arrays, and nothing else.

    The official CIFAR-10 batches hold a dict of bytes, a list of ints, a list of
    file names and one uint8 NumPy array. Rebuilding the array needs only the
    globals below; every other global (``os.system``, ``builtins.eval``...) is
    refused, so a tampered file cannot run code.
    """

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise _RefusedGlobalError(module, name)
        if module == "numpy":
            return getattr(np, name)
        return _numpy_global(module, name)


def _parse_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pickled CIFAR-10 batch into NHWC uint8 images and int64 labels."""
    redownload = f"Delete it and download the official archive again from {CIFAR10_URL}."
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _RefusedGlobalError as err:
        raise InvalidInputError(
            f"Refusing to load the CIFAR-10 batch '{source}': the pickle references "
            f"`{err.module}.{err.name}`, which genuine CIFAR-10 files never do (they hold "
            "only bytes, lists, ints and a uint8 NumPy array). Loading it could run "
            f"arbitrary code, so the file may be malicious or corrupted. {redownload}"
        ) from None
    except Exception as err:  # a damaged pickle raises many different errors
        raise InvalidInputError(
            f"Could not read the CIFAR-10 batch '{source}': {type(err).__name__}: {err}. "
            f"The file is damaged or not a CIFAR-10 batch. {redownload}"
        ) from err
    if not isinstance(obj, dict):
        raise InvalidInputError(
            f"The CIFAR-10 batch '{source}' must hold a dict with 'data' and 'labels'; it "
            f"holds {describe(obj)}. {redownload}"
        )
    entries = {(k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    images, labels = entries.get("data"), entries.get("labels")
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 2
        or images.shape[1] != 3072
    ):
        raise InvalidInputError(
            f"The CIFAR-10 batch '{source}' must have 'data' as a uint8 array of shape "
            f"(n, 3072); found {describe(images)}. {redownload}"
        )
    try:
        label_array = np.asarray(labels)
    except Exception:  # ragged or exotic content
        label_array = np.asarray([])
    if (
        label_array.shape != (images.shape[0],)
        or not np.issubdtype(label_array.dtype, np.integer)
        or (label_array.size and (label_array.min() < 0 or label_array.max() > 9))
    ):
        raise InvalidInputError(
            f"The CIFAR-10 batch '{source}' must have 'labels' as {images.shape[0]} integers "
            f"in 0..9; found {describe(labels)}. {redownload}"
        )
    x = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, label_array.astype(np.int64)


def _assemble(batches: dict[str, tuple[np.ndarray, np.ndarray]], where: str) -> Arrays:
    missing = [name for name in _BATCH_NAMES if name not in batches]
    if missing:
        raise InvalidInputError(
            f"The CIFAR-10 data at '{where}' is incomplete: missing {missing}. Download the "
            f"complete official archive from {CIFAR10_URL}."
        )
    x_train = np.ascontiguousarray(np.concatenate([batches[n][0] for n in _TRAIN_BATCHES]))
    y_train = np.concatenate([batches[n][1] for n in _TRAIN_BATCHES])
    x_test = np.ascontiguousarray(batches[_TEST_BATCH][0])
    y_test = batches[_TEST_BATCH][1]
    return (x_train, y_train), (x_test, y_test)


def _load_batches_dir(directory: Path) -> Arrays:
    batches = {}
    for name in _BATCH_NAMES:
        file = directory / name
        if file.is_file():
            batches[name] = _parse_batch(file.read_bytes(), str(file))
    return _assemble(batches, str(directory))


# --------------------------------------------------------------------------------------
# Safe tar handling
# --------------------------------------------------------------------------------------


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _unsafe_member_reason(member: tarfile.TarInfo, root: str) -> str | None:
    """Why ``member`` must not be extracted into ``root`` (a real, absolute path), if so."""
    name = member.name
    if not name:
        return "has an empty name"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "contains '..' in its path"
    target = os.path.normpath(os.path.join(root, name))
    if not _is_within(target, root):
        return "would be written outside the extraction folder"
    if member.issym() or member.islnk():
        kind = "symbolic link" if member.issym() else "hard link"
        link = member.linkname
        base = os.path.dirname(target) if member.issym() else root
        resolved = os.path.normpath(os.path.join(base, link))
        if os.path.isabs(link) or not _is_within(resolved, root):
            return f"is a {kind} to '{link}', outside the extraction folder"
        return f"is a {kind} to '{link}'; links are never extracted, for safety"
    if member.ischr() or member.isblk() or member.isfifo():
        return "is a device file or FIFO"
    if not (member.isfile() or member.isdir()):
        return "is not a regular file or folder"
    return None


def _safe_extract_tar(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into the existing folder ``dest``, refusing unsafe members.

    Every member is checked before anything is written: absolute paths, ``..``
    components, links and device files make the whole archive be refused. Where
    Python provides it (3.12, 3.11.4+, 3.10.12+), ``tarfile``'s ``"data"`` filter
    is applied as well.
    """
    root = os.path.realpath(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                reason = _unsafe_member_reason(member, root)
                if reason is not None:
                    raise InvalidInputError(
                        f"Refusing to extract the archive '{archive}': its member "
                        f"'{member.name}' {reason}. Nothing was extracted. Use an archive "
                        "from a trusted source, or extract it yourself and pass the folder."
                    )
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members=members, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                for member in members:
                    tar.extract(member, root, set_attrs=False)
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise InvalidInputError(
            f"Could not extract the archive '{archive}': {type(err).__name__}: {err}. The "
            "file is damaged or unsafe; download it again, or extract it yourself and pass "
            "the folder."
        ) from err


def _archive_stem(archive: Path) -> str:
    name = archive.name
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "archive"
    return name


def _find_image_tree(folder: Path) -> Path | None:
    if _is_image_tree(folder):
        return folder
    trees = [p for p in sorted(folder.iterdir()) if p.is_dir() and _is_image_tree(p)]
    return trees[0] if len(trees) == 1 else None


def _extract_image_tree(archive: Path) -> Path:
    """Extract an image-tree archive once into the data folder and return the tree."""
    stat = archive.stat()
    key = hashlib.blake2b(
        f"{archive.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode(), digest_size=8
    ).hexdigest()
    cache = get_data_dir() / "extracted"
    dest = cache / f"{_archive_stem(archive)}-{key}"
    if not dest.is_dir():
        try:
            cache.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=cache))
        except OSError as err:
            raise DatasetNotFoundError(
                f"Could not create a folder to extract '{archive}' into under '{cache}': "
                f"{err}. Set the {DATA_DIR_ENV} environment variable to a writable folder, or "
                "extract the archive yourself and pass the folder as `path`."
            ) from err
        try:
            _safe_extract_tar(archive, partial)
            try:
                partial.rename(dest)
            except OSError:
                if not dest.is_dir():  # not a concurrent extraction finishing first
                    raise
        except OSError as err:
            raise DatasetNotFoundError(
                f"Could not extract '{archive}' into '{dest}': {err}. Free some disk space or "
                f"set {DATA_DIR_ENV} to another folder, or extract the archive yourself and "
                "pass the folder as `path`."
            ) from err
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    tree = _find_image_tree(dest)
    if tree is None:
        raise InvalidInputError(
            f"The archive '{archive}' (extracted to '{dest}') holds no 'train/<class>/' and "
            f"'test/<class>/' image tree. Recognised CIFAR-10 layouts:\n{_CIFAR_LAYOUTS}"
        )
    return tree


def _looks_like_tree_member(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(
        part in ("train", "test") and parts[i + 1] in CIFAR10_CLASSES
        for i, part in enumerate(parts[:-1])
    )


def _load_archive(archive: Path) -> Arrays:
    """Load the official CIFAR-10 archive, or an image-tree archive, from ``archive``."""
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    has_tree = False
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:  # one streaming pass, nothing written to disk
                base = PurePosixPath(member.name).name
                if base in _BATCH_NAMES and member.isfile() and base not in batches:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        source = f"{archive}:{member.name}"
                        batches[base] = _parse_batch(handle.read(), source)
                elif not has_tree and _looks_like_tree_member(member.name):
                    has_tree = True
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise InvalidInputError(
            f"`path` '{archive}' is not a readable tar archive ({type(err).__name__}: {err}). "
            f"Recognised CIFAR-10 layouts:\n{_CIFAR_LAYOUTS}"
        ) from err
    if batches:
        return _assemble(batches, str(archive))
    if has_tree:
        return _load_image_tree(_extract_image_tree(archive))
    raise InvalidInputError(
        f"`path` '{archive}' is a tar archive but holds neither CIFAR-10 batches nor a "
        f"'train/<class>/' image tree. Recognised CIFAR-10 layouts:\n{_CIFAR_LAYOUTS}"
    )


# --------------------------------------------------------------------------------------
# CIFAR-10 from local files
# --------------------------------------------------------------------------------------


def _is_batches_dir(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).is_file() for name in _BATCH_NAMES)


def _is_image_tree(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def _find_in_folder(folder: Path, *, itself: bool = True) -> tuple[str, Path] | None:
    """First recognised CIFAR-10 layout at (when ``itself``) or directly inside ``folder``.

    Official data is preferred to the lossy JPEG tree, and extracted folders to
    archives (identical content, faster to read).
    """
    candidates = [
        ("batches", folder / "cifar-10-batches-py"),
        ("archive", folder / "cifar-10-python.tar.gz"),
        ("tree", folder / "cifar10-jpg"),
        ("archive", folder / "cifar10-jpg.tar.gz"),
    ]
    if itself:
        candidates[0:0] = [("batches", folder)]
        candidates[3:3] = [("tree", folder)]
    for kind, location in candidates:
        if (
            (kind == "batches" and _is_batches_dir(location))
            or (kind == "tree" and _is_image_tree(location))
            or (kind == "archive" and location.is_file())
        ):
            return kind, location
    return None


def _find_in_keras_cache() -> tuple[str, Path] | None:
    for datasets in _keras_dataset_dirs():
        candidates = [
            ("batches", datasets / "cifar-10-batches-py-target" / "cifar-10-batches-py"),
            ("batches", datasets / "cifar-10-batches-py"),
            ("archive", datasets / "cifar-10-batches-py-target_archive"),
            ("archive", datasets / "cifar-10-batches-py.tar.gz"),
        ]
        for kind, location in candidates:
            if (kind == "batches" and _is_batches_dir(location)) or (
                kind == "archive" and location.is_file()
            ):
                return kind, location
    return None


def _load_found(kind: str, location: Path) -> Arrays:
    if kind == "batches":
        return _load_batches_dir(location)
    if kind == "tree":
        return _load_image_tree(location)
    return _load_archive(location)


def _load_image_tree(root: Path) -> Arrays:
    """Read a ``train/<class>/`` + ``test/<class>/`` CIFAR-10 image tree."""
    splits = []
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            raise InvalidInputError(
                f"The CIFAR-10 image tree '{root}' has no '{split}/' folder; it needs both "
                "'train/<class>/' and 'test/<class>/'."
            )
        found = {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
        if found != set(CIFAR10_CLASSES):
            missing = sorted(set(CIFAR10_CLASSES) - found)
            extra = sorted(found - set(CIFAR10_CLASSES))
            raise InvalidInputError(
                f"The CIFAR-10 image folder '{folder}' must contain exactly the 10 class "
                f"folders {list(CIFAR10_CLASSES)}; missing {missing}, unexpected {extra}. "
                "For other datasets use load_image_folder()."
            )
        dataset = load_image_folder(folder, image_size=(32, 32), classes=CIFAR10_CLASSES)
        splits.append(dataset.load())
    return splits[0], splits[1]


def _download_with_keras() -> Any:
    """Download CIFAR-10 with ``keras.datasets.cifar10.load_data()`` (imports Keras)."""
    from ._lazy import import_keras

    return import_keras().datasets.cifar10.load_data()


def _from_keras_arrays(result: Any) -> Arrays:
    (x_train, y_train), (x_test, y_test) = result
    out = []
    for x, y in ((x_train, y_train), (x_test, y_test)):
        x = np.asarray(x, dtype=np.uint8)
        if x.ndim == 4 and x.shape[1] == 3 and x.shape[-1] != 3:  # channels_first config
            x = x.transpose(0, 2, 3, 1)
        out.append((np.ascontiguousarray(x), np.asarray(y).reshape(-1).astype(np.int64)))
    return out[0], out[1]


def _not_found_message(data_dir: Path, looked: list[str], reason: str) -> str:
    places = "\n".join(f"  - {p}" for p in looked)
    return (
        f"CIFAR-10 was not found locally, and {reason}.\n"
        "To use it without downloading, do one of:\n"
        f"  - download the official archive {CIFAR10_URL} and put it at "
        f"'{data_dir / 'cifar-10-python.tar.gz'}' (the {DATA_DIR_ENV} folder, default "
        f"{_DEFAULT_DATA_DIR}), or extract it there as '{data_dir / 'cifar-10-batches-py'}';\n"
        "  - pass the archive or folder explicitly: load_cifar10(path='...');\n"
        "  - for a quick offline start, use the bundled 6,000-image sample: "
        "load_cifar10_sample().\n"
        f"Locations searched:\n{places}"
    )


def load_cifar10(path: str | os.PathLike[str] | None = None, *, download: bool = True) -> Arrays:
    """Load CIFAR-10 (Krizhevsky, 2009): 50,000 training and 10,000 test images.

    The result has the layout of ``keras.datasets.cifar10.load_data()`` with one
    difference: labels are 1-D ``int64`` arrays of shape ``(n,)`` instead of
    ``uint8`` arrays of shape ``(n, 1)``. Label ``k`` is class
    ``CIFAR10_CLASSES[k]`` (airplane, automobile, bird, cat, deer, dog, frog,
    horse, ship, truck).

    Sources are tried in this order:

    1. ``path``, when given. It may be the official ``cifar-10-python.tar.gz``
       archive; its extracted ``cifar-10-batches-py/`` folder or a folder that
       contains it; an image tree ``train/<class>/*.jpg|png`` + ``test/<class>/*``
       whose class folders are exactly the ten CIFAR-10 classes (labels follow
       :data:`CIFAR10_CLASSES`, files are read in name order and resized to 32x32
       if needed), or a folder containing such a tree named ``cifar10-jpg/``; or a
       ``.tar.gz`` of such a tree, which is extracted once into
       ``<data folder>/extracted/``. Nothing else is searched when ``path`` is given.
    2. The local data folder (``$TRANSFERKIT_DATA``, default
       ``~/.transferkit/data``, see :func:`get_data_dir`), searched for
       ``cifar-10-batches-py/``, ``cifar-10-python.tar.gz``, ``cifar10-jpg/`` and
       ``cifar10-jpg.tar.gz`` in that order; then Keras' download cache
       (``$KERAS_HOME/datasets``, default ``~/.keras/datasets``).
    3. ``keras.datasets.cifar10.load_data()``, which downloads the official
       archive (about 170 MB), when ``download`` is true.

    The official batch files are Python pickles. They are read with an unpickler
    that can only rebuild containers and NumPy arrays, so a tampered file is
    refused instead of running code. Archives are extracted only after every
    member has been checked (no absolute paths, ``..``, links or device files).

    Parameters
    ----------
    path : str or os.PathLike, optional
        A CIFAR-10 archive or folder in one of the layouts above.
    download : bool, default True
        Whether to download with Keras when nothing is found locally.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuple of numpy.ndarray
        ``x_*`` are ``uint8`` arrays of shape ``(n, 32, 32, 3)`` (RGB,
        channels last); ``y_*`` are ``int64`` arrays of shape ``(n,)`` with
        values in ``0..9``.

    Raises
    ------
    DatasetNotFoundError
        ``path`` does not exist, or nothing was found locally and the download
        is disabled or failed; the message says where to put the archive.
    InvalidInputError
        ``path`` is not a recognised layout, or a file is incomplete, damaged or
        unsafe (a pickle referencing code, an archive member escaping its folder).

    See Also
    --------
    load_cifar10_sample : 6,000 images bundled with the package, no download.

    Examples
    --------
    >>> (x_train, y_train), (x_test, y_test) = load_cifar10()  # doctest: +SKIP
    >>> x_train.shape, y_train.shape, CIFAR10_CLASSES[y_train[0]]  # doctest: +SKIP
    ((50000, 32, 32, 3), (50000,), 'frog')
    """
    return _locate_and_load(path, download)[0]


def _locate_and_load(path: Any, download: Any) -> tuple[Arrays, str]:
    """:func:`load_cifar10`'s work; also returns a description of the source used."""
    download = _check_bool("download", download)
    if path is not None:
        location = _as_path("path", path)
        if not location.exists():
            raise DatasetNotFoundError(
                f"`path` '{location}' does not exist. Pass an existing CIFAR-10 archive or "
                f"folder; recognised layouts:\n{_CIFAR_LAYOUTS}"
            )
        if location.is_dir():
            found = _find_in_folder(location)
            if found is None:
                raise InvalidInputError(
                    f"`path` '{location}' is a folder in no recognised CIFAR-10 layout. "
                    f"Recognised layouts:\n{_CIFAR_LAYOUTS}"
                )
            return _load_found(*found), _describe_source(*found)
        if not tarfile.is_tarfile(location):
            raise InvalidInputError(
                f"`path` '{location}' is a file but not a tar archive. Recognised CIFAR-10 "
                f"layouts:\n{_CIFAR_LAYOUTS}"
            )
        return _load_archive(location), _describe_source("archive", location)

    data_dir = get_data_dir()
    looked = [f"{data_dir} (${DATA_DIR_ENV})"] + [str(d) for d in _keras_dataset_dirs()]
    found = _find_in_folder(data_dir, itself=False) if data_dir.is_dir() else None
    found = found or _find_in_keras_cache()
    if found is not None:
        return _load_found(*found), _describe_source(*found)
    if not download:
        raise DatasetNotFoundError(_not_found_message(data_dir, looked, "download=False"))
    try:
        result = _download_with_keras()
    except Exception as err:  # offline, proxy, disk full, hash mismatch...
        reason = f"downloading it with Keras failed ({type(err).__name__}: {err})"
        raise DatasetNotFoundError(_not_found_message(data_dir, looked, reason)) from err
    return _from_keras_arrays(result), "CIFAR-10 downloaded by Keras"


def _describe_source(kind: str, location: Path) -> str:
    if kind == "tree":
        return f"CIFAR-10 JPEG/PNG image tree '{location}'"
    return f"CIFAR-10 from '{location}'"


def load_cifar10_or_sample(
    path: str | os.PathLike[str] | None = None, *, download: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], str]:
    """Load CIFAR-10 like :func:`load_cifar10`, or the bundled sample when it is unavailable.

    Convenient for examples and demos that must also run offline. When ``path``
    is given it is loaded as :func:`load_cifar10` would, and its errors are
    raised (an explicit path never falls back silently). Otherwise the local
    copies and the download are tried, and if CIFAR-10 cannot be found the
    6,000-image :func:`load_cifar10_sample` is returned instead.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A CIFAR-10 archive or folder (see :func:`load_cifar10`).
    download : bool, default True
        Whether to try Keras' download before falling back to the sample.

    Returns
    -------
    (x_train, y_train), (x_test, y_test), source
        The arrays as :func:`load_cifar10` returns them, and a short text saying
        where they came from (e.g. ``"bundled CIFAR-10 sample ..."``).
    """
    download = _check_bool("download", download)
    if path is not None:
        (train, test), source = _locate_and_load(path, download)
        return train, test, source
    try:
        (train, test), source = _locate_and_load(None, download)
    except DatasetNotFoundError:
        train, test = load_cifar10_sample()
        source = (
            "bundled CIFAR-10 sample (5,000 train / 1,000 test images, JPEG re-encoded; "
            "CIFAR-10 itself was not found)"
        )
    return train, test, source


def balanced_subset(x: Any, y: Any, n: int | None) -> tuple[Any, np.ndarray]:
    """Keep ``n`` examples spread evenly over the classes, in their original order.

    Classes take turns, each giving its first examples in order, until ``n`` are
    chosen (a class that runs out leaves its turn to the others). The result is
    deterministic, and ``n`` at least ``len(y)`` (or None) returns the inputs.

    Parameters
    ----------
    x : array-like of shape (m, ...)
        Examples; anything indexable by an integer array (NumPy array,
        :class:`ImageFolderDataset`...).
    y : array-like of shape (m,)
        Integer labels.
    n : int or None
        Number of examples to keep.

    Returns
    -------
    x_subset, y_subset
        ``x[keep]`` and ``y[keep]`` for sorted indices ``keep``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(8)
    >>> balanced_subset(x, np.array([0, 0, 0, 0, 0, 1, 1, 2]), 5)[0]
    array([0, 1, 5, 6, 7])
    """
    labels = np.asarray(y)
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise InvalidInputError(
            f"`y` must be a 1-D array of integer labels; received {describe(labels)}."
        )
    if len(x) != len(labels):
        raise InvalidInputError(
            f"`x` and `y` must have the same length; received {len(x)} examples and "
            f"{len(labels)} labels."
        )
    count = check_positive_int("n", n, allow_none=True)
    if count is None or count >= len(labels):
        return x, labels
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    longest = max(len(idx) for idx in per_class)
    grid = np.full((longest, len(per_class)), -1, dtype=np.int64)
    for column, idx in enumerate(per_class):
        grid[: len(idx), column] = idx
    turns = grid.reshape(-1)
    keep = np.sort(turns[turns >= 0][:count])
    return x[keep], labels[keep]


# --------------------------------------------------------------------------------------
# Bundled sample
# --------------------------------------------------------------------------------------


def _decode_jpeg_buffer(
    buffer: np.ndarray, offsets: np.ndarray, start: int, stop: int
) -> np.ndarray:
    from PIL import Image

    out = np.empty((stop - start, 32, 32, 3), dtype=np.uint8)
    view = memoryview(buffer)
    for k, i in enumerate(range(start, stop)):
        with Image.open(io.BytesIO(view[offsets[i] : offsets[i + 1]])) as image:
            out[k] = np.asarray(image.convert("RGB"))
    return out


def load_cifar10_sample() -> Arrays:
    """Load the small CIFAR-10 sample bundled with transferkit (no download).

    6,000 images: 500 training and 100 test images per class, the first images
    of each class in the original CIFAR-10 order (Krizhevsky, 2009, "Learning
    Multiple Layers of Features from Tiny Images"). They are stored as JPEG
    re-encodings (about quality 75, mean absolute error about 6/255 against the
    original pixels) and decoded with Pillow on each call (about 0.4 s), so
    accuracy measured on them is close to, not exactly, that on the original files.

    Images are interleaved by class (airplane, automobile, ..., truck, airplane,
    ...), so any prefix such as ``x_train[:1000]`` is balanced.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuple of numpy.ndarray
        ``x_train`` is ``uint8`` of shape ``(5000, 32, 32, 3)``, ``x_test`` of
        shape ``(1000, 32, 32, 3)``; ``y_*`` are ``int64`` of shape ``(n,)``,
        class names in :data:`CIFAR10_CLASSES`.

    Raises
    ------
    DatasetNotFoundError
        The sample file is missing or damaged (a broken installation).

    Examples
    --------
    >>> (x_train, y_train), (x_test, y_test) = load_cifar10_sample()
    >>> x_train.shape, x_test.shape, y_train.dtype.name
    ((5000, 32, 32, 3), (1000, 32, 32, 3), 'int64')
    """
    from importlib import resources

    resource = resources.files("transferkit").joinpath("data").joinpath("cifar10_sample.npz")
    fix = (
        "Reinstall transferkit, or regenerate the file with "
        "`python scripts/make_cifar10_sample.py --source <cifar10-jpg folder>`."
    )
    try:
        with resources.as_file(resource) as file, np.load(file, allow_pickle=False) as npz:
            buffer = npz["jpeg_bytes"]
            offsets = npz["offsets"]
            labels = npz["labels"]
            n_train = int(npz["n_train"])
            classes = tuple(str(c) for c in npz["class_names"])
        ok = (
            buffer.dtype == np.uint8
            and buffer.ndim == 1
            and offsets.shape == (labels.shape[0] + 1,)
            and classes == CIFAR10_CLASSES
            and 0 < n_train < labels.shape[0]
        )
        if not ok:
            raise ValueError("unexpected arrays in the sample file")
        x_train = _decode_jpeg_buffer(buffer, offsets, 0, n_train)
        x_test = _decode_jpeg_buffer(buffer, offsets, n_train, labels.shape[0])
    except Exception as err:  # missing file, damaged zip, undecodable JPEG...
        raise DatasetNotFoundError(
            f"The bundled CIFAR-10 sample ({resource}) is missing or damaged "
            f"({type(err).__name__}: {err}). {fix}"
        ) from err
    labels = labels.astype(np.int64)
    return (x_train, labels[:n_train].copy()), (x_test, labels[n_train:].copy())


# --------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------


def _read_image(path: Path, size: tuple[int, int] | None, resample: int) -> np.ndarray:
    """Decode ``path`` to an RGB uint8 array of shape (H, W, 3), resized to ``size``."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as opened:
            image = opened
            if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                image = ImageOps.exif_transpose(image)
            if image.mode.startswith("I;16"):  # 16-bit grayscale: keep the 8 high bits
                high = np.asarray(image, dtype=np.uint16) >> 8
                image = Image.fromarray(high.astype(np.uint8), "L")
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")
            if image.mode != "RGB":
                image = image.convert("RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), resample=resample)
            return np.asarray(image, dtype=np.uint8)
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise ImageReadError(
            f"Could not read the image file '{path}': {type(err).__name__}: {err}. Replace or "
            "remove the file (or give it an extension not listed in `extensions`)."
        ) from err


class ImageFolderDataset:
    """Images in ``root/<class>/...`` read on demand, as an array-like of uint8 NHWC images.

    Made by :func:`load_image_folder`; nothing is decoded until asked. It duck-types
    as a read-only image array: ``len(ds)``, ``ds.shape == (n, H, W, 3)``,
    ``ds.dtype == uint8``, ``ds[i]``, ``ds[a:b]``, ``ds[[i, j]]`` and
    ``np.asarray(ds)``; :meth:`iter_batches` streams it, and :meth:`fingerprint`
    identifies its content for the feature cache.

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
    image_size : tuple of int or None
        ``(height, width)`` images are resized to, or None to keep their size.
    interpolation : str
        Resampling filter used when resizing.
    batch_size : int
        Default batch size of :meth:`iter_batches`.
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
        self.root = root
        self.class_names = class_names
        self.files = files
        self.labels = labels
        self.image_size = image_size
        self.interpolation = interpolation
        self.batch_size = batch_size
        self._resample = _resample_filter(interpolation)
        self._native_size: tuple[int, int] | None = None

    # -- array-like protocol ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.files)

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
        return (len(self.files), height, width, 3)

    def __getitem__(self, index: Any) -> np.ndarray:
        n = len(self.files)
        if isinstance(index, int | np.integer) and not isinstance(index, bool):
            i = int(index)
            if not -n <= i < n:
                raise _IndexOutOfRangeError(
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
                "an ImageFolderDataset index must be an int, a slice, a 1-D sequence of ints "
                f"or a boolean mask of length {n}; received {describe(index)}."
            )
        bad = positions[(positions < -n) | (positions >= n)]
        if bad.size:
            raise _IndexOutOfRangeError(
                f"index {int(bad[0])} is out of range for a dataset of {n} images."
            )
        return self._read([int(i) % n for i in positions])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if copy is False:
            raise InvalidInputError(
                "An ImageFolderDataset cannot be viewed as an array without copying (its "
                "images are read from disk); use `np.asarray(ds)` or `ds.load()`."
            )
        images = self._read(range(len(self.files)))
        return images if dtype is None else images.astype(dtype)

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset(root='{self.root}', n={len(self.files)}, "
            f"classes={len(self.class_names)}, image_size={self.image_size}, "
            f"interpolation='{self.interpolation}')"
        )

    # -- reading ---------------------------------------------------------------------------

    def _target_size(self) -> tuple[int, int]:
        if self.image_size is not None:
            return self.image_size
        if self._native_size is None:
            first = self.files[0]
            from PIL import Image

            try:
                with Image.open(first) as image:
                    width, height = image.size
                    if image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # rotated
                        width, height = height, width
            except Exception as err:
                raise ImageReadError(
                    f"Could not read the image file '{first}': {type(err).__name__}: {err}. "
                    "Replace or remove the file."
                ) from err
            self._native_size = (height, width)
        return self._native_size

    def _read(self, positions: Iterable[int]) -> np.ndarray:
        positions = list(positions)
        height, width = self._target_size() if positions else (0, 0)
        _check_fits_in_memory(len(positions), height, width)
        out = np.empty((len(positions), height, width, 3), dtype=np.uint8)
        for k, i in enumerate(positions):
            image = _read_image(self.files[i], self.image_size, self._resample)
            if image.shape[:2] != (height, width):
                raise InvalidInputError(
                    f"With `image_size=None` all images must have the same size, but "
                    f"'{self.files[i]}' is {image.shape[0]}x{image.shape[1]} (height x width) "
                    f"while '{self.files[0]}' is {height}x{width}. Pass `image_size=(height, "
                    "width)` to resize them."
                )
            out[k] = image
        return out

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Read every image into memory.

        Returns
        -------
        x : numpy.ndarray
            ``uint8`` array of shape ``(n, height, width, 3)``.
        y : numpy.ndarray
            ``int64`` labels of shape ``(n,)`` (a copy of :attr:`labels`).
        """
        return self._read(range(len(self.files))), self.labels.copy()

    def iter_batches(self, batch_size: int | None = None, start: int = 0) -> Iterator[np.ndarray]:
        """Yield the images ``start:`` in order, one batch in memory at a time.

        Parameters
        ----------
        batch_size : int, optional
            Images per batch (the last may be smaller); default :attr:`batch_size`.
        start : int, default 0
            Index of the first image, e.g. to resume an interrupted pass.

        Yields
        ------
        numpy.ndarray
            ``uint8`` arrays of shape ``(b, height, width, 3)``.
        """
        size = check_positive_int("batch_size", batch_size, allow_none=True) or self.batch_size
        n = len(self.files)
        if isinstance(start, bool) or not isinstance(start, int | np.integer):
            raise InvalidTypeError(f"`start` must be an int in 0..{n}; received {describe(start)}.")
        if not 0 <= start <= n:
            raise InvalidInputError(
                f"`start` must be in 0..{n} (the dataset size); received {start}."
            )
        return self._iter(int(start), int(size))

    def _iter(self, start: int, size: int) -> Iterator[np.ndarray]:
        for begin in range(start, len(self.files), size):
            yield self._read(range(begin, min(begin + size, len(self.files))))

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
        header = {
            "format": "transferkit.ImageFolderDataset",
            "version": _FINGERPRINT_VERSION,
            "decode": "pillow:exif_transpose:rgb",
            "class_names": self.class_names,
            "image_size": list(self.image_size) if self.image_size else None,
            "interpolation": self.interpolation,
            "n": len(self.files),
        }
        digest.update(json.dumps(header, sort_keys=True).encode() + b"\0")
        for file, label in zip(self.files, self.labels, strict=True):
            relative = file.relative_to(self.root).as_posix().encode("utf-8", "surrogateescape")
            digest.update(len(relative).to_bytes(8, "little") + relative)
            digest.update(int(label).to_bytes(8, "little"))
            try:
                with open(file, "rb") as handle:
                    digest.update(os.fstat(handle.fileno()).st_size.to_bytes(8, "little"))
                    while chunk := handle.read(_READ_CHUNK):
                        digest.update(chunk)
            except OSError as err:
                raise ImageReadError(
                    f"Could not read the image file '{file}' to fingerprint the dataset: "
                    f"{err}. Check that it still exists and is readable."
                ) from err
        return digest.hexdigest()


def _list_images(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Image files under ``folder``, at any depth, following symlinked folders.

    A folder reached a second time (a symlink loop, or two links to one folder) is
    walked once: the images are listed once, and a warning names the link skipped.
    """
    found = []
    seen: dict[tuple[int, int], Path] = {}
    with contextlib.suppress(OSError):
        st = os.stat(folder)
        seen[(st.st_dev, st.st_ino)] = folder
    for directory, subdirs, names in os.walk(folder, followlinks=True):
        kept = []
        for name in sorted(subdirs):  # sorted: the same link is skipped on every run
            if name.startswith("."):
                continue
            path = Path(directory, name)
            try:
                st = os.stat(path)
            except OSError:  # vanished, or a link that no longer resolves
                continue
            first = seen.setdefault((st.st_dev, st.st_ino), path)
            if first != path:
                _warn_revisited(path, first)
                continue
            kept.append(name)
        subdirs[:] = kept
        for name in names:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                found.append(Path(directory, name))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _warn_revisited(link: Path, first: Path) -> None:
    import warnings

    target = os.path.realpath(link)
    if first in link.parents:
        reason = f"a symlink loop: it leads back to '{first}', which contains it"
    else:
        reason = f"it leads to a folder already listed as '{first}', whose images count once"
    warnings.warn(
        f"Skipped the folder '{link}' (-> '{target}'): {reason}.", UserWarning, stacklevel=4
    )


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
    folder = _as_path("root", root)
    size = _normalize_image_size(image_size)
    if size is not None:
        _check_fits_in_memory(1, *size)
    batch = check_positive_int("batch_size", batch_size)
    if not isinstance(interpolation, str):
        raise InvalidTypeError(
            f"`interpolation` must be one of {list(INTERPOLATIONS)}; received "
            f"{describe(interpolation)}."
        )
    interpolation = check_choice("interpolation", interpolation.lower(), INTERPOLATIONS)
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
        loose = _list_images_shallow(folder, exts)
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
        found = _list_images(folder / name, exts)
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


def _check_fits_in_memory(n: int, height: int, width: int) -> None:
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


def _list_images_shallow(folder: Path, extensions: tuple[str, ...]) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)
