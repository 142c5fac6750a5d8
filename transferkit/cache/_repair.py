"""Rebuilding a damaged cache file, keeping every entry that still reads correctly.

Each entry is read in full (HDF5 checksums verify every chunk); readable ones are
copied into a fresh file, which then replaces the original. The original is kept
beside it as ``<name>.damaged-<time>``: nothing is deleted. A sharded entry is kept if
every shard file reads correctly; a damaged shard file is repaired the same way, in
place.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..exceptions import CacheError
from . import _shards
from ._format import FORMAT_NAME, FORMAT_VERSION, flushed_rows
from ._locks import writer_lock

__all__ = ["repair_file"]


def repair_file(path: Path) -> dict[str, Any]:
    """Repair the cache file ``path`` (see :meth:`FeatureCache.repair`)."""
    report: dict[str, Any] = {"kept": [], "dropped": [], "backup": None,
                              "shard_backups": []}
    with writer_lock(path):
        if not path.exists():
            return report
        stamp = _dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        tmp = path.with_name(f".{path.name}.repair-{stamp}")
        try:
            src = h5py.File(path, "r", locking=False)
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
                        _copy_entry(path, src["entries"][key], out, key, report)
                        report["kept"].append(key)
                    except (OSError, KeyError, ValueError, RuntimeError,
                            _shards.ShardReadError):
                        if key in out:
                            del out[key]
                        report["dropped"].append(key)
        finally:
            if src is not None:
                src.close()
        backup = path.with_name(f"{path.name}.damaged-{stamp}")
        os.replace(path, backup)
        os.replace(tmp, path)
        report["backup"] = str(backup)
    return report



def _copy_entry(
    path: Path, src: h5py.Group, out: h5py.Group, key: str, report: dict[str, Any]
) -> None:
    refs = _shards.refs_of(src)
    if refs is not None:
        _copy_sharded_entry(path, src, out, key, refs, report)
        return
    dst = out.create_group(key)
    for name, value in src.attrs.items():
        dst.attrs[name] = value
    feats = src["features"]
    done = flushed_rows(src)
    data = feats[:done]  # reads and checksums every chunk
    dst.create_dataset(
        "features", data=data, maxshape=feats.maxshape, chunks=feats.chunks,
        compression=feats.compression, fletcher32=True,
    )
    dst.create_dataset("progress", data=np.int64(done))
    if "labels" in src:
        dst.create_dataset("labels", data=src["labels"][()])

def _copy_sharded_entry(
    path: Path, src: h5py.Group, out: h5py.Group, key: str, refs: list[_shards.ShardRef],
    report: dict[str, Any],
) -> None:
    n, d = int(src.attrs["n_images"]), int(src.attrs["feature_dim"])
    step = max(1, (64 << 20) // (4 * max(d, 1)))  # read ~64 MiB at a time
    for ref in refs:  # every row of every shard, checksummed
        try:
            for a in range(ref.start, ref.stop, step):
                _shards.read_rows(path, refs, n, d, slice(a, min(a + step, ref.stop)))
        except _shards.ShardReadError as exc:
            shard_path = ref.path(path)
            if isinstance(exc.cause, OSError) and shard_path.is_file():
                with contextlib.suppress(CacheError, OSError):
                    backup = repair_file(shard_path)["backup"]
                    report["shard_backups"].append(backup)
            raise
    dst = out.create_group(key)
    for name, value in src.attrs.items():
        dst.attrs[name] = value
    _shards.write_virtual_features(dst, refs, n, d)
    dst.create_dataset("progress", data=np.int64(n))
    if "labels" in src:
        dst.create_dataset("labels", data=src["labels"][()])

