"""An HDF5 feature cache: run the backbone once, train heads again and again.

Each entry holds the features one extractor produced for one collection of images.
Its key combines the extractor's fingerprint (weights, layer, pooling, input size,
preprocessing, dtype...) with a fingerprint of the images (every pixel, their order),
so a changed setting or changed data never gets stale features.

Extraction streams batch by batch into a chunked, resizable dataset, flushing the
file after every batch together with a progress counter. If it is interrupted (an
exception, Ctrl-C, a killed process), the next call resumes from the last complete
batch, with the same batch boundaries, so the result equals an uninterrupted run.

The extraction is pipelined (see :mod:`transferkit._pipeline`): a reader thread
prepares the next batches of images, the calling thread runs the backbone, and a
writer thread writes the previous batch's rows, progress counter and flush, so the
backbone never waits for the disk. A batch counts as done only once its rows and the
progress counter are flushed, in order; a crash loses at most the batches still in
flight (computed or queued, never half-written), and an exception in the backbone
lets the writer finish every batch computed before it. The writer holds the
``.sync`` lock exclusively only while it writes and flushes one batch.

Images can be arrays, ``h5py`` datasets, or streams larger than memory: any object
with ``shape``, ``dtype``, ``iter_batches(batch_size, start=0)`` and a
``fingerprint()`` naming its content, such as :class:`ImageStream` (images produced
by a function or a generator) or an image folder
(:func:`transferkit.datasets.load_image_folder`). Only a few batches of them are in
memory at once; pass ``lazy=True`` to :meth:`FeatureCache.extract` to keep the
features on disk too.

File layout (HDF5)::

    /                          attrs: format, format_version
    /entries/<key>/            attrs: extractor, extractor_config (JSON), fingerprints,
                                      n_images, feature_dim, batch_size, versions (JSON),
                                      created, completed, complete, class_names (JSON),
                                      extract_seconds (backbone time, summed over resumes)
    /entries/<key>/features    float32 (n_done, d), chunked, grows to (n_images, d)
    /entries/<key>/progress    int64 scalar: rows written and flushed
    /entries/<key>/labels      optional, (n_images,)

A sharded entry (written by :func:`transferkit.distributed.merge_shards`) has the same
layout, except that ``features`` is an HDF5 virtual dataset over shard files in the
folder ``<cache file>.shards/<key>/`` and the attrs ``shards`` (JSON: each shard's
file, key and row range), ``n_shards`` and ``shard_nbytes``. Its rows are read from the
shard files, each checked first: a missing or damaged shard raises
:class:`~transferkit.exceptions.ShardsMissingError` naming it, never rows filled in.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import platform
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import __version__, _shards
from ._cost import CHUNK_BYTES, chunk_rows
from ._hashing import hash_images, hash_json
from ._locks import FileLock, writer_lock
from ._pipeline import BackgroundWriter, ImageStream
from ._signals import sigterm_raises
from ._validation import check_images, check_positive_int, describe
from .exceptions import (
    CacheCorruptedError,
    CacheError,
    CacheLockedError,
    InvalidInputError,
    InvalidTypeError,
    ShardsMissingError,
    Terminated,
)

__all__ = ["FeatureCache", "CacheEntry", "ImageStream", "LazyFeatures", "FORMAT_VERSION"]

FORMAT_NAME = "transferkit.FeatureCache"
#: Layout version written into every cache file; files from a newer version are refused.
FORMAT_VERSION = 1
_CHUNK_BYTES = CHUNK_BYTES
_OPEN_RETRIES = 4
#: HDF5 chunk cache of a writer's file: a few ~1 MiB feature chunks, so a chunk that
#: consecutive batches fill is not read back between them.
_WRITE_CHUNK_CACHE = 4 * CHUNK_BYTES
#: Computed batches waiting for the writer thread.
_WRITE_QUEUE = 2


#: Old private name of :func:`transferkit._locks.writer_lock`, for callers not yet moved.
_writer_lock = writer_lock


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    out = {
        "transferkit": __version__,
        "numpy": np.__version__,
        "h5py": h5py.version.version,
        "hdf5": h5py.version.hdf5_version,
        "python": platform.python_version(),
    }
    for mod in ("tensorflow", "keras"):
        module = __import__("sys").modules.get(mod)
        if module is not None:
            out[mod] = getattr(module, "__version__", "?")
    return out


@dataclass(frozen=True)
class CacheEntry:
    """What the cache knows about one entry (see :meth:`FeatureCache.entries`).

    ``n_shards`` is 0 for an ordinary entry, and the number of shard files for a
    sharded one (see :mod:`transferkit.distributed`), whose ``nbytes`` counts the
    shard files' feature storage.
    """

    key: str
    extractor: str
    extractor_config: dict[str, Any]
    extractor_fingerprint: str
    data_fingerprint: str
    n_images: int
    n_done: int
    feature_dim: int
    complete: bool
    created: str
    completed: str | None
    versions: dict[str, str] = field(default_factory=dict)
    has_labels: bool = False
    class_names: list[str] | None = None
    nbytes: int = 0
    extract_seconds: float = 0.0
    n_shards: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the full feature array."""
        return (self.n_images, self.feature_dim)


