"""Where datasets live on disk, and the check that turns an argument into a path.

* transferkit's data folder is ``$TRANSFERKIT_DATA`` when set (and not empty),
  otherwise ``~/.transferkit/data``; :func:`get_data_dir` expands ``~`` and makes it
  absolute, and never creates it.
* Keras caches its downloads in ``$KERAS_HOME/datasets`` (default
  ``~/.keras/datasets``, or ``/tmp/.keras/datasets`` when the home folder is not
  writable); :func:`keras_dataset_dirs` lists those folders, in that order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._validation import describe
from ..exceptions import InvalidTypeError

__all__ = ["DATA_DIR_ENV", "DEFAULT_DATA_DIR", "as_path", "get_data_dir", "keras_dataset_dirs"]

#: Environment variable naming transferkit's local data folder.
DATA_DIR_ENV = "TRANSFERKIT_DATA"

#: The data folder when ``$TRANSFERKIT_DATA`` is not set.
DEFAULT_DATA_DIR = "~/.transferkit/data"


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
    raw = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(raw).expanduser().resolve()


def keras_dataset_dirs() -> list[Path]:
    """Folders where Keras caches its dataset downloads (``$KERAS_HOME/datasets``)."""
    home = os.environ.get("KERAS_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".keras"
    dirs = [base / "datasets"]
    if not home and not os.access(base.parent, os.W_OK):
        dirs.append(Path("/tmp/.keras/datasets"))  # Keras' fallback for a read-only home
    return dirs


def as_path(name: str, value: Any) -> Path:
    """``value`` as a :class:`~pathlib.Path` with ``~`` expanded; argument ``name`` in errors.

    Raises
    ------
    InvalidTypeError
        ``value`` is not a str or os.PathLike.
    """
    if isinstance(value, bool) or not isinstance(value, str | os.PathLike):
        raise InvalidTypeError(
            f"`{name}` must be a path (str or os.PathLike); received {describe(value)}."
        )
    return Path(value).expanduser()
