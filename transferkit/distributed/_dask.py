"""Running the shards of an extraction on Dask: a local cluster or a scheduler address."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._hashing import hash_images
from .._validation import check_images, check_positive_int, describe
from ..cache import FeatureCache, LazyFeatures
from ..cache._core import store_labels
from ..cache._keys import (
    default_batch_size,
    entry_key,
    extractor_fingerprint,
    resolve_labels,
)
from ..datasets import as_image_source
from ..exceptions import (
    CacheError,
    InvalidInputError,
    InvalidTypeError,
    MissingDependencyError,
    ShardsIncompleteError,
    TransferkitError,
)
from ._plan import ShardPlan, check_cache, new_plan, resolve_plan
from ._shard import TF_THREAD_ENV, merge_shards, run_shard, shard_payload, shard_spec

__all__ = ["CONNECT_TIMEOUT", "cpu_count", "extract_distributed"]

#: How long to try connecting to a scheduler given by address.
CONNECT_TIMEOUT = "30s"

#: How long to wait for the first worker of a cluster given by address.
_WORKER_WAIT_SECONDS = 120.0


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


def cpu_count() -> int:
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
            own = distributed.Client(address, timeout=CONNECT_TIMEOUT)
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
    env = {name: str(tf_threads) for name in TF_THREAD_ENV} if tf_threads else {}
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
    cache = check_cache(cache)
    fp = extractor_fingerprint(extractor)
    images = check_images(as_image_source(images, name="images"), name="images")
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
        tf_threads = max(1, cpu_count() // n_workers)

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

    plan = resolve_plan(cache, fp, data_fp, n, extractor, n_shards, batch_size)
    if plan is None or plan.pending():
        _import_distributed()
        _check_picklable("extractor", extractor)
        with _connect(client, address, n_workers, threads_per_worker, tf_threads) as c:
            if plan is None:
                bs = default_batch_size(extractor, batch_size)
                wanted = 2 * _total_threads(c)
                plan = new_plan(cache, fp, data_fp, n, bs, min(wanted, -(-n // bs)))
            _run_pending(c, extractor, images, plan, plan.pending(), tf_threads, retries,
                         verbose)
    merge_shards(cache, plan, labels=labels_arr, class_names=class_names)
    return cache.load(key, lazy=lazy)


def _run_pending(
    client: Any, extractor: Any, images: Any, plan: ShardPlan, pending: list[int],
    tf_threads: int | None, retries: int, verbose: int,
) -> list[dict[str, Any]]:
    distributed = _import_distributed()
    from ..progress import Progress

    if not pending:
        return []
    first = plan.shards[pending[0]]
    if not isinstance(images, np.ndarray):
        _check_picklable("images", shard_payload(images, first.start, first.stop)[0])
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
                run_shard, extractor, shard_payload(images, shard.start, shard.stop),
                {**shard_spec(plan, shard), "reuse_model": True}, tf_threads, retries=retries,
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
