"""Sharded feature extraction, run on a Dask cluster (or a local one).

An extraction is split into ``n_shards`` contiguous index ranges (:func:`plan_shards`).
Each shard is extracted into a feature-cache file of its own (:func:`extract_shard`),
with the cache's usual guarantees: batches are flushed with a progress counter, so a
shard interrupted anywhere (a killed worker, a lost machine) resumes from its last
complete batch; locks keep two writers off one shard; HDF5 checksums every chunk.
Once every shard is complete, :func:`merge_shards` writes into the main cache an entry
under the key of the whole image set, :meth:`FeatureCache.key(extractor, images)
<transferkit.cache.FeatureCache.key>`, whose features are an HDF5 virtual dataset over
the shard files: the merge copies no features. ``cache.extract(extractor, images)`` and
``cache.load(key)`` then find that entry like any other, and refuse to serve it if a
shard file goes missing (:class:`~transferkit.exceptions.ShardsMissingError`, naming it).

:func:`extract_distributed` does all of it on a Dask cluster: it submits one task per
unfinished shard to an existing ``dask.distributed.Client``, to a scheduler address, or
to a local cluster it starts and stops, retries failed shards (a shard whose worker died
is rescheduled by Dask and resumes where it stopped), merges, and returns the features
like :meth:`FeatureCache.extract <transferkit.cache.FeatureCache.extract>`. Shards
already complete on disk are skipped, so calling it again resumes the whole job.

Shard boundaries fall on multiples of the batch size, so every shard runs exactly the
batches a single-process extraction would: the merged features equal those of
``cache.extract(extractor, images, batch_size=...)`` with the same batch size.

Dask is an optional dependency: ``pip install "transferkit[distributed]"``. Importing
this module imports neither Dask nor TensorFlow.

Examples
--------
>>> from transferkit import FeatureCache, create_extractor
>>> from transferkit.distributed import extract_distributed
>>> vgg = create_extractor("vgg16")                                     # doctest: +SKIP
>>> cache = FeatureCache("features.h5")
>>> f = extract_distributed(vgg, x_train, cache, n_workers=4)           # doctest: +SKIP
>>> f = extract_distributed(vgg, x_train, cache,
...                         address="tcp://scheduler:8786")             # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import pickle
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._hashing import hash_images, hash_json
from ._validation import check_images, check_positive_int, describe
from .cache import FeatureCache, LazyFeatures, _shards
from .cache._core import store_labels, write_sharded_entry
from .cache._format import now
from .cache._keys import (
    check_labels,
    default_batch_size,
    entry_key,
    extractor_fingerprint,
    resolve_labels,
)
from .exceptions import (
    CacheCorruptedError,
    CacheError,
    CacheLockedError,
    InvalidInputError,
    InvalidTypeError,
    MissingDependencyError,
    ShardsIncompleteError,
    TransferkitError,
)

__all__ = [
    "Shard",
    "ShardPlan",
    "extract_distributed",
    "extract_shard",
    "merge_shards",
    "plan_shards",
]

_PLAN_FORMAT = "transferkit.ShardPlan"
#: How long a shard task waits for another process that is writing the same shard.
_LOCK_WAIT_SECONDS = 600.0
#: How long the merge waits for another process writing to the cache file.
_MERGE_LOCK_WAIT_SECONDS = 60.0
#: How long to try connecting to a scheduler given by address.
_CONNECT_TIMEOUT = "30s"
#: How long to wait for the first worker of a cluster given by address.
_WORKER_WAIT_SECONDS = 120.0
#: Environment variables that size TensorFlow's thread pools when it starts.
_TF_THREAD_ENV = ("TF_NUM_INTRAOP_THREADS",)


# ====================================================================================
# The plan
# ====================================================================================
@dataclass(frozen=True)
class Shard:
    """One shard of a :class:`ShardPlan`: images ``start .. stop - 1``.

    Attributes
    ----------
    index : int
        Position in the plan, from 0.
    n_shards : int
        Shards in the plan.
    start, stop : int
        The image range (``stop`` excluded); ``start`` is a multiple of the batch size.
    key : str
        Key of the shard's entry inside its file.
    path : pathlib.Path
        The shard's cache file.
    """

    index: int
    n_shards: int
    start: int
    stop: int
    key: str
    path: Path

    @property
    def n_images(self) -> int:
        """Images in the shard."""
        return self.stop - self.start


@dataclass(frozen=True)
class ShardPlan:
    """How the extraction of one (extractor, images) pair is split into shards.

    Made by :func:`plan_shards` (or by :func:`extract_distributed`) and saved as
    ``plan.json`` in the shard folder, so a later call without ``n_shards`` resumes
    with the same shards.

    Attributes
    ----------
    cache_path : pathlib.Path
        The main cache file; the shards live in ``<cache_path>.shards/<key>/``.
    key : str
        Key of the merged entry: ``FeatureCache.key(extractor, images)``.
    extractor_fingerprint, data_fingerprint : str
        The fingerprints the key combines.
    n_images : int
        Images in the whole set.
    batch_size : int
        Images per forward pass; shard boundaries are multiples of it.
    shards : tuple of Shard
        The shards, in image order.
    """

    cache_path: Path
    key: str
    extractor_fingerprint: str
    data_fingerprint: str
    n_images: int
    batch_size: int
    shards: tuple[Shard, ...]

    @property
    def n_shards(self) -> int:
        """Number of shards."""
        return len(self.shards)

    @property
    def directory(self) -> Path:
        """The folder holding the shard files and ``plan.json``."""
        return _shards.shard_dir(self.cache_path, self.key)

    def refs(self) -> list[_shards.ShardRef]:
        """The shards as the merged entry records them (paths relative to the cache)."""
        base = self.cache_path.parent
        return [
            _shards.ShardRef(s.index, s.start, s.stop, s.key,
                             s.path.relative_to(base).as_posix())
            for s in self.shards
        ]

    def status(self) -> dict[int, str | None]:
        """Each shard's state: ``None`` when complete, else why not (missing, unfinished...)."""
        return {r.index: _shards.shard_problem(self.cache_path, r) for r in self.refs()}

    def pending(self) -> list[int]:
        """Indices of the shards not complete on disk."""
        return [i for i, problem in self.status().items() if problem is not None]


