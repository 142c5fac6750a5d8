"""Reading an entry's rows: the lazy view, and the error for shards that cannot be read.

A :class:`LazyFeatures` view opens the file for each read (under the shared ``.sync``
lock, so it sees whole batches only) and holds no handle between reads. The rows of a
sharded entry are read from its shard files, each checked before it is read: a missing
or damaged shard raises :class:`~transferkit.exceptions.ShardsMissingError` naming it,
never rows filled in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..exceptions import CacheCorruptedError, ShardsMissingError
from . import _shards
from ._locks import FileLock

__all__ = ["LazyFeatures", "shards_missing"]


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
                raise shards_missing(self._path, self._key, self._shards, self.shape[1],
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


def shards_missing(
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
