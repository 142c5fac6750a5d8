"""A Keras model and transferkit's metadata in one ``.keras`` file, written atomically.

Layout: Keras' own ``.keras`` zip (``model.save``) with one more member,
``transferkit.json``, a JSON object whose ``"format"`` names what wrote it (e.g.
``"transferkit.CifarCNN"``). The file still loads with ``keras.saving.load_model``
(safe mode, after importing the module that registers transferkit's layers). Used by
``CifarCNN`` and ``FineTunedExtractor``.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from ._atomic import atomic_path
from .exceptions import InvalidInputError

__all__ = ["META_NAME", "check_keras_path", "read_keras_meta", "save_keras_with_meta"]

#: The zip member holding transferkit's metadata.
META_NAME = "transferkit.json"


def check_keras_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, refused unless it ends in ``.keras``."""
    path = Path(path)
    if path.suffix != ".keras":
        raise InvalidInputError(
            f"`path` must end in '.keras' (Keras' format); received {str(path)!r}.")
    return path


def save_keras_with_meta(model: Any, path: str | os.PathLike[str], meta: dict[str, Any]) -> Path:
    """Write ``model`` and ``meta`` to the ``.keras`` file ``path``, atomically."""
    path = check_keras_path(path)
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(META_NAME, json.dumps(meta))
    return path


def read_keras_meta(
    path: str | os.PathLike[str], fmt: str, what: str, written_by: str
) -> dict[str, Any]:
    """The metadata of a file written by :func:`save_keras_with_meta` with format ``fmt``.

    A file that is missing, not a zip, without the member or of another format raises
    :class:`InvalidInputError` naming ``path``, ``what`` it should be ("CifarCNN") and
    ``written_by`` (what writes such files).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read(META_NAME))
        if not isinstance(meta, dict) or meta.get("format", fmt) != fmt:
            raise ValueError(f"format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise InvalidInputError(
            f"`path` {str(path)!r} is not a {what} file written by {written_by} "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    return meta