def _shard_bounds(n: int, batch_size: int, n_shards: int) -> list[tuple[int, int]]:
    n_batches = -(-n // batch_size)
    if n_shards > n_batches:
        raise InvalidInputError(
            f"`n_shards` must be at most the number of batches, {n_batches} ({n} images in "
            f"batches of {batch_size}), as each shard holds whole batches; received "
            f"{n_shards}. Use fewer shards or a smaller `batch_size`."
        )
    groups = np.array_split(np.arange(n_batches), n_shards)
    return [(int(g[0]) * batch_size, min(n, (int(g[-1]) + 1) * batch_size)) for g in groups]


def _make_plan(
    cache: FeatureCache, fp: str, data_fp: str, n: int, batch_size: int, n_shards: int
) -> ShardPlan:
    key = entry_key(fp, data_fp)
    cache_path = Path(os.path.abspath(cache.path))  # workers may run in another folder
    folder = _shards.shard_dir(cache_path, key)
    shards = []
    for i, (start, stop) in enumerate(_shard_bounds(n, batch_size, n_shards)):
        shard_key = entry_key(fp, _shards.shard_data_fingerprint(data_fp, start, stop))
        shards.append(Shard(i, n_shards, start, stop, shard_key,
                            folder / _shards.shard_filename(i, n_shards)))
    return ShardPlan(cache_path, key, fp, data_fp, n, batch_size, tuple(shards))


def _saved_plan(cache: FeatureCache, key: str) -> dict[str, Any] | None:
    path = _shards.shard_dir(cache.path, key) / _shards.PLAN_FILE
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(saved, dict) and saved.get("format") == _PLAN_FORMAT
        and saved.get("key") == key
        and isinstance(saved.get("n_shards"), int) and isinstance(saved.get("batch_size"), int)
    )
    return saved if ok else None


def _save_plan(plan: ShardPlan) -> None:
    plan.directory.mkdir(parents=True, exist_ok=True)
    record = {
        "format": _PLAN_FORMAT, "key": plan.key,
        "extractor_fingerprint": plan.extractor_fingerprint,
        "data_fingerprint": plan.data_fingerprint, "n_images": plan.n_images,
        "batch_size": plan.batch_size, "n_shards": plan.n_shards,
        "shards": [[s.start, s.stop] for s in plan.shards],
    }
    target = plan.directory / _shards.PLAN_FILE
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, target)


