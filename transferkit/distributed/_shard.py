"""Running one shard in a worker process, and merging complete shards into one entry.

Each shard is an ordinary feature-cache file (same fingerprints, per-batch resume,
locks and checksums). Images reach a worker as the shard's slice of an array, or as
the path of an HDF5 dataset or image folder that it reopens.
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._hashing import hash_images, hash_json
from .._validation import check_images, describe
from ..cache import FeatureCache, _shards
from ..cache._core import write_sharded_entry
from ..cache._format import now
from ..cache._keys import (
    check_labels,
    entry_key,
    extractor_fingerprint,
    resolve_labels,
)
from ..datasets import as_image_source
from ..exceptions import (
    CacheCorruptedError,
    CacheError,
    CacheLockedError,
    InvalidInputError,
    InvalidTypeError,
    ShardsIncompleteError,
)
from ._plan import Shard, ShardPlan, check_cache

__all__ = [
    "TF_THREAD_ENV", "extract_shard", "merge_shards", "run_shard", "shard_payload", "shard_spec",
]

#: How long a shard task waits for another process that is writing the same shard.
_LOCK_WAIT_SECONDS = 600.0

#: How long the merge waits for another process writing to the cache file.
_MERGE_LOCK_WAIT_SECONDS = 60.0

#: Environment variables that size TensorFlow's thread pools when it starts.
TF_THREAD_ENV = ("TF_NUM_INTRAOP_THREADS",)


class _H5Source:
    """An ``h5py`` image dataset, reopened by file name where it is read (picklable)."""

    ndim = 4

    def __init__(self, filename: str, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        self.filename, self.name = filename, name
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def _open(self) -> Any:
        import h5py

        try:
            return h5py.File(self.filename, "r")
        except OSError:  # e.g. open in this process already, with HDF5 locking off
            return h5py.File(self.filename, "r", locking=False)

    def __getitem__(self, index: Any) -> np.ndarray:
        with self._open() as f:
            return f[self.name][index]

    def iter_batches(self, batch_size: int, start: int = 0) -> Iterator[np.ndarray]:
        with self._open() as f:
            ds = f[self.name]
            for i in range(start, self.shape[0], batch_size):
                yield ds[i : i + batch_size]


class _ShardImages:
    """Images ``lo .. hi - 1`` of ``source``, as the image collection of one shard.

    Its ``fingerprint()`` is the shard's data fingerprint (the whole set's plus the
    range), so the shard's cache entry gets the shard key.
    """

    ndim = 4
    labels = None
    class_names = None

    def __init__(self, source: Any, lo: int, hi: int, fingerprint: str) -> None:
        self._source, self._lo, self._hi, self._fp = source, int(lo), int(hi), fingerprint
        self.shape = (self._hi - self._lo, *(int(s) for s in source.shape[1:]))
        self.dtype = np.dtype(source.dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def fingerprint(self) -> str:
        return self._fp

    def __getitem__(self, index: Any) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise InvalidTypeError(
                f"a shard's images are read by contiguous slices; received {describe(index)}."
            )
        start, stop, _ = index.indices(len(self))
        return np.asarray(self._source[self._lo + start : self._lo + max(start, stop)])

    def iter_batches(self, batch_size: int, start: int = 0) -> Iterator[np.ndarray]:
        n = len(self)
        own = getattr(self._source, "iter_batches", None)
        if not callable(own):
            for i in range(start, n, batch_size):
                yield np.asarray(self._source[self._lo + i : self._lo + min(i + batch_size, n)])
            return
        left = n - start
        batches = own(batch_size, start=self._lo + start)
        try:
            for batch in batches:
                if left <= 0:
                    break
                batch = np.asarray(batch)[:left]
                left -= len(batch)
                yield batch
        finally:
            close = getattr(batches, "close", None)
            if callable(close):
                close()


def shard_payload(
    images: Any, start: int, stop: int, *, remote: bool = True
) -> tuple[Any, int, int]:
    """What a worker needs to read images ``start .. stop - 1``: (source, lo, hi).

    In-memory arrays are sliced, so each task carries its own images only; ``h5py``
    datasets and image folders are reopened where the shard runs (the files must be
    visible there at the same path); other streams are sent whole, without labels.
    In this process (``remote=False``) the images are used as they are.
    """
    import h5py

    from ..datasets import ImageFolderDataset

    if not remote:
        return images, start, stop
    if isinstance(images, np.ndarray):
        return images[start:stop], 0, stop - start
    if isinstance(images, h5py.Dataset):
        return _H5Source(images.file.filename, images.name, images.shape, images.dtype), start, stop
    if isinstance(images, ImageFolderDataset):
        return images.subset(start, stop), 0, stop - start  # the whole folder's image size
    if callable(getattr(images, "iter_batches", None)):
        part = copy.copy(images)
        with contextlib.suppress(AttributeError):
            part.labels = None  # stored by the merge, not by the shards
        return part, start, stop
    return np.asarray(images[start:stop]), 0, stop - start


def _limit_threads(tf_threads: int | None) -> None:
    """Size TensorFlow's intra-op pool in this process, if it has not started yet."""
    if tf_threads is None:
        return
    for name in TF_THREAD_ENV:
        os.environ[name] = str(int(tf_threads))
    tf = sys.modules.get("tensorflow")
    if tf is not None:  # already imported: works only before its runtime initialised
        with contextlib.suppress(RuntimeError, AttributeError, ValueError):
            tf.config.threading.set_intra_op_parallelism_threads(int(tf_threads))


