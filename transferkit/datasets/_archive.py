"""Safe handling of untrusted files: tar archives and pickles.

Both CIFAR-10 formats that arrive as downloads are untrusted input:

* **Tar archives** (the official ``cifar-10-python.tar.gz``, or a ``.tar.gz`` of an
  image tree) are extracted by :func:`safe_extract_tar` only after *every* member
  has been checked: an absolute path, a ``..`` component, a path escaping the
  extraction folder, a symbolic or hard link, or a device file or FIFO makes the
  whole archive be refused, and nothing is written. Where Python provides it
  (3.12, 3.11.4+, 3.10.12+), ``tarfile``'s ``"data"`` filter is applied as well.
* **Pickles** (the official CIFAR-10 batches are Python pickles) are read by
  :func:`restricted_loads`, whose unpickler can rebuild plain containers and NumPy
  arrays and nothing else. Any other global (``os.system``, ``builtins.eval``...)
  raises :class:`RefusedGlobalError` (a ``pickle.UnpicklingError``) before it is
  imported, so a tampered file cannot run code.

Nothing here knows CIFAR-10's layout; :mod:`transferkit.datasets.cifar10` turns
these errors into messages that say what to do.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import re
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..exceptions import InvalidInputError

__all__ = [
    "RefusedGlobalError",
    "RestrictedUnpickler",
    "archive_stem",
    "restricted_loads",
    "safe_extract_tar",
]

# --------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------


def _numpy_global(module: str, name: str) -> Any:
    """Return one of numpy's array-reconstruction helpers without importing numpy.core."""
    for candidate in (module.replace("numpy.core.", "numpy._core."), module):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no `{module}.{name}`")


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle referenced a global that :class:`RestrictedUnpickler` does not allow.

    Parameters
    ----------
    module : str
        Module of the refused global, e.g. ``"os"``.
    name : str
        Its name, e.g. ``"system"``.
    """

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"refused global `{module}.{name}`")
        self.module = module
        self.name = name


class RestrictedUnpickler(pickle.Unpickler):
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
            raise RefusedGlobalError(module, name)
        if module == "numpy":
            return getattr(np, name)
        return _numpy_global(module, name)


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (Python 2 strings as bytes).

    Parameters
    ----------
    data : bytes
        The pickle.

    Returns
    -------
    object
        The rebuilt object: containers, bytes, numbers and NumPy arrays only.

    Raises
    ------
    RefusedGlobalError
        The pickle references any other global.
    Exception
        A damaged pickle raises whatever ``pickle`` raises for it.
    """
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


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


def safe_extract_tar(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into the existing folder ``dest``, refusing unsafe members.

    Every member is checked before anything is written: absolute paths, ``..``
    components, links and device files make the whole archive be refused. Where
    Python provides it (3.12, 3.11.4+, 3.10.12+), ``tarfile``'s ``"data"`` filter
    is applied as well.

    Parameters
    ----------
    archive : pathlib.Path
        A tar archive, compressed or not.
    dest : pathlib.Path
        Existing folder to extract into.

    Raises
    ------
    InvalidInputError
        A member is unsafe (nothing was extracted), or the archive is damaged.
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


def archive_stem(archive: Path) -> str:
    """``archive``'s file name without its tar suffix (``.tar.gz``, ``.tgz``...)."""
    name = archive.name
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "archive"
    return name