def _check_cache(cache: Any) -> FeatureCache:
    if isinstance(cache, FeatureCache):
        return cache
    if isinstance(cache, str | os.PathLike):
        return FeatureCache(cache)
    raise InvalidTypeError(
        f"`cache` must be a FeatureCache or the path of its file; received {describe(cache)}."
    )


def _resolve_plan(
    cache: FeatureCache, fp: str, data_fp: str, n: int, extractor: Any,
    n_shards: int | None, batch_size: int | None,
) -> ShardPlan | None:
    """The plan for these arguments: the saved one when they allow, else a new one.

    ``None`` when ``n_shards`` is None and there is no saved plan to reuse.
    """
    key = entry_key(fp, data_fp)
    saved = _saved_plan(cache, key)
    if saved is not None and saved.get("n_images") == n:
        same_count = n_shards is None or n_shards == saved["n_shards"]
        same_batch = batch_size is None or batch_size == saved["batch_size"]
        if same_count and same_batch:
            return _make_plan(cache, fp, data_fp, n, saved["batch_size"], saved["n_shards"])
    if n_shards is None:
        return None
    return _new_plan(cache, fp, data_fp, n, default_batch_size(extractor, batch_size),
                     n_shards)


def _new_plan(
    cache: FeatureCache, fp: str, data_fp: str, n: int, batch_size: int, n_shards: int
) -> ShardPlan:
    plan = _make_plan(cache, fp, data_fp, n, batch_size, n_shards)
    _save_plan(plan)
    return plan


def plan_shards(
    extractor: Any,
    images: Any,
    cache: FeatureCache | str | os.PathLike[str],
    *,
    n_shards: int | None = None,
    batch_size: int | None = None,
) -> ShardPlan:
    """Split the extraction of ``images`` by ``extractor`` into contiguous shards.

    Shards hold whole batches: the ``ceil(n / batch_size)`` batches are divided as
    evenly as possible (like ``np.array_split``), so shard sizes differ by at most one
    batch. The plan is saved beside the cache (``<cache>.shards/<key>/plan.json``).

    Parameters
    ----------
    extractor : BaseExtractor
        Any transferkit extractor (fitted, if it learns).
    images : array-like of shape (n, height, width, 3) or streamed images
        As for :meth:`FeatureCache.extract <transferkit.cache.FeatureCache.extract>`;
        they are fingerprinted here (every pixel of an array, every file of a folder).
    cache : FeatureCache or path-like
        The main cache; shard files go in a folder beside it.
    n_shards : int, optional
        Number of shards, from 1 to the number of batches. ``None`` reuses the plan
        saved by an earlier call for the same extractor and images.
    batch_size : int, optional
        Images per forward pass; defaults to the saved plan's, else the extractor's.

    Returns
    -------
    ShardPlan
    """
    cache = _check_cache(cache)
    fp = extractor_fingerprint(extractor)
    images = check_images(images, name="images")
    n_shards = check_positive_int("n_shards", n_shards, allow_none=True)
    batch_size = check_positive_int("batch_size", batch_size, allow_none=True)
    n = int(images.shape[0])
    plan = _resolve_plan(cache, fp, hash_images(images), n, extractor, n_shards, batch_size)
    if plan is None:
        raise InvalidInputError(
            "`n_shards` must be a positive integer: there is no saved plan for this "
            "extractor and these images to reuse; received None."
        )
    return plan


# ====================================================================================
# One shard
# ====================================================================================
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


def _payload(images: Any, start: int, stop: int, *, remote: bool = True) -> tuple[Any, int, int]:
    """What a worker needs to read images ``start .. stop - 1``: (source, lo, hi).

    In-memory arrays are sliced, so each task carries its own images only; ``h5py``
    datasets and image folders are reopened where the shard runs (the files must be
    visible there at the same path); other streams are sent whole, without labels.
    In this process (``remote=False``) the images are used as they are.
    """
    import h5py

    from .datasets import ImageFolderDataset

    if not remote:
        return images, start, stop
    if isinstance(images, np.ndarray):
        return images[start:stop], 0, stop - start
    if isinstance(images, h5py.Dataset):
        return _H5Source(images.file.filename, images.name, images.shape, images.dtype), start, stop
    if isinstance(images, ImageFolderDataset):
        part = copy.copy(images)
        part._native_size = images._target_size()  # the size of the whole folder's first image
        part.files = images.files[start:stop]
        part.labels = images.labels[start:stop]
        return part, 0, stop - start
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
    for name in _TF_THREAD_ENV:
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


