"""The :class:`FeatureCache`: extraction into an HDF5 file, resume, reading back.

The package's docstring (:mod:`transferkit.cache`) records the file layout and the
guarantees; this module holds the class that implements them, and the named functions
:mod:`transferkit.distributed` writes merged (sharded) entries and labels with.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._cost import CHUNK_BYTES, chunk_rows
from .._hashing import hash_images
from .._signals import sigterm_raises
from .._validation import check_images, check_positive_int, describe
from ..datasets import as_image_source
from ..exceptions import (
    CacheCorruptedError,
    CacheError,
    CacheLockedError,
    InvalidInputError,
    InvalidTypeError,
    Terminated,
)
from . import _shards
from ._format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    LAYOUT_ATTRS,
    CacheEntry,
    entry_info,
    entry_is_valid,
    flushed_rows,
    now,
    same_labels,
    update_labels,
    versions,
    write_labels,
)
from ._keys import (
    default_batch_size,
    entry_key,
    extractor_fingerprint,
    resolve_labels,
)
from ._locks import FileLock, writer_lock
from ._repair import repair_file
from ._rows import LazyFeatures, shards_missing
from ._writer import fill_entry

__all__ = ["FeatureCache", "as_cache", "store_labels", "write_sharded_entry"]

_OPEN_RETRIES = 4
#: HDF5 chunk cache of a writer's file: a few ~1 MiB feature chunks, so a chunk that
#: consecutive batches fill is not read back between them.
_WRITE_CHUNK_CACHE = 4 * CHUNK_BYTES


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
        fp = extractor_fingerprint(extractor)
        images = as_image_source(images, name="images")
        return entry_key(fp, hash_images(check_images(images, name="images")))

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
        fp = extractor_fingerprint(extractor)
        images = check_images(as_image_source(images, name="images"), name="images")
        n = int(images.shape[0])
        labels_arr, class_names = resolve_labels(images, labels, class_names, n)
        bs = check_positive_int("batch_size", batch_size, allow_none=True)
        data_fp = hash_images(images)
        key = entry_key(fp, data_fp)

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
            bs = default_batch_size(extractor, bs)
            with writer_lock(self.path), self._open("a") as f:
                group = f.require_group("entries")
                entry = group.get(key)
                if entry is not None and not entry_is_valid(entry, n):
                    del group[key]  # an entry damaged before its first flush: rebuild it
                    entry = None
                created = entry is None
                if entry is None:
                    entry = self._create_entry(group, key, images, config, fp, data_fp, d, bs)
                if labels_arr is not None:
                    write_labels(entry, labels_arr)
                if class_names is not None:
                    entry.attrs["class_names"] = json.dumps(class_names)
                f.flush()
                if not bool(entry.attrs["complete"]):
                    try:
                        fill_entry(self.path, f, entry, extractor, images,
                                   sync=self._sync, verbose=verbose)
                    except BaseException as exc:
                        done = flushed_rows(entry)
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
                if not same_labels(entry["labels"], labels):
                    return False
        return True

    def _hit_with_new_labels(
        self, key: str, labels: np.ndarray | None, class_names: list[str] | None, *,
        lazy: bool,
    ) -> np.ndarray | LazyFeatures:
        """A complete entry asked for with other labels: store them, if the file allows."""
        try:
            store_labels(self, key, labels, class_names)
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
        rows = chunk_rows(n, d, batch_size)  # batch-aligned: flushed rows are never rewritten
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
                "versions": json.dumps(versions()),
                "created": now(),
                "complete": False,
                "extract_seconds": 0.0,
            }
        )
        return entry

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
        self._check_not_a_directory()  # never set a folder aside as a "damaged" cache
        return repair_file(self.path)

    # ------------------------------------------------------------------ annotations
    def annotate(self, key: str, **values: Any) -> None:
        """Record extra information with an entry, such as where its images came from.

        Each value is stored as an attribute of the entry (JSON for anything but a
        number or a string) and comes back in :attr:`CacheEntry.annotations`. The
        layout's own attributes (``extractor``, ``n_images``, ``complete``...) cannot
        be set this way. Written under the cache's locks, like an extraction.

        Parameters
        ----------
        key : str
            An existing entry (complete or not).
        **values
            Names and JSON-serialisable values.
        """
        reserved = sorted(set(values) & LAYOUT_ATTRS)
        if reserved:
            raise InvalidInputError(
                f"`annotate` cannot set the cache's own entry attributes {reserved}; "
                "choose other names."
            )
        with writer_lock(self.path), self._open("a") as f:
            entry = self._entry(f, key, need_complete=False)
            for name, value in values.items():
                entry.attrs[name] = (
                    value if isinstance(value, int | float | str) and not isinstance(value, bool)
                    else json.dumps(value, sort_keys=True, default=str)
                )
            f.flush()

    # ------------------------------------------------------------------ reading
    def _find_complete(self, key: str) -> CacheEntry | None:
        if not self.path.exists():
            return None
        with self._open("r") as f:
            entry = f.get("entries", {}).get(key) if "entries" in f else None
            if entry is None or not bool(entry.attrs.get("complete", False)):
                return None
            return entry_info(entry)

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
            infos = [entry_info(g) for g in f["entries"].values()]
        infos = [e for e in infos if include_incomplete or e.complete]
        return sorted(infos, key=lambda e: (e.created, e.key))

    def info(self, key: str) -> CacheEntry:
        """Metadata of one entry."""
        with self._open("r") as f:
            return entry_info(self._entry(f, key, need_complete=False))

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
                raise shards_missing(self.path, key, refs, d)
            return LazyFeatures(self.path, key, shape, shards=refs)
        try:
            return _shards.read_rows(self.path, refs, n, d, slice(None))
        except _shards.ShardReadError as exc:
            raise shards_missing(self.path, key, refs, d, exc) from exc

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


# ---------------------------------------------------------------------- for distributed
def write_sharded_entry(
    cache: FeatureCache,
    key: str,
    refs: list[_shards.ShardRef],
    attrs: dict[str, Any],
    labels: np.ndarray | None,
    class_names: list[str] | None,
) -> None:
    """Write the entry ``key`` of ``cache`` over complete shards (:mod:`transferkit.distributed`).

    An ordinary complete entry with this key holds the same features and is kept
    (only labels and class names are updated); anything else under the key (an
    unfinished extraction, an older sharded entry) is replaced.
    """
    with writer_lock(cache.path), cache._open("a") as f:
        group = f.require_group("entries")
        old = group.get(key)
        if old is not None:
            if bool(old.attrs.get("complete", False)) and _shards.refs_of(old) is None:
                update_labels(old, labels, class_names)
                f.flush()
                return
            del group[key]
        entry = group.create_group(key)
        n, d = int(attrs["n_images"]), int(attrs["feature_dim"])
        _shards.write_virtual_features(entry, refs, n, d)
        entry.create_dataset("progress", data=np.int64(n))
        update_labels(entry, labels, class_names)
        entry.attrs.update({k: v for k, v in attrs.items() if k != "complete"})
        entry.attrs["shards"] = json.dumps([r.to_json() for r in refs])
        entry.attrs["n_shards"] = len(refs)
        entry.attrs["complete"] = True  # last: an entry cut short is never complete
        f.flush()

def store_labels(
    cache: FeatureCache, key: str, labels: np.ndarray | None, class_names: Any
) -> None:
    """Store labels and class names with the existing entry ``key``."""
    if labels is None and class_names is None:
        return
    with writer_lock(cache.path), cache._open("a") as f:
        update_labels(cache._entry(f, key, need_complete=False), labels, class_names)
        f.flush()


def as_cache(cache: Any, *, name: str = "cache") -> FeatureCache:
    """``cache`` as a :class:`FeatureCache`: a cache, or the path of its file."""
    if isinstance(cache, FeatureCache):
        return cache
    if isinstance(cache, str | os.PathLike):
        return FeatureCache(cache)
    raise InvalidTypeError(
        f"`{name}` must be a FeatureCache or the path of its file; received {describe(cache)}."
    )