class LazyFeatures:
    """Read-only, lazily loaded view of a cached feature array.

    Slicing reads only the rows asked for; ``np.asarray(lazy)`` reads everything.
    The file is opened for each read, so no handle is held between reads. The rows of
    a sharded entry are read from its shard files, each checked before it is read.
    """

    def __init__(
        self,
        path: Path,
        key: str,
        shape: tuple[int, int],
        shards: list[_shards.ShardRef] | None = None,
    ) -> None:
        self._path = Path(path)
        self._key = key
        self.shape = shape
        self.dtype = np.dtype(np.float32)
        self.ndim = 2
        self._shards = shards

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        if self._shards is not None:
            try:
                return _shards.read_rows(self._path, self._shards, *self.shape, index)
            except _shards.ShardReadError as exc:
                raise _shards_missing(self._path, self._key, self._shards, self.shape[1],
                                      exc) from exc
        try:
            with FileLock(self._path, ".sync").held(shared=True), h5py.File(
                self._path, "r", locking=False
            ) as f:
                return f["entries"][self._key]["features"][index]
        except OSError as exc:
            raise CacheCorruptedError(
                f"Reading entry {self._key!r} of {str(self._path)!r} failed ({exc}); the file "
                "was moved, deleted or damaged. `FeatureCache(path).repair()` keeps what "
                "can still be read."
            ) from exc

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[()]
        return arr if dtype is None else arr.astype(dtype)

    def iter_batches(self, batch_size: int = 4096) -> Iterator[np.ndarray]:
        """Yield consecutive blocks of rows, one file read each."""
        for i in range(0, len(self), batch_size):
            yield self[i : i + batch_size]

    def __repr__(self) -> str:
        return f"LazyFeatures(path={str(self._path)!r}, key={self._key!r}, shape={self.shape})"


def _shards_missing(
    path: Path, key: str, refs: list[_shards.ShardRef], d: int,
    failure: _shards.ShardReadError | None = None,
) -> ShardsMissingError:
    """The error for a sharded entry with shards that cannot be read (checks them all)."""
    problems = dict(failure.problems) if failure is not None else {}
    for ref in refs:
        if ref.index not in problems:
            problem = _shards.shard_problem(path, ref, d)
            if problem is not None:
                problems[ref.index] = problem
    by_index = {r.index: r for r in refs}
    lines = "; ".join(
        f"shard {i} (images {by_index[i].start}..{by_index[i].stop - 1}): {why}"
        for i, why in sorted(problems.items())
    )
    missing = sorted(problems)
    return ShardsMissingError(
        f"Entry {key!r} in {str(path)!r} is stored in {len(refs)} shard files and "
        f"{len(missing)} of them cannot be read (shards {missing}): {lines}. Its rows are "
        "never served filled in. Run `transferkit.distributed.extract_distributed` again "
        "with the same extractor and images to re-extract only these shards, or "
        f"`cache.delete({key!r})` to drop the entry and its shard files.",
        missing,
    )


