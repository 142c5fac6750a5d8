"""Writing an entry's features: the backbone on the calling thread, HDF5 on a writer thread.

The extraction is pipelined (see :mod:`transferkit._pipeline`): a reader thread
prepares the next batches of images, the calling thread runs the backbone, and a writer
thread writes the previous batch's rows and flushes them, then the progress counter
and flushes again, so the backbone never waits for the disk. A batch counts as done
only once its rows and then the progress counter are flushed, in that order; a crash
loses at most the batches still in flight (computed or queued, never half-written),
and an exception in the backbone lets the writer finish every batch computed before
it. The writer holds the ``.sync`` lock exclusively only while it writes and flushes
one batch.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._pipeline import BackgroundWriter
from ..exceptions import CacheError
from ._format import flushed_rows, now
from ._locks import FileLock

__all__ = ["fill_entry"]

#: Computed batches waiting for the writer thread.
_WRITE_QUEUE = 2


def fill_entry(
    path: Path, f: h5py.File, entry: h5py.Group, extractor: Any, images: Any, *,
    sync: FileLock | None, verbose: int,
) -> None:
    """Extract the rest of ``entry``'s features into the open file ``f`` (see module doc)."""
    features = entry["features"]
    progress = entry["progress"]
    n = int(entry.attrs["n_images"])
    bs = int(entry.attrs["batch_size"])
    d = int(features.shape[1])
    done = flushed_rows(entry)
    if features.shape[0] != done:  # rows past the last flushed batch are not trusted
        features.resize((done, d))
    from ..progress import Progress

    # verbose=1: a bar with rate and time left on a terminal, a line every 10% in logs
    # (stderr; $TRANSFERKIT_PROGRESS=bar|lines|off overrides).
    bar = Progress(n, desc="extracting", unit="image", initial=done,
                   mode="auto" if verbose else "off")
    spent = float(entry.attrs.get("extract_seconds", 0.0))
    t0 = time.perf_counter()

    def write(item: tuple[int, np.ndarray]) -> None:
        # On the writer thread, under the exclusive .sync lock (readers see whole
        # batches only): the batch's rows and flush, then the counter and flush. A
        # kill inside the first flush leaves the counter where it was; inside the
        # second, the rows it counts are already on disk.
        offset, feats = item
        end = offset + len(feats)
        if sync is not None:
            sync.acquire()
        try:
            features.resize((end, d))
            features[offset:end] = feats
            f.flush()
            progress[()] = end
            entry.attrs["extract_seconds"] = spent + time.perf_counter() - t0
            f.flush()
        finally:
            if sync is not None:
                sync.release()

    if sync is not None:  # readers come in whenever no batch is being written
        sync.release()
    try:
        with bar:  # ends the display: "done, ..." or "interrupted at k/n images"
            _pipelined_fill(path, extractor, images, done, bs, d, entry.name, n, write, bar)
    finally:
        if sync is not None:
            sync.acquire()
    if int(progress[()]) != n:
        raise CacheError(
            f"Extraction stopped after {int(progress[()])} of {n} images; call again to "
            "resume."
        )
    entry.attrs["completed"] = now()
    entry.attrs["complete"] = True
    f.flush()

def _pipelined_fill(
    path: Path, extractor: Any, images: Any, done: int, bs: int, d: int, name: str, n: int,
    write: Any, bar: Any,
) -> None:
    """Backbone on this thread, HDF5 writes on a writer thread, batch ``k`` behind.

    Every batch computed before an exception (or the end) is written before this
    returns; a write error stops the extraction and is raised as a CacheError
    naming the last complete batch.
    """
    writer = BackgroundWriter(write, maxsize=_WRITE_QUEUE, name="transferkit-cache-writer")
    batches = extractor.iter_features(images, start=done, batch_size=bs)
    try:
        try:
            for offset, feats in batches:
                if feats.shape[1] != d:
                    raise CacheError(
                        f"The extractor produced {feats.shape[1]} features per image but "
                        f"entry {name} holds {d}; delete the entry."
                    )
                writer.put((offset, feats))
                bar.update_to(offset + len(feats))
        finally:
            close = getattr(batches, "close", None)
            if callable(close):
                close()  # stop the extractor's reader thread
            writer.close()  # write what was computed; raises the writer's error
    except BaseException as exc:
        if writer.failed and isinstance(writer.error, OSError):
            failed_at = int(writer.failed_item[0])
            raise _write_failed(path, writer.error, failed_at, n) from writer.error
        if writer.failed and exc is not writer.error:
            raise writer.error from exc  # type: ignore[misc]
        raise

def _write_failed(path: Path, exc: OSError, done: int, n: int) -> CacheError:
    full = getattr(exc, "errno", None) == errno.ENOSPC or "No space" in str(exc)
    reason = (
        "the disk is full: free some space (or point `path` at a larger disk)"
        if full
        else f"the file could not be written ({exc})"
    )
    return CacheError(
        f"Writing features to {str(path)!r} stopped after {done} of {n} images: "
        f"{reason}. Completed batches are kept; call `extract` again to resume. If the "
        "file will not open afterwards, `FeatureCache(path).repair()` keeps every entry "
        "that can still be read."
    )