def _run_shard(
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


def _spec(plan: ShardPlan, shard: Shard) -> dict[str, Any]:
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
    images = check_images(images, name="images")
    if int(images.shape[0]) != plan.n_images or (
        check_images_match and hash_images(images) != plan.data_fingerprint
    ):
        raise InvalidInputError(
            f"`images` are not the images the plan was made for (fingerprint "
            f"{plan.data_fingerprint[:12]}, {plan.n_images} images); received "
            f"{describe(images)}."
        )
    shard = plan.shards[int(index)]
    payload = _payload(images, shard.start, shard.stop, remote=False)
    return _run_shard(extractor, payload, _spec(plan, shard), None)


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
    cache = _check_cache(cache)
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
def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise MissingDependencyError(
            "Distributed extraction needs Dask, which is not installed: expected the "
            "`dask[distributed]` package; install it with `pip install "
            f'"transferkit[distributed]"` (or `pip install "dask[distributed]"`). ({exc})'
        ) from exc
    return distributed


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _connect(
    client: Any, address: str | None, n_workers: int, threads_per_worker: int,
    tf_threads: int | None,
) -> Iterator[Any]:
    distributed = _import_distributed()
    if client is not None:
        yield client
        return
    if address is not None:
        try:
            own = distributed.Client(address, timeout=_CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise InvalidInputError(
                f"`address` must be the address of a running Dask scheduler (start one with "
                f"`dask scheduler`); could not connect to {address!r}: {exc}"
            ) from exc
        try:
            yield own
        finally:
            own.close()
        return
    env = {name: str(tf_threads) for name in _TF_THREAD_ENV} if tf_threads else {}
    cluster = distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
        dashboard_address=":0", silence_logs=logging.ERROR, env=env,
    )
    try:
        own = distributed.Client(cluster)
        try:
            yield own
        finally:
            own.close()
    finally:
        cluster.close()


def _total_threads(client: Any) -> int:
    threads = sum(client.nthreads().values())
    if threads == 0:
        try:
            client.wait_for_workers(1, timeout=_WORKER_WAIT_SECONDS)
        except TimeoutError as exc:
            raise CacheError(
                f"No Dask worker joined the scheduler within {_WORKER_WAIT_SECONDS:.0f} s; "
                "start workers with `dask worker <scheduler address>`."
            ) from exc
        threads = sum(client.nthreads().values())
    return max(1, threads)


def _check_picklable(name: str, value: Any) -> None:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return
    except Exception:  # noqa: BLE001 - try cloudpickle, as Dask does
        pass
    try:
        import cloudpickle

        cloudpickle.dumps(value)
    except Exception as exc:  # noqa: BLE001 - anything that stops it being sent
        raise InvalidTypeError(
            f"`{name}` must be picklable to be sent to Dask workers; pickling "
            f"{describe(value)} failed: {exc}. Pass an array, an h5py dataset, an image "
            "folder, or an ImageStream whose function is defined at module level."
        ) from exc


def _failure_message(plan: ShardPlan, failed: dict[int, BaseException], retries: int) -> str:
    parts = []
    for i, error in sorted(failed.items()):
        shard = plan.shards[i]
        text = f"{type(error).__name__}: {error}"
        if type(error).__name__ == "KilledWorker":
            text += " (its worker died every time it ran it: out of memory?)"
        parts.append(f"shard {i} (images {shard.start}..{shard.stop - 1}): {text}")
    done = plan.n_shards - len(failed)
    return (
        f"{len(failed)} of the {plan.n_shards} shards of entry {plan.key!r} failed after "
        f"{retries} retries: {'; '.join(parts)}. The {done} other shards are complete and "
        "kept, as is every finished batch of the failed ones: fix the cause and call "
        "`extract_distributed` again to resume."
    )


def extract_distributed(
    extractor: Any,
    images: Any,
    cache: FeatureCache | str | os.PathLike[str],
    *,
    n_shards: int | None = None,
    client: Any = None,
    address: str | None = None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    tf_threads: int | None = None,
    retries: int = 2,
    batch_size: int | None = None,
    labels: Any = None,
    class_names: list[str] | None = None,
    lazy: bool = False,
    verbose: int = 0,
) -> np.ndarray | LazyFeatures:
    """Features of ``images``, extracted in shards on a Dask cluster, merged in ``cache``.

    Returns at once if ``cache`` already holds them (``cache.key(extractor, images)``).
    Otherwise the images are split into shards (:func:`plan_shards`), each unfinished
    shard is submitted as one Dask task, and the complete shards are merged into one
    entry (:func:`merge_shards`). A shard whose task fails is retried ``retries``
    times; a shard whose worker dies is rescheduled by Dask (up to its
    ``distributed.scheduler.allowed-failures``, 3 by default); either way it resumes
    from its last complete batch. Shards complete on disk are not run again, so
    calling this again after a failure or an interruption resumes the whole job
    (without starting a cluster if only the merge is left).

    Parameters
    ----------
    extractor : BaseExtractor
        Any transferkit extractor (fitted, if it learns). It is pickled to the workers,
        which build its model (once per worker process and job).
    images : array-like of shape (n, height, width, 3) or streamed images
        A NumPy array (each task carries its own slice only), an ``h5py`` dataset or
        an image folder (:func:`transferkit.datasets.load_image_folder`) that the
        workers reopen by path, or another stream (sent to the workers whole; it must
        be picklable and read its range itself through ``iter_batches(batch_size,
        start)``). The stream's ``labels`` and ``class_names`` are stored with the
        entry.
    cache : FeatureCache or path-like
        The main cache. The workers write shard files into ``<cache>.shards/``, so the
        cache's folder must be shared with every worker at the same path.
    n_shards : int, optional
        Number of shards, at most the number of batches. Default: the saved plan of
        an earlier call for the same extractor and images, else twice the worker
        threads of the cluster (so a fast worker picks up more).
    client : dask.distributed.Client, optional
        Run on this client's cluster (it is left open).
    address : str, optional
        Connect to the Dask scheduler at this address (``"tcp://host:8786"``).
    n_workers : int, default=2
        Worker processes of the local cluster started when neither ``client`` nor
        ``address`` is given (stopped at the end).
    threads_per_worker : int, default=1
        Shards each local worker runs at once.
    tf_threads : int, optional
        TensorFlow intra-op threads per worker process. Default for the local
        cluster: the CPU cores divided by ``n_workers`` (so the workers do not
        oversubscribe the cores); for other clusters, the workers' own setting
        (``TF_NUM_INTRAOP_THREADS`` in the worker's environment) unless given.
    retries : int, default=2
        Times a failed shard task is retried.
    batch_size : int, optional
        Images per forward pass; default: the saved plan's, else the extractor's.
    labels : array-like of shape (n,), optional
        Stored with the entry.
    class_names : list of str, optional
        Stored with the entry.
    lazy : bool, default=False
        Return a :class:`~transferkit.cache.LazyFeatures` view instead of the array.
    verbose : int, default=0
        1 shows progress (images of finished shards) on stderr.

    Returns
    -------
    ndarray of shape (n, d), float32, or LazyFeatures

    Raises
    ------
    ShardsIncompleteError
        Some shards still failed after their retries (``.missing`` lists them); the
        others are kept.
    MissingDependencyError
        Dask is not installed.
    """
    cache = _check_cache(cache)
    fp = extractor_fingerprint(extractor)
    images = check_images(images, name="images")
    n = int(images.shape[0])
    labels_arr, class_names = resolve_labels(images, labels, class_names, n)
    n_shards = check_positive_int("n_shards", n_shards, allow_none=True)
    n_workers = int(check_positive_int("n_workers", n_workers))  # type: ignore[arg-type]
    threads_per_worker = int(
        check_positive_int("threads_per_worker", threads_per_worker)  # type: ignore[arg-type]
    )
    tf_threads = check_positive_int("tf_threads", tf_threads, allow_none=True)
    batch_size = check_positive_int("batch_size", batch_size, allow_none=True)
    if isinstance(retries, bool) or not isinstance(retries, int | np.integer) or retries < 0:
        raise InvalidInputError(
            f"`retries` must be a non-negative integer; received {describe(retries)}."
        )
    if client is not None and address is not None:
        raise InvalidInputError(
            "Pass at most one of `client` and `address`; received both "
            f"(client={describe(client)}, address={address!r})."
        )
    if address is not None and (not isinstance(address, str) or not address):
        raise InvalidTypeError(
            f"`address` must be a scheduler address such as 'tcp://host:8786'; received "
            f"{describe(address)}."
        )
    if client is not None:
        distributed = _import_distributed()
        if not isinstance(client, distributed.Client):
            raise InvalidTypeError(
                f"`client` must be a dask.distributed.Client; received {describe(client)}."
            )
    if not isinstance(lazy, bool):
        raise InvalidTypeError(f"`lazy` must be True or False; received {describe(lazy)}.")
    if isinstance(verbose, bool) or not isinstance(verbose, int | np.integer) or verbose < 0:
        raise InvalidInputError(f"`verbose` must be 0 or 1; received {describe(verbose)}.")
    if client is None and address is None and tf_threads is None:
        tf_threads = max(1, _cpu_count() // n_workers)

    data_fp = hash_images(images)
    key = entry_key(fp, data_fp)
    if key in cache:
        try:
            out = cache.load(key, lazy=lazy)
        except ShardsIncompleteError:
            pass  # a sharded entry that lost shards: extract them again below
        else:
            store_labels(cache, key, labels_arr, class_names)
            return out

    plan = _resolve_plan(cache, fp, data_fp, n, extractor, n_shards, batch_size)
    if plan is None or plan.pending():
        _import_distributed()
        _check_picklable("extractor", extractor)
        with _connect(client, address, n_workers, threads_per_worker, tf_threads) as c:
            if plan is None:
                bs = default_batch_size(extractor, batch_size)
                wanted = 2 * _total_threads(c)
                plan = _new_plan(cache, fp, data_fp, n, bs, min(wanted, -(-n // bs)))
            _run_pending(c, extractor, images, plan, plan.pending(), tf_threads, retries,
                         verbose)
    merge_shards(cache, plan, labels=labels_arr, class_names=class_names)
    return cache.load(key, lazy=lazy)


def _run_pending(
    client: Any, extractor: Any, images: Any, plan: ShardPlan, pending: list[int],
    tf_threads: int | None, retries: int, verbose: int,
) -> list[dict[str, Any]]:
    distributed = _import_distributed()
    from .progress import Progress

    if not pending:
        return []
    first = plan.shards[pending[0]]
    if not isinstance(images, np.ndarray):
        _check_picklable("images", _payload(images, first.start, first.stop)[0])
    futures: dict[Any, int] = {}
    job = uuid.uuid4().hex[:8]
    for i in pending:
        shard = plan.shards[i]
        with warnings.catch_warnings():
            # An array's slice travels inside its task on purpose: the scheduler keeps it,
            # so a shard whose worker dies can run again elsewhere. Scattered data (what
            # Dask's "large graph" warning suggests) would die with its worker.
            warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
            future = client.submit(
                _run_shard, extractor, _payload(images, shard.start, shard.stop),
                {**_spec(plan, shard), "reuse_model": True}, tf_threads, retries=retries,
                pure=False,
                key=f"transferkit-shard-{i:05d}-of-{plan.n_shards:05d}-{plan.key[:12]}-{job}",
            )
        futures[future] = i
    done_before = plan.n_images - sum(plan.shards[i].n_images for i in pending)
    bar = Progress(plan.n_images, desc="extracting", unit="image", initial=done_before,
                   mode="auto" if verbose else "off")
    results: list[dict[str, Any]] = []
    failed: dict[int, BaseException] = {}
    try:
        with bar:
            for future in distributed.as_completed(list(futures)):
                i = futures[future]
                if future.status == "finished":
                    results.append(future.result())
                    bar.update(plan.shards[i].n_images)
                else:
                    try:
                        failed[i] = future.exception()
                    except BaseException as exc:  # noqa: BLE001 - e.g. cancelled elsewhere
                        failed[i] = exc
    except BaseException:
        client.cancel(list(futures))  # running shards stop with their worker; they resume
        raise
    if failed:
        first_error = failed[min(failed)]
        error = ShardsIncompleteError(_failure_message(plan, failed, retries), sorted(failed))
        if isinstance(first_error, TransferkitError) and not isinstance(first_error, CacheError):
            raise first_error  # bad input (found by a worker): the clearest message
        raise error from first_error
    return results
