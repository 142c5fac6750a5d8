"""File locks that keep one writer per cache file and readers consistent.

Two locks protect a cache file ``<cache>``. ``<cache>.lock`` is held exclusively by the
one writer for a whole extraction (:func:`writer_lock`), so a second writer is refused
rather than interleaved. ``<cache>.sync`` is held shared by readers while they read, and
exclusively by the writer only while it writes and flushes a batch, so readers always
open a consistent file. Locks are advisory ``flock`` locks, released by the OS when a
process dies. Without ``fcntl`` (Windows) locking is skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..exceptions import CacheLockedError

__all__ = ["FileLock", "writer_lock"]


class FileLock:
    """An advisory ``flock`` on a file beside the cache (``<cache><suffix>``)."""

    def __init__(self, path: Path, suffix: str) -> None:
        self.path = path.with_name(path.name + suffix)
        self._fh: Any = None

    def acquire(self, *, shared: bool = False, blocking: bool = True) -> bool:
        """Take the lock; ``False`` if it is held elsewhere (non-blocking) or unusable."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a+")  # noqa: SIM115 - held until release()
        except OSError:
            self._fh = None  # e.g. a read-only folder: nobody can write there anyway
            return True
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(self._fh.fileno(), flags)
        except OSError:
            self._fh.close()
            self._fh = None
            return False
        return True

    def release(self) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    @contextlib.contextmanager
    def held(self, *, shared: bool = False) -> Iterator[None]:
        self.acquire(shared=shared)
        try:
            yield
        finally:
            self.release()


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` for the block; :class:`CacheLockedError` if another writer has it."""
    lock = FileLock(path, ".lock")
    if not lock.acquire(blocking=False):
        raise CacheLockedError(
            f"Another process is writing to the feature cache {str(path)!r} (it holds "
            f"{str(lock.path)!r}). Wait for it to finish, or use another cache file; two "
            "writers on one file are refused rather than interleaved."
        )
    try:
        yield
    finally:
        lock.release()
