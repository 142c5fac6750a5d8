"""CIFAR-10 (Krizhevsky, 2009): the full dataset from local files or Keras, and a bundled sample.

Sources :func:`load_cifar10` recognises (the text of ``_CIFAR_LAYOUTS`` lists them
for error messages):

* the official archive ``cifar-10-python.tar.gz``, read in one streaming pass
  with nothing written to disk;
* its extracted folder ``cifar-10-batches-py/`` (``data_batch_1`` ...
  ``data_batch_5`` and ``test_batch``), or a folder containing it;
* an image tree ``train/<class>/`` + ``test/<class>/`` whose class folders are
  exactly :data:`CIFAR10_CLASSES`, or a folder containing one named
  ``cifar10-jpg/``; it is read as an image folder at 32x32 (bilinear);
* a ``.tar.gz`` of such a tree, extracted once into
  ``<data folder>/extracted/<stem>-<key>/``, where the key hashes the archive's
  resolved path, size and modification time (an extraction goes to a
  ``.partial`` folder first, then is renamed, so a half-written one is never used);
* Keras' download cache, and ``keras.datasets.cifar10.load_data()`` itself.

Official data is preferred to the lossy JPEG tree, and extracted folders to
archives. The batches are Python pickles, read with the restricted unpickler of
:mod:`transferkit.datasets._archive`, and archives are extracted only after every
member was checked there.

Every loader returns ``(x_train, y_train), (x_test, y_test)``: ``uint8`` RGB
channels-last ``(n, 32, 32, 3)`` images (C-contiguous) and 1-D ``int64`` labels in
``0..9``, label ``k`` being ``CIFAR10_CLASSES[k]``.

The bundled sample ``transferkit/data/cifar10_sample.npz`` (built by
``scripts/make_cifar10_sample.py``, format version 1, read with
``allow_pickle=False``) holds ``jpeg_bytes`` (uint8, all JPEG files back to back),
``offsets`` (int64, ``n + 1``: image ``i`` is ``jpeg_bytes[offsets[i]:offsets[i + 1]]``),
``labels`` (int64), ``n_train`` (images ``[0, n_train)`` are training images),
``class_names`` (must equal :data:`CIFAR10_CLASSES`), ``description`` and
``format_version``.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .._validation import check_bool, describe
from ..exceptions import DatasetNotFoundError, InvalidInputError
from ._archive import RefusedGlobalError, archive_stem, restricted_loads, safe_extract_tar
from ._paths import DATA_DIR_ENV, DEFAULT_DATA_DIR, as_path, get_data_dir, keras_dataset_dirs
from .image_folder import load_image_folder

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_URL",
    "load_cifar10",
    "load_cifar10_or_sample",
    "load_cifar10_sample",
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

_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_BATCH = "test_batch"
_BATCH_NAMES = (*_TRAIN_BATCHES, _TEST_BATCH)

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


# --------------------------------------------------------------------------------------
# The official batches (restricted pickles)
# --------------------------------------------------------------------------------------


def _parse_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pickled CIFAR-10 batch into NHWC uint8 images and int64 labels."""
    redownload = f"Delete it and download the official archive again from {CIFAR10_URL}."
    try:
        obj = restricted_loads(data)
    except RefusedGlobalError as err:
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
# Archives: the official one, read in memory; an image tree's, extracted once
# --------------------------------------------------------------------------------------


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
    dest = cache / f"{archive_stem(archive)}-{key}"
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
            safe_extract_tar(archive, partial)
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
    for datasets in keras_dataset_dirs():
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


# --------------------------------------------------------------------------------------
# Keras' download
# --------------------------------------------------------------------------------------


def download_with_keras() -> Any:
    """Download CIFAR-10 with ``keras.datasets.cifar10.load_data()`` (imports Keras).

    Called through this module's global name at every download, so it is the one seam
    tests replace to stay offline
    (``monkeypatch.setattr(transferkit.datasets.cifar10, "download_with_keras", ...)``).
    """
    from .._lazy import import_keras

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


# --------------------------------------------------------------------------------------
# load_cifar10 and load_cifar10_or_sample
# --------------------------------------------------------------------------------------


def _not_found_message(data_dir: Path, looked: list[str], reason: str) -> str:
    places = "\n".join(f"  - {p}" for p in looked)
    return (
        f"CIFAR-10 was not found locally, and {reason}.\n"
        "To use it without downloading, do one of:\n"
        f"  - download the official archive {CIFAR10_URL} and put it at "
        f"'{data_dir / 'cifar-10-python.tar.gz'}' (the {DATA_DIR_ENV} folder, default "
        f"{DEFAULT_DATA_DIR}), or extract it there as '{data_dir / 'cifar-10-batches-py'}';\n"
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
    download = check_bool("download", download)
    if path is not None:
        location = as_path("path", path)
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
    looked = [f"{data_dir} (${DATA_DIR_ENV})"] + [str(d) for d in keras_dataset_dirs()]
    found = _find_in_folder(data_dir, itself=False) if data_dir.is_dir() else None
    found = found or _find_in_keras_cache()
    if found is not None:
        return _load_found(*found), _describe_source(*found)
    if not download:
        raise DatasetNotFoundError(_not_found_message(data_dir, looked, "download=False"))
    try:
        result = download_with_keras()
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
    download = check_bool("download", download)
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
