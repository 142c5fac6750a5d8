"""Indexes of cache entries, saved beside the cache: :func:`index_entry` and :class:`EntryIndex`.

Where a saved index lives (one pair of files per entry and set of parameters)::

    <cache file>.index/<key>-<params>.npy     exact backend: the prepared vectors, float32
                                              (n, d), C order; read with mmap_mode="r"
    <cache file>.index/<key>-<params>.faiss   faiss backend: faiss.write_index's file
    <cache file>.index/<key>-<params>.json    the sidecar (below)

``<params>`` is the first 12 hex digits of ``hash_json({"metric", "center", "backend",
"format_version"})``, with ``backend`` the *resolved* one (``"auto"`` never appears).

The sidecar (JSON)::

    format              "transferkit.SimilarityIndex"
    format_version      INDEX_FORMAT_VERSION
    key, n, d           the entry key, its rows and width
    data_fingerprint, extractor_fingerprint, created, completed
                        copied from the entry's CacheEntry when the index was built
    params              {"metric", "center", "backend"}
    mean                the vector subtracted before comparing (list of d floats)
    file, nbytes        the index file's name and size in bytes

Invariants: the index file is written first and the sidecar last, each atomically
(:func:`transferkit._atomic.atomic_path`), so a sidecar only ever describes a complete
index file. A saved index is used only if its sidecar equals what the entry is *now*
(key, n, d, both fingerprints, ``created``/``completed``, params, format version);
otherwise (the entry was deleted and extracted again, say) it is rebuilt and replaced
silently. A sidecar or index file that cannot be read, or whose size or shape is not the
recorded one, is rebuilt with a warning, never an error. ``save=False`` writes nothing.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path, atomic_write_text
from .._hashing import hash_json
from .._validation import check_bool, check_choice, describe
from ..cache import CacheEntry, FeatureCache, as_cache
from ..cache._keys import extractor_fingerprint
from ..exceptions import InvalidInputError, InvalidTypeError
from ._index import (
    BACKENDS,
    METRICS,
    SimilarityIndex,
    check_features,
    check_k,
    import_faiss,
    resolve_backend,
)

__all__ = [
    "INDEX_FORMAT",
    "INDEX_FORMAT_VERSION",
    "EntryIndex",
    "build_index",
    "check_entry",
    "describe_extractor",
    "index_entry",
    "index_paths",
]

INDEX_FORMAT = "transferkit.SimilarityIndex"
#: Version of the saved index layout; part of the file names, so a new layout never
#: reads an old one.
INDEX_FORMAT_VERSION = 1



def check_entry(cache: FeatureCache, key: Any) -> CacheEntry:
    """The :class:`CacheEntry` of ``key``: it must exist, be complete and hold rows."""
    if not isinstance(key, str):
        raise InvalidTypeError(f"`key` must be an entry key (a string); received {describe(key)}.")
    if not cache.path.exists():
        raise InvalidInputError(
            f"`key` must name an entry of the cache {str(cache.path)!r}; received {key!r}, "
            "but that cache file does not exist yet."
        )
    try:
        entry = cache.info(key)
    except InvalidInputError as exc:
        raise InvalidInputError(
            f"`key` must name an entry of the cache {str(cache.path)!r}; received {key!r}, "
            "which it does not hold. `cache.entries()` lists the keys."
        ) from exc
    if not entry.complete:
        raise InvalidInputError(
            f"`key` must name a complete entry; received {key!r}, an interrupted extraction "
            f"({entry.n_done} of {entry.n_images} rows). Call `extract` again with the same "
            "extractor and images to finish it."
        )
    if entry.n_images < 1 or entry.feature_dim < 1:
        raise InvalidInputError(
            f"`key` must name an entry with features; received {key!r}, which holds "
            f"{entry.n_images} rows of {entry.feature_dim} features."
        )
    return entry


def describe_extractor(name: str, fingerprint: str) -> str:
    """An extractor in messages: its class name and short fingerprint."""
    return f"{name} (fingerprint {fingerprint[:12]})"


def _entry_extractor_name(entry: CacheEntry) -> str:
    cls = str(entry.extractor_config.get("class", "") or "")
    return cls.rsplit(".", 1)[-1] if cls else entry.extractor


def index_paths(
    cache: FeatureCache, key: str, *, metric: str, center: bool, backend: str
) -> tuple[Path, Path]:
    """``(index file, sidecar)`` of the saved index of ``key`` (``backend`` resolved)."""
    params = {"metric": metric, "center": bool(center), "backend": backend,
              "format_version": INDEX_FORMAT_VERSION}
    folder = Path(f"{cache.path}.index")
    stem = f"{key}-{hash_json(params)[:12]}"
    return folder / f"{stem}{'.faiss' if backend == 'faiss' else '.npy'}", folder / f"{stem}.json"


def _expected_sidecar(entry: CacheEntry, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": INDEX_FORMAT,
        "format_version": INDEX_FORMAT_VERSION,
        "key": entry.key,
        "n": entry.n_images,
        "d": entry.feature_dim,
        "data_fingerprint": entry.data_fingerprint,
        "extractor_fingerprint": entry.extractor_fingerprint,
        "created": entry.created,
        "completed": entry.completed,
        "params": params,
    }


class _Damaged(Exception):
    """A saved index that cannot be used: the reason goes into the warning."""


def _load(
    entry: CacheEntry, params: dict[str, Any], index_file: Path, sidecar: Path
) -> SimilarityIndex | None:
    """The saved index, if valid for ``entry``; None if absent or stale; _Damaged if broken."""
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise _Damaged(f"its sidecar {str(sidecar)!r} cannot be read ({exc})") from exc
    expected = _expected_sidecar(entry, params)
    if any(meta.get(name) != value for name, value in expected.items()):
        return None  # another entry state, or other parameters: stale, rebuilt silently
    n, d = entry.n_images, entry.feature_dim
    try:
        mean = np.asarray(meta["mean"], dtype=np.float64)
        if mean.shape != (d,):
            raise ValueError(f"a mean of shape {mean.shape}")
        size = index_file.stat().st_size
        if size != int(meta["nbytes"]):
            raise ValueError(f"{size} bytes where {int(meta['nbytes'])} were written")
        if params["backend"] == "faiss":
            faiss = import_faiss()
            stored = faiss.read_index(str(index_file))
            if int(stored.ntotal) != n or int(stored.d) != d:
                raise ValueError(f"{stored.ntotal} vectors of width {stored.d}")
            return SimilarityIndex.from_state(
                metric=params["metric"], center=params["center"], backend="faiss",
                mean=mean, faiss_index=stored)
        vectors = np.load(index_file, mmap_mode="r", allow_pickle=False)
        if vectors.shape != (n, d) or vectors.dtype != np.float32:
            raise ValueError(f"an array of shape {vectors.shape} and dtype {vectors.dtype}")
        return SimilarityIndex.from_state(
            metric=params["metric"], center=params["center"], backend="exact",
            mean=mean, vectors=vectors)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise _Damaged(f"the index file {str(index_file)!r} cannot be read ({exc})") from exc


def _save(
    index: SimilarityIndex, entry: CacheEntry, params: dict[str, Any],
    index_file: Path, sidecar: Path,
) -> None:
    """Write the index file, then its sidecar, each atomically."""
    if index.backend_ == "faiss":
        faiss = import_faiss()
        with atomic_path(index_file, suffix=".faiss") as tmp:
            faiss.write_index(index.faiss_index_, str(tmp))
    else:
        with atomic_path(index_file, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(index.vectors_, dtype=np.float32),
                    allow_pickle=False)
    meta = _expected_sidecar(entry, params)
    meta.update(mean=[float(v) for v in index.mean_], file=index_file.name,
                nbytes=index_file.stat().st_size)
    atomic_write_text(sidecar, json.dumps(meta, indent=1))


def index_entry(
    cache: Any,
    key: str,
    *,
    metric: str = "cosine",
    center: bool = False,
    backend: str = "auto",
    save: bool = True,
) -> EntryIndex:
    """A nearest-neighbour index over the features of one cache entry, saved beside the cache.

    A saved index that is still valid for the entry is loaded (the exact backend's
    vectors as a read-only memory map); otherwise the index is built, reading the entry
    a block of rows at a time, and saved (see the module doc for the files and when a
    saved index counts as valid).

    Parameters
    ----------
    cache : FeatureCache or path-like
        The cache, or the path of its file.
    key : str
        A complete entry of it (see :meth:`FeatureCache.entries`).
    metric, center, backend
        As for :class:`SimilarityIndex`.
    save : bool, default=True
        Save a newly built index in the folder ``<cache file>.index/``. With False
        nothing is written (a valid saved index is still used).

    Returns
    -------
    EntryIndex

    Warns
    -----
    UserWarning
        A saved index could not be read; it is rebuilt (and replaced when ``save``).
    """
    cache = as_cache(cache)
    check_choice("metric", metric, METRICS)
    center = check_bool("center", center)
    check_choice("backend", backend, BACKENDS)
    save = check_bool("save", save)
    entry = check_entry(cache, key)
    resolved = resolve_backend(backend, entry.n_images)
    params = {"metric": metric, "center": center, "backend": resolved}
    index_file, sidecar = index_paths(cache, key, metric=metric, center=center,
                                      backend=resolved)
    try:
        index = _load(entry, params, index_file, sidecar)
    except _Damaged as exc:
        warnings.warn(
            f"The saved similarity index of entry {key!r} is damaged: {exc}. It is rebuilt"
            f"{' and saved again' if save else ''}.", UserWarning, stacklevel=2)
        index = None
    source = "loaded"
    if index is None:
        source = "built"
        index = build_index(cache, key, metric=metric, center=center, backend=resolved)
        if save:
            _save(index, entry, params, index_file, sidecar)
    return EntryIndex(cache, entry, index, source=source)


def build_index(
    cache: FeatureCache, key: str, *, metric: str, center: bool, backend: str
) -> SimilarityIndex:
    """A :class:`SimilarityIndex` fitted on entry ``key``, read lazily (in blocks)."""
    features = cache.load(key, lazy=True)
    return SimilarityIndex(metric=metric, center=center, backend=backend).fit(features)


class EntryIndex:
    """A fitted :class:`SimilarityIndex` over one cache entry, with its labels.

    Made by :func:`index_entry`. Row numbers are the entry's rows (the order of the
    images it was extracted from).

    Attributes
    ----------
    cache : FeatureCache
    key : str
    entry : CacheEntry
        The entry, as it was when the index was made.
    index : SimilarityIndex
        The fitted index.
    labels : ndarray of shape (n,) or None
        The entry's labels, if it has any.
    class_names : list of str or None
        The entry's class names, if known.
    source : {"loaded", "built"}
        Whether the index was read from disk or built by this call.
    """

    def __init__(
        self, cache: FeatureCache, entry: CacheEntry, index: SimilarityIndex, *,
        source: str = "built",
    ) -> None:
        self.cache = cache
        self.key = entry.key
        self.entry = entry
        self.index = index
        self.labels = cache.labels(entry.key)
        self.class_names = entry.class_names
        self.source = source

    def __len__(self) -> int:
        return self.entry.n_images

    def __repr__(self) -> str:
        return (f"EntryIndex(key={self.key[:12]!r}, n={self.entry.n_images}, "
                f"d={self.entry.feature_dim}, metric={self.index.metric!r}, "
                f"backend={self.index.backend_!r}, source={self.source!r})")

    def query_rows(self, rows: Any, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows of each of the entry's ``rows``, each excluding itself.

        Parameters
        ----------
        rows : int or array-like of int
            Row numbers of the entry.
        k : int, default=8
            Neighbours per row, at most ``n - 1``.

        Returns
        -------
        distances, indices : ndarray of shape (len(rows), k)
            As :meth:`SimilarityIndex.kneighbors` returns them (indices are entry rows).
        """
        check_k("k", k, len(self), exclude_self=True)
        return self.index.query_rows(rows, k, name="k")

    def query_features(self, features: Any, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows of the entry to each feature vector.

        Parameters
        ----------
        features : array-like of shape (n_queries, d)
            Features from the extractor that made the entry (``d`` = its width).
        k : int, default=8
            At most the entry's number of rows.

        Returns
        -------
        distances, indices : ndarray of shape (n_queries, k)
        """
        k = check_k("k", k, len(self), exclude_self=False)
        X = check_features(features, name="features", d=self.entry.feature_dim)
        return self.index.kneighbors(X, k)

    def query_images(
        self, extractor: Any, images: Any, k: int = 8
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows of the entry to each image.

        The images' features go through the cache (``cache.extract(extractor, images)``),
        so asking again costs no extraction.

        Parameters
        ----------
        extractor : BaseExtractor
            The extractor that made the entry (equal fingerprint).
        images : array-like of shape (n, height, width, 3), or a stream
            As :meth:`FeatureCache.extract` accepts them.
        k : int, default=8

        Returns
        -------
        distances, indices : ndarray of shape (n, k)
        """
        fp = extractor_fingerprint(extractor)
        if fp != self.entry.extractor_fingerprint:
            raise InvalidInputError(
                f"`extractor` must be the extractor that made entry {self.key[:12]!r}, "
                f"{self.extractor_description()}; received "
                f"{describe_extractor(type(extractor).__name__, fp)}. Features of different "
                "extractors cannot be compared."
            )
        k = check_k("k", k, len(self), exclude_self=False)
        features = self.cache.extract(extractor, images)
        return self.query_features(features, k)

    def extractor_description(self) -> str:
        """The extractor that made the entry, for messages: class name and short fingerprint."""
        return describe_extractor(_entry_extractor_name(self.entry),
                                  self.entry.extractor_fingerprint)