#: Extractors already built in this (worker) process, per thread, by fingerprint and
#: parameters: a worker running several shards of one job builds its model once.
_WORKER_EXTRACTORS: dict[tuple[int, str], Any] = {}
_WORKER_LOCK = threading.Lock()


def _reuse_extractor(extractor: Any, fp: str) -> Any:
    get_params = getattr(extractor, "get_params", None)
    if not callable(get_params):
        return extractor
    try:
        params = hash_json({"fingerprint": fp, "class": repr(type(extractor)),
                            "params": get_params(deep=False)})
    except Exception:  # noqa: BLE001 - parameters that do not serialise: no reuse
        return extractor
    slot = (threading.get_ident(), params)
    with _WORKER_LOCK:
        known = _WORKER_EXTRACTORS.get(slot)
        if known is not None:
            return known
        for other in [k for k in _WORKER_EXTRACTORS if k[0] == slot[0]]:
            del _WORKER_EXTRACTORS[other]  # one model per thread: drop another job's
        _WORKER_EXTRACTORS[slot] = extractor
        return extractor


def run_shard(
    extractor: Any, payload: tuple[Any, int, int], spec: dict[str, Any], tf_threads: int | None
) -> dict[str, Any]:
    """Extract one shard into its file (the task a worker runs); returns a summary."""
    _limit_threads(tf_threads)
    t0 = time.perf_counter()
    fp = extractor_fingerprint(extractor)
    if fp != spec["extractor_fingerprint"]:
        raise CacheError(
            f"The extractor's fingerprint on {socket.gethostname()} ({fp[:12]}) differs from "
            f"the one the shards were planned with ({spec['extractor_fingerprint'][:12]}): "
            "its weights file or a library differs there. Give every worker the same "
            "weights and transferkit version."
        )
    if spec.get("reuse_model"):
        extractor = _reuse_extractor(extractor, fp)
    source, lo, hi = payload
    data_fp = _shards.shard_data_fingerprint(spec["data_fingerprint"], spec["start"],
                                             spec["stop"])
    images = _ShardImages(source, lo, hi, data_fp)
    if entry_key(fp, data_fp) != spec["key"] or len(images) != spec["stop"] - spec["start"]:
        raise CacheError(f"Shard {spec['index']} received images that do not match its plan.")
    cache = FeatureCache(spec["path"])
    resumed_from = _done(cache, spec["key"])
    repaired = False
    deadline = time.monotonic() + _LOCK_WAIT_SECONDS
    while True:
        try:
            cache.extract(extractor, images, batch_size=spec["batch_size"], lazy=True)
            break
        except CacheLockedError:
            # Another process writes this shard (a duplicate task, or a worker Dask took
            # for dead that still runs): wait for it, then resume or find it complete.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        except CacheCorruptedError:
            if repaired:
                raise
            cache.repair()  # a damaged shard file: set it aside, keep what reads
            repaired = True
    _annotate(cache, spec)
    return {
        "index": spec["index"], "n_images": len(images), "resumed_from": resumed_from,
        "seconds": time.perf_counter() - t0,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def _done(cache: FeatureCache, key: str) -> int:
    try:
        for entry in cache.entries(include_incomplete=True):
            if entry.key == key:
                return entry.n_done
    except CacheError:
        pass
    return 0


def _annotate(cache: FeatureCache, spec: dict[str, Any]) -> None:
    """Record in the shard's entry which job and range it belongs to (informative only)."""
    with contextlib.suppress(CacheLockedError):
        cache.annotate(
            spec["key"], parent_key=spec["parent_key"], shard_index=spec["index"],
            shard_count=spec["n_shards"], start=spec["start"], stop=spec["stop"],
        )


def shard_spec(plan: ShardPlan, shard: Shard) -> dict[str, Any]:
    return {
        "index": shard.index, "n_shards": shard.n_shards, "start": shard.start,
        "stop": shard.stop, "key": shard.key, "path": str(shard.path),
        "parent_key": plan.key, "extractor_fingerprint": plan.extractor_fingerprint,
        "data_fingerprint": plan.data_fingerprint, "batch_size": plan.batch_size,
    }


def extract_shard(
    extractor: Any,
    images: Any,
    plan: ShardPlan,
    index: int,
    *,
    check_images_match: bool = True,
) -> dict[str, Any]:
    """Extract shard ``index`` of ``plan`` in this process (resuming it if it was started).

    :func:`extract_distributed` runs this on Dask workers; call it yourself to run
    shards with another scheduler (one batch job per shard, say), then call
    :func:`merge_shards`.

    Parameters
    ----------
    extractor : BaseExtractor
        The extractor the plan was made for.
    images : array-like or streamed images
        The whole image set the plan was made for (only the shard's range is read).
    plan : ShardPlan
        From :func:`plan_shards`.
    index : int
        Which shard, ``0 .. plan.n_shards - 1``.
    check_images_match : bool, default=True
        Fingerprint ``images`` and refuse them unless they are the plan's. Turn it off
        only to save that pass over the data when you are sure.

    Returns
    -------
    dict
        ``index``, ``n_images``, ``resumed_from`` (images already done before this
        call), ``seconds`` and ``worker`` (host:pid).
    """
    if not isinstance(plan, ShardPlan):
        raise InvalidTypeError(f"`plan` must be a ShardPlan; received {describe(plan)}.")
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or not (
        0 <= index < plan.n_shards
    ):
        raise InvalidInputError(
            f"`index` must be an int in 0..{plan.n_shards - 1}; received {describe(index)}."
        )
    images = check_images(as_image_source(images, name="images"), name="images")
    if int(images.shape[0]) != plan.n_images or (
        check_images_match and hash_images(images) != plan.data_fingerprint
    ):
        raise InvalidInputError(
            f"`images` are not the images the plan was made for (fingerprint "
            f"{plan.data_fingerprint[:12]}, {plan.n_images} images); received "
            f"{describe(images)}."
        )
    shard = plan.shards[int(index)]
    payload = shard_payload(images, shard.start, shard.stop, remote=False)
    return run_shard(extractor, payload, shard_spec(plan, shard), None)


# ====================================================================================
# The merge
# ====================================================================================
def _missing_message(plan: ShardPlan, problems: dict[int, str]) -> str:
    lines = "; ".join(
        f"shard {i} (images {plan.shards[i].start}..{plan.shards[i].stop - 1}): {why}"
        for i, why in sorted(problems.items())
    )
    return (
        f"{len(problems)} of the {plan.n_shards} shards of entry {plan.key!r} are not "
        f"complete (shards {sorted(problems)}): {lines}."
    )


def merge_shards(
    cache: FeatureCache | str | os.PathLike[str],
    plan: ShardPlan,
    *,
    labels: Any = None,
    class_names: list[str] | None = None,
) -> str:
    """Make the complete shards of ``plan`` one entry of ``cache``; no features are copied.

    The entry's key is ``plan.key`` (``cache.key(extractor, images)``); its features
    are a virtual dataset over the shard files, which must stay where they are
    (``<cache>.shards/<key>/``, moved along with the cache file if it moves).

    Parameters
    ----------
    cache : FeatureCache or path-like
        The main cache (the one the plan was made for).
    plan : ShardPlan
        Every one of its shards must be complete.
    labels : array-like of shape (n,), optional
        Stored with the entry.
    class_names : list of str, optional
        Stored with the entry.

    Returns
    -------
    str
        The entry key.

    Raises
    ------
    ShardsIncompleteError
        Some shards are missing or unfinished; the message and ``.missing`` name them.
    CacheLockedError
        Another process kept writing to the cache file for a minute; the shards are
        kept, and merging again later is all that is left to do.
    """
    cache = check_cache(cache)
    if not isinstance(plan, ShardPlan):
        raise InvalidTypeError(f"`plan` must be a ShardPlan; received {describe(plan)}.")
    if cache.path.resolve() != plan.cache_path.resolve():
        raise InvalidInputError(
            f"`plan` was made for the cache {str(plan.cache_path)!r}; received the cache "
            f"{str(cache.path)!r}."
        )
    labels_arr = check_labels(labels, plan.n_images)
    _, class_names = resolve_labels(None, None, class_names, plan.n_images)
    problems = {i: p for i, p in plan.status().items() if p is not None}
    if problems:
        raise ShardsIncompleteError(
            f"Cannot merge: {_missing_message(plan, problems)} Run `extract_distributed` "
            "(or `extract_shard` for each of them) again to finish them.",
            sorted(problems),
        )
    infos = [FeatureCache(s.path).info(s.key) for s in plan.shards]
    for shard, info in zip(plan.shards, infos, strict=True):
        if info.extractor_fingerprint != plan.extractor_fingerprint:
            raise CacheCorruptedError(
                f"Shard {shard.index} ({str(shard.path)!r}) was written by another extractor; "
                f"delete it and extract it again."
            )
    feature_dims = {info.feature_dim for info in infos}
    if len(feature_dims) != 1:
        raise CacheCorruptedError(
            f"The shards of entry {plan.key!r} hold different feature widths {feature_dims}; "
            f"delete them (`cache.delete({plan.key!r})`) and extract again."
        )
    first = plan.shards[0]
    with FeatureCache(first.path)._open("r") as f:
        attrs = dict(f["entries"][first.key].attrs)
    keep = ("extractor", "extractor_config", "extractor_fingerprint", "image_shape",
            "image_dtype", "feature_dim", "versions")
    merged = {k: attrs[k] for k in keep if k in attrs}
    merged.update({
        "data_fingerprint": plan.data_fingerprint, "n_images": plan.n_images,
        "batch_size": plan.batch_size, "created": min(i.created for i in infos),
        "completed": now(), "extract_seconds": sum(i.extract_seconds for i in infos),
        "shard_nbytes": sum(i.nbytes for i in infos),
    })
    deadline = time.monotonic() + _MERGE_LOCK_WAIT_SECONDS
    while True:
        try:
            write_sharded_entry(cache, plan.key, plan.refs(), merged, labels_arr, class_names)
            return plan.key
        except CacheLockedError:  # another writer on the cache file: merges are quick
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# ====================================================================================
# Dask
# ====================================================================================
