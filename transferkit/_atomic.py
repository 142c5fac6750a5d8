"""Writing a file so that it is either the old one or the complete new one, never half.

Every file transferkit writes for later use (models, head files, converted weights,
shard plans, cache files) goes through :func:`atomic_path`: the content is written to a
temporary name in the same folder, flushed to disk, then renamed over the target
(``os.replace``, atomic on POSIX and Windows). A crash, a full disk or an exception
leaves the previous file as it was and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


def _fsync(path: Path) -> None:
    """Flush ``path`` to disk; a failure to do so fails the write (its data may be lost)."""
    with open(path, "rb+") as fh:
        try:
            os.fsync(fh.fileno())
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems without fsync
                raise


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, suffix: str = ".tmp", make_folder: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block succeeds it replaces ``path``.

    The folder is created if needed (unless ``make_folder=False``, when a missing folder
    fails as an ordinary write would). ``suffix`` matters to writers that infer the
    format from the name (Keras' ``.keras``, h5py's ``.h5``). The file is fsynced before
    the rename; an fsync failure fails the write. On an exception the temporary file
    is removed and ``path`` is untouched.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if make_folder:
        folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
