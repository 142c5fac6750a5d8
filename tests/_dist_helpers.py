"""Extractors for tests/test_distributed.py, importable by Dask worker processes.

Worker processes import this module by name (``tests/`` is on their ``PYTHONPATH``), so
everything here is defined at module level and pickles by reference.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
from conftest import NumpyExtractor


def in_dask_worker() -> bool:
    """Whether this code runs inside a Dask worker process."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def _log(path: str, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text + "\n")


class RecordingExtractor(NumpyExtractor):
    """NumpyExtractor that appends ``pid shard-fingerprint n start threads`` per attempt."""

    def __init__(self, *, grid=2, preprocessing="rescale", dtype="float32", batch_size=8,
                 delay=0.0, log=""):
        super().__init__(grid=grid, preprocessing=preprocessing, dtype=dtype,
                         batch_size=batch_size, delay=delay)
        self.log = log

    def _attempt(self, X, start) -> str:
        fp = X.fingerprint()[:12] if callable(getattr(X, "fingerprint", None)) else "-"
        threads = os.environ.get("TF_NUM_INTRAOP_THREADS", "-")
        line = f"{os.getpid()} {fp} {len(X)} {start} {threads} {int(in_dask_worker())}"
        if self.log:
            _log(self.log, line)
        return fp

    def iter_features(self, X, *, start=0, batch_size=None):
        self._attempt(X, start)
        yield from super().iter_features(X, start=start, batch_size=batch_size)


class KillOnceExtractor(RecordingExtractor):
    """Kills its own Dask worker process (SIGKILL) once, at batch ``kill_at`` of an attempt.

    The first attempt that reaches that batch inside a Dask worker claims ``marker``
    (created exclusively, so it happens once in the whole test) and writes
    ``pid shard-fingerprint offset`` into it, waits ``settle`` seconds so the cache's
    writer thread flushes the batches already computed, then kills the process.
    """

    def __init__(self, *, grid=2, preprocessing="rescale", dtype="float32", batch_size=8,
                 delay=0.0, log="", marker="", kill_at=3, settle=1.0):
        super().__init__(grid=grid, preprocessing=preprocessing, dtype=dtype,
                         batch_size=batch_size, delay=delay, log=log)
        self.marker = marker
        self.kill_at = kill_at
        self.settle = settle

    def iter_features(self, X, *, start=0, batch_size=None):
        fp = self._attempt(X, start)
        batches = NumpyExtractor.iter_features(self, X, start=start, batch_size=batch_size)
        for k, (offset, feats) in enumerate(batches):
            if k == self.kill_at and in_dask_worker() and self._claim(fp, offset):
                time.sleep(self.settle)
                os.kill(os.getpid(), signal.SIGKILL)
            yield offset, feats

    def _claim(self, fp: str, offset: int) -> bool:
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()} {fp} {offset}\n")
        return True


class FailingExtractor(RecordingExtractor):
    """Raises in every attempt on images whose first pixel value is ``poison``."""

    def __init__(self, *, grid=2, preprocessing="rescale", dtype="float32", batch_size=8,
                 delay=0.0, log="", poison=-1):
        super().__init__(grid=grid, preprocessing=preprocessing, dtype=dtype,
                         batch_size=batch_size, delay=delay, log=log)
        self.poison = poison

    def iter_features(self, X, *, start=0, batch_size=None):
        self._attempt(X, start)
        for offset, feats in NumpyExtractor.iter_features(self, X, start=start,
                                                          batch_size=batch_size):
            if int(np.asarray(X[0:1])[0, 0, 0, 0]) == self.poison:
                raise RuntimeError("this shard always fails")
            yield offset, feats


def synthetic_images(start: int, stop: int) -> np.ndarray:
    """Images ``start .. stop - 1`` of a synthetic stream (the same for the same range)."""
    out = np.empty((stop - start, 8, 8, 3), dtype=np.uint8)
    for k, i in enumerate(range(start, stop)):
        out[k] = np.random.default_rng(i).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return out
