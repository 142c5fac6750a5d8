"""The :class:`SimilarityIndex`: nearest neighbours among feature vectors, exact or approximate.

What the index compares (its *prepared vectors*)::

    metric="cosine"     v' = (v - mean_) / ||v - mean_||     (mean_ = 0 when center=False)
    metric="euclidean"  v' = v                               (mean_ = 0)

Distances, nearest first, as :class:`sklearn.neighbors.NearestNeighbors` reports them:
``1 - cosine similarity`` (after centring) for cosine, the L2 distance for euclidean. A
vector that is zero after centring has similarity 0 to everything (distance 1), as in
scikit-learn.

Invariants:

* ``mean_`` is the vector subtracted from the fitted vectors *and from every query*:
  queries are always prepared with the fitted mean, never their own.
* The exact backend never holds an ``n x n`` matrix: queries go in blocks of rows, each
  compared with every fitted vector (at most :data:`BLOCK_ELEMENTS` similarities at once).
  Ties are broken by the lower row index. Euclidean distances of the chosen neighbours are
  recomputed from the differences, so they are exact even for near-duplicates.
* The faiss backend is an ``IndexHNSWFlat`` (approximate: a true neighbour may be
  missed); its stored vectors are the prepared vectors, and inner products (cosine) or
  squared L2 distances (euclidean) are turned into the distances above.
* Excluding self (``kneighbors(None)``, :meth:`SimilarityIndex.query_rows`) excludes the
  query's own *row*, never another row with equal features: exact copies are found.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from .._validation import check_bool, check_choice, check_positive_int, describe
from ..exceptions import (
    InvalidInputError,
    InvalidTypeError,
    MissingDependencyError,
    NotFittedError,
)

__all__ = [
    "BACKENDS",
    "BLOCK_ELEMENTS",
    "EXACT_LIMIT",
    "METRICS",
    "SimilarityIndex",
    "check_features",
    "check_k",
    "check_rows",
    "faiss_available",
    "import_faiss",
    "resolve_backend",
]

METRICS = ("cosine", "euclidean")
BACKENDS = ("auto", "exact", "faiss")
#: ``backend="auto"`` is exact up to this many fitted vectors, then faiss when installed.
EXACT_LIMIT = 200_000
#: Similarities computed at once by the exact backend (64 MiB of float32).
BLOCK_ELEMENTS = 1 << 24
#: Rows read at once from a lazy feature array in ``fit``.
READ_ROWS = 4096
#: HNSW graph degree, and the candidate list sizes used to build and search it.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64


def import_faiss() -> Any:
    """The ``faiss`` module; :class:`MissingDependencyError` saying what to install if absent."""
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError(
            "The faiss backend needs faiss, which is not installed: expected the `faiss` "
            'module; install it with `pip install "transferkit[search]"` (or `pip install '
            f'faiss-cpu`), or use backend="exact". ({exc})'
        ) from exc
    return faiss


def faiss_available() -> bool:
    """Whether faiss can be imported."""
    try:
        import_faiss()
    except MissingDependencyError:
        return False
    return True


def resolve_backend(backend: Any, n: int) -> str:
    """The backend used for ``n`` vectors: ``"exact"`` or ``"faiss"``."""
    check_choice("backend", backend, BACKENDS)
    if backend == "auto":
        return "exact" if n <= EXACT_LIMIT or not faiss_available() else "faiss"
    if backend == "faiss":
        import_faiss()
    return str(backend)


def check_k(name: str, k: Any, n: int, *, exclude_self: bool) -> int:
    """``k`` as an int in ``[1, n]`` (``[1, n - 1]`` when each query excludes itself)."""
    k = check_positive_int(name, k)
    limit = n - 1 if exclude_self else n
    if k > limit:
        why = (f"the {n} indexed rows, less the query row itself" if exclude_self
               else f"the {n} indexed rows")
        raise InvalidInputError(f"`{name}` must be at most {limit} ({why}); received {k}.")
    return int(k)


def check_rows(rows: Any, n: int, *, name: str = "rows") -> np.ndarray:
    """Row numbers as a 1-D int64 array, each in ``[0, n)``."""
    arr = np.asarray(rows)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu") or arr.dtype == bool:
        raise InvalidTypeError(
            f"`{name}` must be a row number or a 1-D sequence of row numbers; "
            f"received {describe(rows)}."
        )
    if arr.size == 0:
        raise InvalidInputError(f"`{name}` is empty; pass at least one row number.")
    arr = arr.astype(np.int64, copy=False)
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise InvalidInputError(
            f"`{name}` must hold row numbers in [0, {n - 1}]; received {int(bad[0])} "
            f"(out of range: {bad.size} of {arr.size})."
        )
    return arr


def _check_2d(X: Any, name: str, d: int | None) -> tuple[int, int]:
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) != 2:
        raise InvalidInputError(
            f"`{name}` must be a 2-D array of shape (n, {d if d is not None else 'd'}); "
            f"received {describe(X) if shape is None else f'shape {tuple(shape)}'}."
        )
    n, width = int(shape[0]), int(shape[1])
    if d is not None and width != d:
        raise InvalidInputError(
            f"`{name}` must have {d} features per row (the indexed vectors' width); "
            f"received shape {(n, width)}."
        )
    if n == 0 or width == 0:
        raise InvalidInputError(f"`{name}` is empty (shape {(n, width)}); pass at least one row.")
    kind = np.dtype(getattr(X, "dtype", np.float64)).kind
    if kind not in "fiu":
        raise InvalidTypeError(f"`{name}` must hold numbers; received dtype {X.dtype}.")
    return n, width


def _finite_block(block: Any, name: str, offset: int) -> np.ndarray:
    out = np.asarray(block, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int(np.argwhere(~np.isfinite(out))[0][0]) + offset
        raise InvalidInputError(
            f"`{name}` contains NaN or infinite values (first in row {bad}); features "
            "must be finite."
        )
    return out


def check_features(X: Any, *, name: str = "X", d: int | None = None) -> np.ndarray:
    """``X`` as a finite float32 array of shape (n, d), n >= 1 (``d`` checked when given)."""
    if isinstance(X, list | tuple):
        X = np.asarray(X)
    if not hasattr(X, "shape"):
        raise InvalidTypeError(
            f"`{name}` must be a 2-D array of features; received {describe(X)}."
        )
    _check_2d(X, name, d)
    return _finite_block(X, name, 0)


class SimilarityIndex(BaseEstimator):
    """Nearest neighbours among feature vectors, by cosine similarity or L2 distance.

    Parameters
    ----------
    metric : {"cosine", "euclidean"}, default="cosine"
        Cosine distance (``1 - cosine similarity``) or L2 distance.
    center : bool, default=False
        For ``metric="cosine"``: subtract the fitted vectors' mean from them and from
        every query first, which spreads the similarities of all-positive (ReLU)
        features. Off by default: on augmented copies of CIFAR-10 images (recall at a 1%
        false-match rate, ``benchmarks/near_duplicates.py``) raw features found as many
        or more copies than centred ones with every Lite0 configuration tried. Ignored
        for euclidean (centring does not change L2 distances).
    backend : {"auto", "exact", "faiss"}, default="auto"
        ``"exact"``: NumPy, blocks of queries against every fitted vector.
        ``"faiss"``: a faiss HNSW graph (approximate, much faster on large sets; needs
        ``pip install "transferkit[search]"``). ``"auto"``: exact up to
        :data:`EXACT_LIMIT` vectors, faiss above that when installed.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,), float64
        The vector subtracted from fitted vectors and queries (zeros unless
        ``metric="cosine"`` and ``center=True``).
    n_samples_fit_ : int
        Number of fitted vectors.
    n_features_in_ : int
        Their width.
    backend_ : str
        The backend used: ``"exact"`` or ``"faiss"``.
    vectors_ : ndarray of shape (n_samples_fit_, n_features_in_), float32, or None
        The prepared vectors (exact backend; possibly a read-only memory map), else None.
    faiss_index_ : faiss.IndexHNSWFlat or None
        The faiss index (faiss backend), else None.

    Examples
    --------
    >>> index = SimilarityIndex(metric="cosine").fit(features)        # doctest: +SKIP
    >>> distances, indices = index.kneighbors(n_neighbors=5)          # doctest: +SKIP
    >>> index.similarity(distances)[:, 0]                             # doctest: +SKIP
    """

    def __init__(self, *, metric: str = "cosine", center: bool = False,
                 backend: str = "auto") -> None:
        self.metric = metric
        self.center = center
        self.backend = backend

    def _check_params(self) -> None:
        check_choice("metric", self.metric, METRICS)
        check_bool("center", self.center)
        check_choice("backend", self.backend, BACKENDS)

    @property
    def _centred(self) -> bool:
        return self.metric == "cosine" and bool(self.center)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None) -> SimilarityIndex:
        """Prepare and index the vectors ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or LazyFeatures
            Feature vectors; a lazy array (:class:`~transferkit.cache.LazyFeatures`, an
            h5py dataset) is read :data:`READ_ROWS` rows at a time.
        y : ignored

        Returns
        -------
        self : SimilarityIndex
        """
        self._check_params()
        if isinstance(X, list | tuple):
            X = np.asarray(X)
        if not hasattr(X, "shape"):
            raise InvalidTypeError(f"`X` must be a 2-D array of features; received {describe(X)}.")
        n, d = _check_2d(X, "X", None)
        backend = resolve_backend(self.backend, n)
        vectors = np.empty((n, d), dtype=np.float32)
        total = np.zeros(d, dtype=np.float64)
        step = READ_ROWS
        for start in range(0, n, step):
            block = _finite_block(X[start : start + step], "X", start)
            vectors[start : start + len(block)] = block
            total += block.sum(axis=0, dtype=np.float64)
        mean = total / n if self._centred else np.zeros(d, dtype=np.float64)
        self.mean_ = mean
        for start in range(0, n, step):
            vectors[start : start + step] = self._prepare(vectors[start : start + step])
        self.n_samples_fit_ = n
        self.n_features_in_ = d
        self.backend_ = backend
        self.vectors_: np.ndarray | None = None
        self.faiss_index_: Any = None
        self._sq_norms: np.ndarray | None = None
        if backend == "faiss":
            self.faiss_index_ = self._build_faiss(vectors)
            del vectors
        else:
            self.vectors_ = vectors
        return self

    def _prepare(self, block: np.ndarray) -> np.ndarray:
        out = np.asarray(block, dtype=np.float32)
        if self.metric != "cosine":
            return out
        if self._centred:
            out = (out.astype(np.float64) - self.mean_).astype(np.float32)
        norms = np.linalg.norm(out.astype(np.float64), axis=1)
        norms[norms == 0] = 1.0  # a zero vector stays zero: similarity 0 to everything
        return (out / norms[:, None]).astype(np.float32)

    def _build_faiss(self, vectors: np.ndarray) -> Any:
        faiss = import_faiss()
        kind = faiss.METRIC_INNER_PRODUCT if self.metric == "cosine" else faiss.METRIC_L2
        index = faiss.IndexHNSWFlat(int(vectors.shape[1]), HNSW_M, kind)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        step = max(1, BLOCK_ELEMENTS // vectors.shape[1])
        for start in range(0, len(vectors), step):
            index.add(np.ascontiguousarray(vectors[start : start + step]))
        return index

    @classmethod
    def from_state(
        cls, *, metric: str, center: bool, backend: str, mean: np.ndarray,
        vectors: np.ndarray | None = None, faiss_index: Any = None,
    ) -> SimilarityIndex:
        """A fitted index from saved state: prepared ``vectors`` (exact) or a ``faiss_index``.

        ``backend`` is the resolved backend (``"exact"`` or ``"faiss"``); the saved
        vectors must be the prepared ones (see the module doc).
        """
        index = cls(metric=metric, center=center, backend=backend)
        index._check_params()
        index.mean_ = np.asarray(mean, dtype=np.float64)
        index.backend_ = backend
        index.vectors_ = vectors
        index.faiss_index_ = faiss_index
        index._sq_norms = None
        if backend == "faiss":
            index.n_samples_fit_ = int(faiss_index.ntotal)
            index.n_features_in_ = int(faiss_index.d)
        else:
            index.n_samples_fit_, index.n_features_in_ = (int(s) for s in vectors.shape)
        return index

    # ------------------------------------------------------------------ reading
    def _check_fitted(self, method: str) -> None:
        if not hasattr(self, "n_samples_fit_"):
            raise NotFittedError(
                f"This SimilarityIndex instance is not fitted yet: expected a fitted index "
                f"before calling `{method}`; call `SimilarityIndex.fit(X)` first."
            )

    def transform(self, X: Any) -> np.ndarray:
        """Queries prepared as the fitted vectors are (centred with ``mean_``, normalised).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features_in_)

        Returns
        -------
        ndarray of shape (n_queries, n_features_in_), float32
        """
        self._check_fitted("transform")
        return self._prepare(check_features(X, name="X", d=self.n_features_in_))

    def prepared_rows(self, rows: Any) -> np.ndarray:
        """The prepared vectors of fitted rows (a slice or row numbers), as float32."""
        self._check_fitted("prepared_rows")
        if self.backend_ != "faiss":
            return np.asarray(self.vectors_[rows], dtype=np.float32)
        n = self.n_samples_fit_
        if isinstance(rows, slice):
            start, stop, step = rows.indices(n)
            if step == 1:
                return self.faiss_index_.reconstruct_n(start, max(stop - start, 0))
            rows = np.arange(start, stop, step)
        keys = np.ascontiguousarray(np.asarray(rows, dtype=np.int64).reshape(-1))
        return self.faiss_index_.reconstruct_batch(keys)

    # ------------------------------------------------------------------ searching
    def kneighbors(
        self, X: Any = None, n_neighbors: int = 8, *, return_distance: bool = True
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        """The nearest fitted vectors of each query, nearest first.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features_in_), optional
            Query vectors. None queries the fitted vectors themselves, each excluding
            its own row (as :meth:`sklearn.neighbors.NearestNeighbors.kneighbors`).
        n_neighbors : int, default=8
            Neighbours per query: at most ``n_samples_fit_`` (minus one when ``X`` is
            None).
        return_distance : bool, default=True
            Also return the distances.

        Returns
        -------
        distances : ndarray of shape (n_queries, n_neighbors), float32
            ``1 - cosine similarity`` (cosine) or L2 distances (euclidean); only when
            ``return_distance``.
        indices : ndarray of shape (n_queries, n_neighbors), int64
            Row numbers of the neighbours among the fitted vectors.
        """
        self._check_fitted("kneighbors")
        if X is None:
            return self.query_rows(np.arange(self.n_samples_fit_), n_neighbors,
                                   return_distance=return_distance, name="n_neighbors")
        k = check_k("n_neighbors", n_neighbors, self.n_samples_fit_, exclude_self=False)
        Q = check_features(X, name="X", d=self.n_features_in_)
        dist, idx = self._search_blocks(lambda s: self._prepare(Q[s]), len(Q), k, None)
        return (dist, idx) if return_distance else idx

    def query_rows(
        self, rows: Any, n_neighbors: int = 8, *, return_distance: bool = True,
        name: str = "n_neighbors",
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        """The nearest fitted vectors of fitted ``rows``, each excluding its own row.

        Parameters
        ----------
        rows : int or array-like of int
            Row numbers in ``[0, n_samples_fit_)``.
        n_neighbors : int, default=8
            At most ``n_samples_fit_ - 1``.
        return_distance : bool, default=True
            Also return the distances.
        name : str, default="n_neighbors"
            The name of ``n_neighbors`` in error messages.

        Returns
        -------
        distances, indices : ndarray of shape (len(rows), n_neighbors)
            As :meth:`kneighbors` returns them.
        """
        self._check_fitted("query_rows")
        n = self.n_samples_fit_
        k = check_k(name, n_neighbors, n, exclude_self=True)
        rows = check_rows(rows, n)
        dist, idx = self._search_blocks(lambda s: self.prepared_rows(rows[s]), len(rows), k,
                                        rows)
        return (dist, idx) if return_distance else idx

    def similarity(self, distances: Any) -> np.ndarray:
        """Cosine similarities from cosine distances: ``1 - distances``.

        Raises
        ------
        InvalidInputError
            For ``metric="euclidean"``: similarities are defined for cosine only.
        """
        if self.metric != "cosine":
            raise InvalidInputError(
                f"Similarities are defined for metric='cosine'; this index has "
                f"metric={self.metric!r}, whose distances are L2 distances."
            )
        return (1.0 - np.asarray(distances, dtype=np.float32)).astype(np.float32)

    def _search_blocks(
        self, queries: Any, nq: int, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search ``nq`` queries, ``queries(slice)`` giving prepared ones, block by block."""
        n, d = self.n_samples_fit_, self.n_features_in_
        step = max(1, min(65536, BLOCK_ELEMENTS // max(n, d)))
        dist = np.empty((nq, k), dtype=np.float32)
        idx = np.empty((nq, k), dtype=np.int64)
        for start in range(0, nq, step):
            block = slice(start, min(start + step, nq))
            Q = np.ascontiguousarray(queries(block), dtype=np.float32)
            ex = None if exclude is None else exclude[block]
            if self.backend_ == "faiss":
                dist[block], idx[block] = self._faiss_search(Q, k, ex)
            else:
                dist[block], idx[block] = self._exact_search(Q, np.asarray(self.vectors_), k, ex)
        return dist, idx

    def _norms(self, V: np.ndarray) -> np.ndarray:
        if self._sq_norms is None or len(self._sq_norms) != len(V):
            step = max(1, BLOCK_ELEMENTS // V.shape[1])
            self._sq_norms = np.concatenate([
                np.einsum("ij,ij->i", b, b, dtype=np.float64).astype(np.float32)
                for b in (np.asarray(V[s : s + step], np.float32) for s in range(0, len(V), step))
            ])
        return self._sq_norms

    def _exact_search(
        self, Q: np.ndarray, V: np.ndarray, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        D = Q @ V.T  # similarities (cosine) or inner products (euclidean)
        if self.metric == "cosine":
            np.subtract(1.0, D, out=D)
        else:
            D *= -2.0
            D += np.einsum("ij,ij->i", Q, Q)[:, None]
            D += self._norms(V)[None, :]
        rows = np.arange(len(Q))
        if exclude is not None:
            D[rows, exclude] = np.inf
        n = D.shape[1]
        cand = np.argpartition(D, k - 1, axis=1)[:, :k] if k < n else np.tile(
            np.arange(n), (len(Q), 1))
        dist = np.take_along_axis(D, cand, axis=1)
        if self.metric == "euclidean":
            dist = _exact_l2(Q, V, cand)
        order = np.lexsort((cand, dist), axis=1)
        idx = np.take_along_axis(cand, order, axis=1).astype(np.int64)
        dist = np.take_along_axis(dist, order, axis=1)
        lo, hi = (0.0, 2.0) if self.metric == "cosine" else (0.0, None)
        return np.clip(dist, lo, hi).astype(np.float32), idx

    def _faiss_search(
        self, Q: np.ndarray, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        index = self.faiss_index_
        kk = k if exclude is None else k + 1
        index.hnsw.efSearch = max(HNSW_EF_SEARCH, 2 * kk)
        raw, labels = index.search(Q, kk)
        missing = (labels < 0).any(axis=1)
        if self.metric == "cosine":
            dist = 1.0 - raw
        else:
            dist = np.sqrt(np.maximum(raw, 0.0))
        if exclude is not None:
            drop = labels == exclude[:, None]
            drop[~drop.any(axis=1), -1] = True  # self not found: drop the farthest instead
            keep = ~drop
            labels = labels[keep].reshape(len(Q), k)
            dist = dist[keep].reshape(len(Q), k)
        lo, hi = (0.0, 2.0) if self.metric == "cosine" else (0.0, None)
        dist, labels = np.clip(dist, lo, hi).astype(np.float32), labels.astype(np.int64)
        if missing.any():  # the graph gave too few results: search those rows exactly
            ex = None if exclude is None else exclude[missing]
            V = self.prepared_rows(slice(None))
            dist[missing], labels[missing] = self._exact_search(Q[missing], V, k, ex)
        return dist, labels


def _exact_l2(Q: np.ndarray, V: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """L2 distances from each query to its candidate rows, from the differences (float64)."""
    out = np.empty(cand.shape, dtype=np.float64)
    step = max(1, BLOCK_ELEMENTS // (8 * max(1, cand.shape[1] * Q.shape[1])))
    for s in range(0, len(Q), step):
        c = cand[s : s + step]
        rows = np.asarray(V[c.reshape(-1)], dtype=np.float64).reshape(*c.shape, -1)
        diff = rows - Q[s : s + step, None, :].astype(np.float64)
        out[s : s + step] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    return out
