"""Sharded cache entries: one entry whose rows live in several shard files.

A sharded extraction (:mod:`transferkit.distributed`) splits the images into contiguous
index ranges. Shard ``i`` is an ordinary feature-cache file of its own, beside the main
cache file::

    features.h5                                   the main cache
    features.h5.shards/<key>/plan.json            the shard plan (ranges, batch size)
    features.h5.shards/<key>/shard-00003-of-00008.h5

whose one entry holds the features of images ``start .. stop - 1``, written (and resumed)
by the usual :meth:`~transferkit.cache.FeatureCache.extract` machinery. Its key is the
usual combination of the extractor's fingerprint and a data fingerprint, here the one
of the full image set plus the range (:func:`shard_data_fingerprint`), so a shard
written for other images or another extractor is never taken for this one.

Once every shard is complete, the main cache gets an entry under the key of the full
set whose ``features`` is an HDF5 virtual dataset over the shard files (paths relative
to the main file, so the folder can be moved as a whole), and whose ``shards`` attribute
lists them (:class:`ShardRef`). HDF5 fills the rows of a missing source file with the
fill value without a word, so transferkit never reads those rows through the virtual
dataset: :func:`read_rows` reads the shard files themselves, checking each one's entry
first, and a missing, unfinished or damaged shard raises an error naming it. The virtual
dataset is there for other HDF5 tools (its fill value is NaN, never a plausible 0).

This module holds the file-level helpers shared by :mod:`transferkit.cache` and
:mod:`transferkit.distributed`; it imports neither TensorFlow nor Dask.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._hashing import hash_json
from ..exceptions import InvalidTypeError
from ._format import flushed_rows

__all__ = [
    "PLAN_FILE",
    "SHARDS_SUFFIX",
    "ShardRef",
    "ShardReadError",
    "read_rows",
    "refs_of",
    "shard_data_fingerprint",
    "shard_dir",
    "shard_filename",
    "shard_problem",
    "shards_root",
    "write_virtual_features",
]

#: Suffix of the folder beside a cache file that holds its shard files.
SHARDS_SUFFIX = ".shards"
#: Name of the shard plan in a shard folder.
PLAN_FILE = "plan.json"
#: Read whole blocks of a shard when the rows asked for are at least this dense.
_DENSE = 4


def shards_root(cache_path: Path) -> Path:
    """The folder holding every shard set of the cache file ``cache_path``."""
    return cache_path.with_name(cache_path.name + SHARDS_SUFFIX)


def shard_dir(cache_path: Path, key: str) -> Path:
    """The folder holding the shard files of entry ``key``."""
    return shards_root(cache_path) / key


def shard_filename(index: int, n_shards: int) -> str:
    """``shard-00003-of-00008.h5``: the file name of shard ``index`` of ``n_shards``."""
    return f"shard-{index:05d}-of-{n_shards:05d}.h5"


def shard_data_fingerprint(data_fingerprint: str, start: int, stop: int) -> str:
    """Data fingerprint of images ``start .. stop - 1`` of the set ``data_fingerprint``."""
    return hash_json(
        {"kind": "transferkit.shard", "data": data_fingerprint, "start": int(start),
         "stop": int(stop)}
    )


@dataclass(frozen=True)
class ShardRef:
    """Where the rows ``start .. stop - 1`` of a sharded entry are stored.

    ``file`` is relative to the folder of the main cache file, with ``/`` separators;
    ``key`` is the entry key inside that file.
    """

    index: int
    start: int
    stop: int
    key: str
    file: str

    @property
    def n_images(self) -> int:
        """Rows held by the shard."""
        return self.stop - self.start

    def path(self, cache_path: Path) -> Path:
        """The shard file, for the main cache file ``cache_path``."""
        return cache_path.parent / Path(*self.file.split("/"))

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "start": self.start, "stop": self.stop, "key": self.key,
                "file": self.file}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardRef:
        return cls(int(data["index"]), int(data["start"]), int(data["stop"]), str(data["key"]),
                   str(data["file"]))


def refs_of(entry: h5py.Group) -> list[ShardRef] | None:
    """The shards of a sharded entry, or ``None`` for an ordinary entry."""
    raw = entry.attrs.get("shards")
    if raw is None:
        return None
    return [ShardRef.from_json(d) for d in json.loads(raw)]


class ShardReadError(Exception):
    """A shard could not be read; ``problems`` maps shard indices to reasons."""

    def __init__(self, problems: dict[int, str], cause: BaseException | None = None) -> None:
        super().__init__("; ".join(f"shard {i}: {p}" for i, p in sorted(problems.items())))
        self.problems = problems
        self.cause = cause


def _sync_lock(path: Path) -> Any:
    from ._locks import FileLock  # the cache's reader/writer lock, on the shard file

    return FileLock(path, ".sync").held(shared=True)


def _shard_entry(f: h5py.File, ref: ShardRef) -> tuple[h5py.Group | None, str | None]:
    entry = f["entries"].get(ref.key) if "entries" in f else None
    if entry is None:
        return None, f"holds no entry {ref.key[:12]} (images {ref.start}..{ref.stop - 1})"
    done = flushed_rows(entry)
    if not bool(entry.attrs.get("complete", False)) or done != ref.n_images:
        return None, f"is unfinished ({done} of {ref.n_images} images)"
    shape = tuple(int(s) for s in entry["features"].shape)
    if shape[0] != ref.n_images:
        return None, f"holds {shape[0]} rows instead of {ref.n_images}"
    return entry, None


def shard_problem(cache_path: Path, ref: ShardRef, feature_dim: int | None = None) -> str | None:
    """Why shard ``ref`` cannot be served (missing, unfinished, unreadable), or ``None``.

    Checks the file and its entry's metadata (complete, row count, feature width);
    the feature values are checksummed when they are read.
    """
    path = ref.path(cache_path)
    if not path.is_file():
        return f"file {str(path)!r} is missing"
    try:
        with _sync_lock(path), h5py.File(path, "r", locking=False) as f:
            entry, problem = _shard_entry(f, ref)
            if problem is not None:
                return f"file {str(path)!r} {problem}"
            d = int(entry["features"].shape[1])  # type: ignore[index]
            if feature_dim is not None and d != feature_dim:
                return f"file {str(path)!r} holds {d} features per image, not {feature_dim}"
    except (OSError, KeyError, ValueError) as exc:
        return f"file {str(path)!r} cannot be read ({exc})"
    return None


def _row_selection(index: Any, n: int) -> tuple[Any, bool, tuple[Any, ...]]:
    """Split a NumPy-style index into (rows, squeeze, rest).

    ``rows`` is a ``range`` (a contiguous block) or an int64 array of row numbers;
    ``squeeze`` says the index was a single integer; ``rest`` indexes the columns.
    """
    rows, rest = (index[0], index[1:]) if isinstance(index, tuple) and index else (index, ())
    if isinstance(index, tuple) and not index or rows is Ellipsis:
        rows = slice(None)
    if isinstance(rows, slice):
        start, stop, step = rows.indices(n)
        if step == 1:
            return range(start, max(start, stop)), False, rest
        return np.arange(start, stop, step, dtype=np.int64), False, rest
    if isinstance(rows, int | np.integer) and not isinstance(rows, bool | np.bool_):
        i = operator.index(rows)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for {n} rows")
        i %= n
        return range(i, i + 1), True, rest
    arr = np.asarray(rows)
    if arr.dtype == np.bool_:
        if arr.shape != (n,):
            raise IndexError(f"a boolean row mask must have shape ({n},); received {arr.shape}")
        return np.flatnonzero(arr).astype(np.int64), False, rest
    if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidTypeError(
            "rows of a sharded entry are selected with an int, a slice, a 1-D array of ints "
            f"or a boolean mask; received {type(rows).__name__}."
        )
    arr = arr.astype(np.int64)
    bad = arr[(arr < -n) | (arr >= n)]
    if bad.size:
        raise IndexError(f"index {int(bad[0])} is out of range for {n} rows")
    return arr % n if arr.size else arr, False, rest


def _read_shard(ds: h5py.Dataset, local: Any) -> np.ndarray:
    if isinstance(local, range):
        return ds[local.start : local.stop]
    uniq, inverse = np.unique(local, return_inverse=True)
    lo, hi = int(uniq[0]), int(uniq[-1]) + 1
    if hi - lo <= _DENSE * len(uniq):
        return ds[lo:hi][uniq - lo][inverse]
    return ds[uniq][inverse]  # h5py reads increasing row lists only


def read_rows(cache_path: Path, refs: Sequence[ShardRef], n: int, d: int, index: Any) -> Any:
    """Rows ``index`` of a sharded entry, read from its shard files.

    ``index`` is any NumPy-style index of a 2-D array whose first element selects rows
    by an int, a slice, a 1-D int array or a boolean mask. Each shard file touched is
    opened under its ``.sync`` lock and its entry checked (present, complete, of the
    right size) before it is read, so rows are never invented.

    Raises
    ------
    ShardReadError
        A shard touched is missing, unfinished or unreadable (a failed checksum).
    """
    rows, squeeze, rest = _row_selection(index, n)
    count = len(rows)
    out = np.empty((count, d), dtype=np.float32)
    for ref in refs:
        if isinstance(rows, range):
            lo, hi = max(rows.start, ref.start), min(rows.stop, ref.stop)
            if lo >= hi:
                continue
            local: Any = range(lo - ref.start, hi - ref.start)
            target: Any = slice(lo - rows.start, hi - rows.start)
        else:
            mask = (rows >= ref.start) & (rows < ref.stop)
            if not mask.any():
                continue
            local, target = rows[mask] - ref.start, mask
        path = ref.path(cache_path)
        try:
            if not path.is_file():
                raise FileNotFoundError(f"file {str(path)!r} is missing")
            with _sync_lock(path), h5py.File(path, "r", locking=False) as f:
                entry, problem = _shard_entry(f, ref)
                if problem is not None:
                    raise ShardReadError({ref.index: f"file {str(path)!r} {problem}"})
                out[target] = _read_shard(entry["features"], local)  # type: ignore[index]
        except ShardReadError:
            raise
        except FileNotFoundError as exc:
            raise ShardReadError({ref.index: str(exc)}, exc) from exc
        except (OSError, KeyError, ValueError) as exc:
            reason = f"file {str(path)!r} cannot be read ({exc})"
            raise ShardReadError({ref.index: reason}, exc) from exc
    result: Any = out[0] if squeeze else out
    if rest:
        result = result[rest] if squeeze else result[(slice(None), *rest)]
    return result


def write_virtual_features(
    entry: h5py.Group, refs: Sequence[ShardRef], n: int, d: int
) -> h5py.Dataset:
    """Create ``entry/features``: a virtual (n, d) float32 dataset over the shard files."""
    layout = h5py.VirtualLayout(shape=(n, d), dtype=np.float32)
    for ref in refs:
        source = h5py.VirtualSource(
            ref.file, f"entries/{ref.key}/features", shape=(ref.n_images, d), dtype=np.float32
        )
        layout[ref.start : ref.stop] = source
    return entry.create_virtual_dataset("features", layout, fillvalue=np.float32(np.nan))