class FeatureCache:
    """Features of (extractor, images) pairs, stored in one HDF5 file.

    Parameters
    ----------
    path : str or path-like
        The HDF5 file; created on first write. Its folder must exist or be creatable.
    compression : {None, "gzip", "lzf"}, default=None
        HDF5 compression of feature arrays. Off by default: features compress
        poorly and compression slows reads.

    Examples
    --------
    >>> cache = FeatureCache("cifar10_features.h5")           # doctest: +SKIP
    >>> f_train = cache.extract(vgg, x_train, labels=y_train)  # runs the backbone once
    >>> f_train = cache.extract(vgg, x_train)                  # read back from disk
    >>> [e.key for e in cache.entries()]                       # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], *, compression: str | None = None) -> None:
        if not isinstance(path, str | os.PathLike):
            raise InvalidTypeError(f"`path` must be a file path; received {describe(path)}.")
        if compression not in (None, "gzip", "lzf"):
            raise InvalidInputError(
                f"`compression` must be None, 'gzip' or 'lzf'; received {compression!r}."
            )
        self.path = Path(path)
        self.compression = compression
        self._sync: FileLock | None = None
        self._check_not_a_directory()

    def _check_not_a_directory(self) -> None:
        if self.path.is_dir():
            raise InvalidInputError(
                f"`path` must name a cache file, not a directory; received {str(self.path)!r}, "
                "which is a directory. Pass a file path inside it, e.g. "
                f"{str(self.path / 'features.h5')!r}."
            )

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.path)!r})"

    # ------------------------------------------------------------------ opening
    @contextlib.contextmanager
    def _open(self, mode: str) -> Iterator[h5py.File]:
        """Open the file; readers neither take nor honour HDF5's lock.

        Writers are serialised by the ``.lock`` file; readers and the writer
        synchronise on the ``.sync`` file, which the writer releases while its
        backbone computes. A reader therefore opens the file between two flushed
        batches: it sees complete entries as they are, in-progress ones as incomplete.
        """
        self._check_not_a_directory()
        if mode == "r" and not self.path.exists():
            raise CacheError(f"The feature cache {str(self.path)!r} does not exist yet.")
        if mode != "r":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                self._create_file()
        sync = FileLock(self.path, ".sync")
        sync.acquire(shared=mode == "r")
        try:
            with self._open_locked(mode) as f:
                self._sync = sync
                yield f
        finally:
            self._sync = None
            sync.release()

    def _create_file(self) -> None:
        """Create an empty cache file that is complete the moment it appears.

        The file is written and closed under a temporary name, then linked into place,
        so a process killed at any moment leaves either no file or a valid empty cache,
        never a half-written HDF5 header. Linking never replaces a file that appeared
        meanwhile.
        """
        tmp = self.path.with_name(f".{self.path.name}.new-{os.getpid()}")
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = FORMAT_NAME
                f.attrs["format_version"] = FORMAT_VERSION
                f.create_group("entries")
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process created it first: use theirs
            except OSError:  # no hard links on this file system: we hold the writer lock
                if not self.path.exists():
                    os.replace(tmp, self.path)
        except PermissionError as exc:
            raise CacheError(
                f"Cannot create the feature cache {str(self.path)!r}: permission denied. "
                "Choose a writable location for the cache file (the `path` argument)."
            ) from exc
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    @contextlib.contextmanager
    def _open_locked(self, mode: str) -> Iterator[h5py.File]:
        f = None
        for attempt in range(_OPEN_RETRIES):
            try:
                f = (
                    h5py.File(self.path, mode, locking=False)
                    if mode == "r"
                    else h5py.File(self.path, mode, rdcc_nbytes=_WRITE_CHUNK_CACHE)
                )
                break
            except PermissionError as exc:
                raise CacheError(
                    f"Cannot open the feature cache {str(self.path)!r} for "
                    f"{'reading' if mode == 'r' else 'writing'}: permission denied. Choose a "
                    "writable location for the cache file (the `path` argument)."
                ) from exc
            except OSError as exc:
                if self.path.exists() and not h5py.is_hdf5(self.path):
                    raise CacheCorruptedError(
                        f"{str(self.path)!r} is not an HDF5 feature cache (not an HDF5 file, "
                        "or its header is damaged). transferkit never overwrites it: move it "
                        "away or pass another `path`; if it was a cache, "
                        "`FeatureCache(path).repair()` sets it aside and starts a new one."
                    ) from exc
                if attempt + 1 < _OPEN_RETRIES:  # a writer may be mid-flush: try again
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise CacheCorruptedError(
                    f"The feature cache {str(self.path)!r} cannot be opened ({exc}). If "
                    "another program holds it open, close that program. If the file is "
                    "damaged (e.g. truncated by a full disk), `FeatureCache(path).repair()` "
                    "keeps every entry that can still be read, sets the damaged file aside "
                    "and rebuilds the cache; lost entries are re-extracted when needed."
                ) from exc
        if f is None:  # pragma: no cover - the loop either breaks or raises
            raise CacheError(f"Could not open {str(self.path)!r}.")
        try:
            self._check_format(f, writing=mode != "r")
            yield f
        finally:
            f.close()

    def _check_format(self, f: h5py.File, *, writing: bool) -> None:
        fmt = f.attrs.get("format")
        if fmt is None:
            if len(f.keys()) and "entries" not in f:
                raise CacheCorruptedError(
                    f"{str(self.path)!r} is an HDF5 file but not a transferkit feature cache; "
                    "pass another `path`."
                )
            if writing:
                f.attrs["format"] = FORMAT_NAME
                f.attrs["format_version"] = FORMAT_VERSION
            return
        version = int(f.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise CacheCorruptedError(
                f"{str(self.path)!r} was written by a newer transferkit (cache format "
                f"{version}; this version reads up to {FORMAT_VERSION}). Upgrade transferkit "
                "(`pip install -U transferkit`) or use another cache file."
            )

    # ------------------------------------------------------------------ keys
    def key(self, extractor: Any, images: Any) -> str:
        """The entry key for ``extractor`` applied to ``images`` (no extraction)."""
        fp = self._extractor_fingerprint(extractor)
        return self._key(fp, hash_images(check_images(images, name="images")))

    @staticmethod
    def _key(extractor_fp: str, data_fp: str) -> str:
        return hash_json({"extractor": extractor_fp, "data": data_fp})

    @staticmethod
    def _extractor_fingerprint(extractor: Any) -> str:
        fp = getattr(extractor, "fingerprint", None)
        if not isinstance(fp, str) or not hasattr(extractor, "iter_features"):
            raise InvalidTypeError(
                "`extractor` must be a transferkit extractor (with `fingerprint` and "
                f"`iter_features`); received {describe(extractor)}."
            )
        return fp

    # ------------------------------------------------------------------ extraction
    def extract(
        self,
        extractor: Any,
        images: Any,
        *,
        labels: Any = None,
        class_names: list[str] | None = None,
        batch_size: int | None = None,
        lazy: bool = False,
        verbose: int = 0,
    ) -> np.ndarray | LazyFeatures:
        """Features of ``images``: read from the cache, or extracted and stored.

        Parameters
        ----------
        extractor : BaseExtractor
            Any transferkit extractor (fitted, if it learns).
        images : array-like of shape (n, height, width, 3) or streamed images
            A NumPy array, an ``h5py`` dataset, or a stream: an object with
            ``shape``, ``dtype``, ``iter_batches(batch_size, start=0)`` and
            ``fingerprint()`` (its content's identity, used instead of hashing
            pixels), such as an :class:`ImageStream` or an image folder
            (:func:`transferkit.datasets.load_image_folder`); a stream's ``labels``
            and ``class_names``, if any, are stored too. Streams are read a few
            batches at a time, so they may be far larger than memory.
        labels : array-like of shape (n,), optional
            Stored with the entry (see :meth:`labels`); they do not change the key.
        class_names : list of str, optional
            Stored with the entry.
        batch_size : int, optional
            Images per forward pass; defaults to the extractor's. A resumed
            extraction keeps the batch size it started with.
        lazy : bool, default=False
            Return a :class:`LazyFeatures` view instead of loading the array (for
            features larger than memory).
        verbose : int, default=0
            1 shows progress with rate and time left on stderr
            (:class:`transferkit.progress.Progress`: a bar on a terminal, a line
            every 10% otherwise).

        Returns
        -------
        ndarray of shape (n, d), float32, or LazyFeatures
        """
        fp = self._extractor_fingerprint(extractor)
        images = check_images(images, name="images")
        n = int(images.shape[0])
        labels_arr, class_names = self._resolve_labels(images, labels, class_names, n)
        bs = check_positive_int("batch_size", batch_size, allow_none=True)
        data_fp = hash_images(images)
        key = self._key(fp, data_fp)

        hit = self._find_complete(key)
        if hit is not None and self._labels_stored(key, labels_arr, class_names):
            return self.load(key, lazy=lazy)  # a hit needs no write access
        if hit is not None:
            return self._hit_with_new_labels(key, labels_arr, class_names, lazy=lazy)

        with sigterm_raises():
            # Everything slow (building the backbone to learn its output width) happens
            # before the file is opened for writing: the file is never held open with
            # unflushed changes while a model builds.
            size = (int(images.shape[1]), int(images.shape[2]))
            d = int(extractor.output_dim(size))
            config = extractor.describe()
            bs = self._default_batch_size(extractor, bs)
            with writer_lock(self.path), self._open("a") as f:
                group = f.require_group("entries")
                entry = group.get(key)
                if entry is not None and not self._entry_is_valid(entry, n):
                    del group[key]  # an entry damaged before its first flush: rebuild it
                    entry = None
                created = entry is None
                if entry is None:
                    entry = self._create_entry(group, key, images, config, fp, data_fp, d, bs)
                if labels_arr is not None:
                    self._write_labels(entry, labels_arr)
                if class_names is not None:
                    entry.attrs["class_names"] = json.dumps(class_names)
                f.flush()
                if not bool(entry.attrs["complete"]):
                    try:
                        self._fill(f, entry, extractor, images, verbose=verbose)
                    except BaseException as exc:
                        done = int(entry["progress"][()])
                        if created and done == 0:
                            # Nothing computed (e.g. an unreadable image in the first
                            # batch): leave no empty entry behind.
                            del group[key]
                            f.flush()
                        if isinstance(exc, Terminated):
                            raise Terminated(
                                f"terminated (SIGTERM) after {done} of {n} images were "
                                f"stored in {str(self.path)!r}; call `extract` again with "
                                "the same extractor and images to resume"
                            ) from exc
                        raise
        return self.load(key, lazy=lazy)

    def _labels_stored(
        self, key: str, labels: np.ndarray | None, class_names: list[str] | None
    ) -> bool:
        """Whether entry ``key`` already holds these labels and class names (or none are given)."""
        if labels is None and class_names is None:
            return True
        with self._open("r") as f:
            entry = self._entry(f, key, need_complete=False)
            if class_names is not None:
                stored = entry.attrs.get("class_names")
                if stored is None or json.loads(stored) != list(class_names):
                    return False
            if labels is not None:
                if "labels" not in entry:
                    return False
                if not self._same_labels(entry["labels"], labels):
                    return False
        return True

    def _hit_with_new_labels(
        self, key: str, labels: np.ndarray | None, class_names: list[str] | None, *,
        lazy: bool,
    ) -> np.ndarray | LazyFeatures:
        """A complete entry asked for with other labels: store them, if the file allows."""
        try:
            self._store_labels(key, labels, class_names)
        except (CacheError, OSError) as exc:
            if isinstance(exc, CacheLockedError):
                raise
            warnings.warn(
                f"The features of entry {key!r} are read from {str(self.path)!r}, but the "
                f"labels given with them could not be stored there ({exc}); they are not "
                "needed to read the features. Pass `labels` to the head yourself, or use a "
                "writable copy of the cache to keep them with the entry.",
                UserWarning, stacklevel=3,
            )
        return self.load(key, lazy=lazy)

    @classmethod
    def _resolve_labels(
        cls, images: Any, labels: Any, class_names: Any, n: int
    ) -> tuple[np.ndarray | None, list[str] | None]:
        """Checked labels and class names: the arguments, else the stream's own."""
        if labels is None and getattr(images, "labels", None) is not None:
            labels = images.labels
            class_names = class_names or list(getattr(images, "class_names", []) or []) or None
        labels_arr = cls._check_labels(labels, n)
        if class_names is not None:
            if not isinstance(class_names, list | tuple) or not all(
                isinstance(c, str) for c in class_names
            ):
                raise InvalidTypeError(
                    f"`class_names` must be a list of strings; received {describe(class_names)}."
                )
            class_names = list(class_names)
        return labels_arr, class_names

    @staticmethod
    def _default_batch_size(extractor: Any, batch_size: int | None) -> int:
        """The batch size an extraction uses: ``batch_size``, else the extractor's, else 64."""
        default_bs = getattr(extractor, "_effective_batch_size", None)
        return int(batch_size or (default_bs() if callable(default_bs) else None)
                   or getattr(extractor, "batch_size", None) or 64)

    @staticmethod
    def _check_labels(labels: Any, n: int) -> np.ndarray | None:
        if labels is None:
            return None
        arr = np.asarray(labels)
        if arr.ndim == 2 and arr.shape[1] > 1:  # one-hot rows
            arr = np.argmax(arr, axis=1)
        arr = arr.reshape(-1) if arr.ndim == 2 else arr
        if arr.ndim != 1 or len(arr) != n:
            raise InvalidInputError(
                f"`labels` must have one label per image: expected shape ({n},), received "
                f"{np.asarray(labels).shape}."
            )
        if arr.dtype.kind in "US":
            return arr.astype(h5py.string_dtype() if arr.dtype.kind == "U" else arr.dtype)
        if arr.dtype.kind not in "iub":
            raise InvalidTypeError(
                f"`labels` must be integers or strings; received dtype {arr.dtype}."
            )
        return arr.astype(np.int64)

    @staticmethod
    def _entry_is_valid(entry: h5py.Group, n: int) -> bool:
        try:
            return (
                "features" in entry
                and "progress" in entry
                and int(entry.attrs["n_images"]) == n
                and "complete" in entry.attrs
            )
        except (KeyError, OSError, ValueError):
            return False

    def _create_entry(
        self,
        group: h5py.Group,
        key: str,
        images: Any,
        config: dict[str, Any],
        fp: str,
        data_fp: str,
        d: int,
        batch_size: int,
    ) -> h5py.Group:
        n = int(images.shape[0])
        entry = group.create_group(key)
        rows = chunk_rows(n, d)
        entry.create_dataset(
            "features", shape=(0, d), maxshape=(n, d), dtype=np.float32,
            chunks=(rows, d), compression=self.compression,
            fletcher32=True,  # per-chunk checksums: damaged data raises instead of lying
        )
        entry.create_dataset("progress", data=np.int64(0))
        entry.attrs.update(
            {
                "extractor": str(config.get("extractor", "")),
                "extractor_config": json.dumps(config, sort_keys=True, default=str),
                "extractor_fingerprint": fp,
                "data_fingerprint": data_fp,
                "n_images": n,
                "image_shape": json.dumps([int(s) for s in images.shape[1:]]),
                "image_dtype": str(np.dtype(images.dtype)),
                "feature_dim": d,
                "batch_size": int(batch_size),
                "versions": json.dumps(_versions()),
                "created": _now(),
                "complete": False,
                "extract_seconds": 0.0,
            }
        )
        return entry

    @staticmethod
    def _same_labels(old: h5py.Dataset, labels: np.ndarray) -> bool:
        """Whether the stored labels ``old`` equal ``labels`` (as checked by _check_labels)."""
        if old.shape != labels.shape or old.dtype.kind != labels.dtype.kind:
            return False
        stored = old.asstr()[()] if old.dtype.kind == "O" else old[()]
        return bool(np.array_equal(stored, labels.astype(stored.dtype, copy=False)))

    @classmethod
    def _write_labels(cls, entry: h5py.Group, labels: np.ndarray) -> None:
        if "labels" in entry:
            if cls._same_labels(entry["labels"], labels):
                return
            del entry["labels"]
        entry.create_dataset("labels", data=labels)

    def _fill(
        self, f: h5py.File, entry: h5py.Group, extractor: Any, images: Any, *, verbose: int
    ) -> None:
        features = entry["features"]
        progress = entry["progress"]
        n = int(entry.attrs["n_images"])
        bs = int(entry.attrs["batch_size"])
        d = int(features.shape[1])
        done = int(progress[()])
        if features.shape[0] != done:  # rows past the last flushed batch are not trusted
            features.resize((done, d))
        from .progress import Progress

        # verbose=1: a bar with rate and time left on a terminal, a line every 10% in logs
        # (stderr; $TRANSFERKIT_PROGRESS=bar|lines|off overrides).
        bar = Progress(n, desc="extracting", unit="image", initial=done,
                       mode="auto" if verbose else "off")
        spent = float(entry.attrs.get("extract_seconds", 0.0))
        t0 = time.perf_counter()
        sync = self._sync

        def write(item: tuple[int, np.ndarray]) -> None:
            # On the writer thread: one batch's rows, then the counter, then a flush,
            # all under the exclusive .sync lock, so readers see whole batches only.
            offset, feats = item
            end = offset + len(feats)
            if sync is not None:
                sync.acquire()
            try:
                features.resize((end, d))
                features[offset:end] = feats
                progress[()] = end
                entry.attrs["extract_seconds"] = spent + time.perf_counter() - t0
                f.flush()
            finally:
                if sync is not None:
                    sync.release()

        if sync is not None:  # readers come in whenever no batch is being written
            sync.release()
        try:
            with bar:  # ends the display: "done, ..." or "interrupted at k/n images"
                self._pipelined_fill(extractor, images, done, bs, d, entry.name, n, write, bar)
        finally:
            if sync is not None:
                sync.acquire()
        if int(progress[()]) != n:
            raise CacheError(
                f"Extraction stopped after {int(progress[()])} of {n} images; call again to "
                "resume."
            )
        entry.attrs["completed"] = _now()
        entry.attrs["complete"] = True
        f.flush()

    def _pipelined_fill(
        self, extractor: Any, images: Any, done: int, bs: int, d: int, name: str, n: int,
        write: Any, bar: Any,
    ) -> None:
        """Backbone on this thread, HDF5 writes on a writer thread, batch ``k`` behind.

        Every batch computed before an exception (or the end) is written before this
        returns; a write error stops the extraction and is raised as a CacheError
        naming the last complete batch.
        """
        writer = BackgroundWriter(write, maxsize=_WRITE_QUEUE, name="transferkit-cache-writer")
        batches = extractor.iter_features(images, start=done, batch_size=bs)
        try:
            try:
                for offset, feats in batches:
                    if feats.shape[1] != d:
                        raise CacheError(
                            f"The extractor produced {feats.shape[1]} features per image but "
                            f"entry {name} holds {d}; delete the entry."
                        )
                    writer.put((offset, feats))
                    bar.update_to(offset + len(feats))
            finally:
                close = getattr(batches, "close", None)
                if callable(close):
                    close()  # stop the extractor's reader thread
                writer.close()  # write what was computed; raises the writer's error
        except BaseException as exc:
            if writer.failed and isinstance(writer.error, OSError):
                failed_at = int(writer.failed_item[0])
                raise self._write_failed(writer.error, failed_at, n) from writer.error
            if writer.failed and exc is not writer.error:
                raise writer.error from exc  # type: ignore[misc]
            raise

    def _write_failed(self, exc: OSError, done: int, n: int) -> CacheError:
        full = getattr(exc, "errno", None) == errno.ENOSPC or "No space" in str(exc)
        reason = (
            "the disk is full: free some space (or point `path` at a larger disk)"
            if full
            else f"the file could not be written ({exc})"
        )
        return CacheError(
            f"Writing features to {str(self.path)!r} stopped after {done} of {n} images: "
            f"{reason}. Completed batches are kept; call `extract` again to resume. If the "
            "file will not open afterwards, `FeatureCache(path).repair()` keeps every entry "
            "that can still be read."
        )

    # ------------------------------------------------------------------ repair
    def repair(self) -> dict[str, Any]:
        """Rebuild a damaged cache file, keeping every entry that still reads correctly.

        Each entry is read in full (HDF5 checksums verify every chunk); readable ones
        are copied into a fresh file, which then replaces the original. The original
        is kept beside it as ``<name>.damaged-<time>`` (nothing is deleted). Entries
        that could not be read are re-extracted the next time they are asked for.
        A file that cannot be opened at all is set aside the same way and an empty
        cache takes its place.

        A sharded entry is kept if every one of its shard files reads correctly (each
        is read in full). Otherwise it is dropped, and a shard file that is damaged
        (not merely missing) is repaired the same way, in place, keeping its readable
        entries; running :func:`transferkit.distributed.extract_distributed` again then
        re-extracts only the shards that were lost and merges them again.

        Returns
        -------
        dict
            ``kept`` and ``dropped`` entry keys, ``backup``: where the original file
            now is (``None`` if there was no file), and ``shard_backups``: where
            damaged shard files that were repaired now are.
        """
        report: dict[str, Any] = {"kept": [], "dropped": [], "backup": None,
                                  "shard_backups": []}
        self._check_not_a_directory()  # never set a folder aside as a "damaged" cache
        with writer_lock(self.path):
            if not self.path.exists():
                return report
            stamp = _dt.datetime.now().strftime("%Y%m%dT%H%M%S")
            tmp = self.path.with_name(f".{self.path.name}.repair-{stamp}")
            try:
                src = h5py.File(self.path, "r", locking=False)
            except OSError:
                src = None
            try:
                with h5py.File(tmp, "w") as dst:
                    dst.attrs["format"] = FORMAT_NAME
                    dst.attrs["format_version"] = FORMAT_VERSION
                    out = dst.create_group("entries")
                    has_entries = src is not None and "entries" in src
                    keys = list(src["entries"].keys()) if has_entries else []
                    for key in keys:
                        try:
                            self._copy_entry(src["entries"][key], out, key, report)
                            report["kept"].append(key)
                        except (OSError, KeyError, ValueError, RuntimeError,
                                _shards.ShardReadError):
                            if key in out:
                                del out[key]
                            report["dropped"].append(key)
            finally:
                if src is not None:
                    src.close()
            backup = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
            os.replace(self.path, backup)
            os.replace(tmp, self.path)
            report["backup"] = str(backup)
        return report

    def _copy_entry(
        self, src: h5py.Group, out: h5py.Group, key: str, report: dict[str, Any]
    ) -> None:
        refs = _shards.refs_of(src)
        if refs is not None:
            self._copy_sharded_entry(src, out, key, refs, report)
            return
        dst = out.create_group(key)
        for name, value in src.attrs.items():
            dst.attrs[name] = value
        feats = src["features"]
        done = int(src["progress"][()])
        data = feats[:done]  # reads and checksums every chunk
        dst.create_dataset(
            "features", data=data, maxshape=feats.maxshape, chunks=feats.chunks,
            compression=feats.compression, fletcher32=True,
        )
        dst.create_dataset("progress", data=np.int64(done))
        if "labels" in src:
            dst.create_dataset("labels", data=src["labels"][()])

    def _copy_sharded_entry(
        self, src: h5py.Group, out: h5py.Group, key: str, refs: list[_shards.ShardRef],
        report: dict[str, Any],
    ) -> None:
        n, d = int(src.attrs["n_images"]), int(src.attrs["feature_dim"])
        step = max(1, (64 << 20) // (4 * max(d, 1)))  # read ~64 MiB at a time
        for ref in refs:  # every row of every shard, checksummed
            try:
                for a in range(ref.start, ref.stop, step):
                    _shards.read_rows(self.path, refs, n, d, slice(a, min(a + step, ref.stop)))
            except _shards.ShardReadError as exc:
                shard_path = ref.path(self.path)
                if isinstance(exc.cause, OSError) and shard_path.is_file():
                    with contextlib.suppress(CacheError, OSError):
                        backup = FeatureCache(shard_path).repair()["backup"]
                        report["shard_backups"].append(backup)
                raise
        dst = out.create_group(key)
        for name, value in src.attrs.items():
            dst.attrs[name] = value
        _shards.write_virtual_features(dst, refs, n, d)
        dst.create_dataset("progress", data=np.int64(n))
        if "labels" in src:
            dst.create_dataset("labels", data=src["labels"][()])

    # ------------------------------------------------------------------ sharded entries
    def _write_sharded_entry(
        self,
        key: str,
        refs: list[_shards.ShardRef],
        attrs: dict[str, Any],
        labels: np.ndarray | None,
        class_names: list[str] | None,
    ) -> None:
        """Write the entry ``key`` over complete shards (see :mod:`transferkit.distributed`).

        An ordinary complete entry with this key holds the same features and is kept
        (only labels and class names are updated); anything else under the key (an
        unfinished extraction, an older sharded entry) is replaced.
        """
        with writer_lock(self.path), self._open("a") as f:
            group = f.require_group("entries")
            old = group.get(key)
            if old is not None:
                if bool(old.attrs.get("complete", False)) and _shards.refs_of(old) is None:
                    self._update_labels(old, labels, class_names)
                    f.flush()
                    return
                del group[key]
            entry = group.create_group(key)
            n, d = int(attrs["n_images"]), int(attrs["feature_dim"])
            _shards.write_virtual_features(entry, refs, n, d)
            entry.create_dataset("progress", data=np.int64(n))
            self._update_labels(entry, labels, class_names)
            entry.attrs.update({k: v for k, v in attrs.items() if k != "complete"})
            entry.attrs["shards"] = json.dumps([r.to_json() for r in refs])
            entry.attrs["n_shards"] = len(refs)
            entry.attrs["complete"] = True  # last: an entry cut short is never complete
            f.flush()

    def _store_labels(self, key: str, labels: np.ndarray | None, class_names: Any) -> None:
        """Store labels and class names with the existing entry ``key``."""
        if labels is None and class_names is None:
            return
        with writer_lock(self.path), self._open("a") as f:
            self._update_labels(self._entry(f, key, need_complete=False), labels, class_names)
            f.flush()

    def _update_labels(
        self, entry: h5py.Group, labels: np.ndarray | None, class_names: list[str] | None
    ) -> None:
        if labels is not None:
            self._write_labels(entry, labels)
        if class_names is not None:
            entry.attrs["class_names"] = json.dumps(class_names)

    # ------------------------------------------------------------------ reading
    def _find_complete(self, key: str) -> CacheEntry | None:
        if not self.path.exists():
            return None
        with self._open("r") as f:
            entry = f.get("entries", {}).get(key) if "entries" in f else None
            if entry is None or not bool(entry.attrs.get("complete", False)):
                return None
            return self._info(entry)

    def __contains__(self, key: object) -> bool:
        """Whether a complete entry with this key exists."""
        return isinstance(key, str) and self._find_complete(key) is not None

    def __len__(self) -> int:
        return len(self.entries())

    def __iter__(self) -> Iterator[str]:
        return iter([e.key for e in self.entries()])

    def entries(self, *, include_incomplete: bool = False) -> list[CacheEntry]:
        """The entries in the file, oldest first.

        Parameters
        ----------
        include_incomplete : bool, default=False
            Also list interrupted extractions (``complete=False``).
        """
        if not self.path.exists():
            return []
        with self._open("r") as f:
            if "entries" not in f:
                return []
            infos = [self._info(g) for g in f["entries"].values()]
        infos = [e for e in infos if include_incomplete or e.complete]
        return sorted(infos, key=lambda e: (e.created, e.key))

    def info(self, key: str) -> CacheEntry:
        """Metadata of one entry."""
        with self._open("r") as f:
            return self._info(self._entry(f, key, need_complete=False))

    @staticmethod
    def _info(g: h5py.Group) -> CacheEntry:
        a = g.attrs
        names = a.get("class_names")
        return CacheEntry(
            key=g.name.rsplit("/", 1)[-1],
            extractor=str(a.get("extractor", "")),
            extractor_config=json.loads(a.get("extractor_config", "{}")),
            extractor_fingerprint=str(a.get("extractor_fingerprint", "")),
            data_fingerprint=str(a.get("data_fingerprint", "")),
            n_images=int(a.get("n_images", 0)),
            n_done=int(g["progress"][()]) if "progress" in g else 0,
            feature_dim=int(a.get("feature_dim", 0)),
            complete=bool(a.get("complete", False)),
            created=str(a.get("created", "")),
            completed=str(a["completed"]) if "completed" in a else None,
            versions=json.loads(a.get("versions", "{}")),
            has_labels="labels" in g,
            class_names=json.loads(names) if names is not None else None,
            nbytes=(
                int(a["shard_nbytes"]) if "shard_nbytes" in a
                else int(g["features"].id.get_storage_size()) if "features" in g else 0
            ),
            extract_seconds=float(a.get("extract_seconds", 0.0)),
            n_shards=int(a.get("n_shards", 0)),
        )

    def _entry(self, f: h5py.File, key: str, *, need_complete: bool = True) -> h5py.Group:
        if not isinstance(key, str):
            raise InvalidTypeError(f"`key` must be a string; received {describe(key)}.")
        entry = f["entries"].get(key) if "entries" in f else None
        if entry is None:
            raise InvalidInputError(
                f"No entry {key!r} in {str(self.path)!r}; `cache.entries()` lists the keys."
            )
        if need_complete and not bool(entry.attrs.get("complete", False)):
            raise CacheError(
                f"Entry {key!r} in {str(self.path)!r} is incomplete (an interrupted "
                "extraction); call `extract` again with the same extractor and images to "
                "resume it."
            )
        return entry

    def load(self, key: str, *, lazy: bool = False) -> np.ndarray | LazyFeatures:
        """The features of a complete entry.

        Parameters
        ----------
        key : str
            An entry key (see :meth:`entries` or :meth:`key`).
        lazy : bool, default=False
            Return a :class:`LazyFeatures` view that reads rows on demand.

        Raises
        ------
        ShardsMissingError
            The entry is sharded and some of its shard files are missing, unfinished
            or damaged (the message names them).
        """
        with self._open("r") as f:
            entry = self._entry(f, key)
            shape = tuple(int(s) for s in entry["features"].shape)
            refs = _shards.refs_of(entry)
            if shape[0] != int(entry.attrs["n_images"]):
                raise CacheCorruptedError(
                    f"Entry {key!r} in {str(self.path)!r} is marked complete but holds "
                    f"{shape[0]} of {int(entry.attrs['n_images'])} rows; delete it with "
                    f"`cache.delete({key!r})` and extract again."
                )
            if refs is None:
                if lazy:
                    return LazyFeatures(self.path, key, shape)  # type: ignore[arg-type]
                try:
                    return entry["features"][()]
                except OSError as exc:
                    raise self._damaged_entry(key, exc) from exc
        # Sharded: the rows are in the shard files, read without holding this file.
        return self._load_sharded(key, refs, shape, lazy=lazy)  # type: ignore[arg-type]

    def _load_sharded(
        self, key: str, refs: list[_shards.ShardRef], shape: tuple[int, int], *, lazy: bool
    ) -> np.ndarray | LazyFeatures:
        n, d = shape
        if lazy:  # check every shard now, so a lazy view of a broken entry is refused early
            if any(_shards.shard_problem(self.path, r, d) is not None for r in refs):
                raise _shards_missing(self.path, key, refs, d)
            return LazyFeatures(self.path, key, shape, shards=refs)
        try:
            return _shards.read_rows(self.path, refs, n, d, slice(None))
        except _shards.ShardReadError as exc:
            raise _shards_missing(self.path, key, refs, d, exc) from exc

    def _damaged_entry(self, key: str, exc: BaseException) -> CacheCorruptedError:
        return CacheCorruptedError(
            f"Entry {key!r} in {str(self.path)!r} is damaged ({exc}). Delete it with "
            f"`cache.delete({key!r})` and extract again, or run `cache.repair()` to drop "
            "every damaged entry at once; the other entries stay readable."
        )

    def labels(self, key: str) -> np.ndarray | None:
        """The labels stored with an entry, or ``None``."""
        with self._open("r") as f:
            entry = self._entry(f, key, need_complete=False)
            if "labels" not in entry:
                return None
            ds = entry["labels"]
            return ds.asstr()[()] if ds.dtype.kind == "O" else ds[()]

    def delete(self, key: str) -> None:
        """Remove an entry (its space is reused by later entries).

        The shard files of a sharded entry (the folder ``<cache file>.shards/<key>/``)
        are removed too, as are those of an unfinished sharded extraction of ``key``
        that was never merged. Do not delete an entry while a distributed extraction
        of it runs.
        """
        if not isinstance(key, str):
            raise InvalidTypeError(f"`key` must be a string; received {describe(key)}.")
        folder = _shards.shard_dir(self.path, key)
        if folder.is_dir() and not self.path.exists():
            shutil.rmtree(folder)
            return
        with writer_lock(self.path), self._open("a") as f:
            if folder.is_dir() and key not in f.get("entries", {}):
                shutil.rmtree(folder)  # an unfinished sharded extraction, never merged
                return
            self._entry(f, key, need_complete=False)
            del f["entries"][key]
            f.flush()
            if folder.is_dir():
                shutil.rmtree(folder)
