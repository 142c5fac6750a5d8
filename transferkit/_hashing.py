"""Stable content hashes used for fingerprints and cache keys."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

__all__ = ["hash_json", "hash_file", "hash_arrays", "hash_images"]

_CHUNK_BYTES = 1 << 24  # hash large arrays 16 MiB at a time, never copying them whole


def _new() -> Any:
    return hashlib.blake2b(digest_size=20)


def hash_json(obj: Any) -> str:
    """Hash of a JSON-serialisable object, independent of dict order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    h = _new()
    h.update(text.encode())
    return h.hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """Hash of a file's bytes, read in chunks."""
    h = _new()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def hash_arrays(arrays: list[np.ndarray]) -> str:
    """Hash of a list of arrays: shapes, dtypes and values."""
    h = _new()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}|{a.dtype.str};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def hash_images(images: Any) -> str:
    """Fingerprint of an image collection: shape, dtype, every pixel and the order.

    Objects that know their own identity (e.g. a streamed image folder) provide a
    ``fingerprint()`` method, which is used instead. Arrays, including lazy ones such
    as ``h5py`` datasets, are hashed in blocks so memory stays flat.
    """
    own = getattr(images, "fingerprint", None)
    if callable(own):
        return str(own())
    h = _new()
    shape = tuple(int(s) for s in images.shape)
    dtype = np.dtype(images.dtype)
    h.update(f"images|{shape}|{dtype.str};".encode())
    n = shape[0]
    per_item = max(1, int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)
    step = max(1, _CHUNK_BYTES // per_item)
    for i in range(0, n, step):
        block = np.ascontiguousarray(images[i : i + step])
        h.update(memoryview(block).cast("B"))
    return h.hexdigest()
