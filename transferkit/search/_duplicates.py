"""Near-duplicates within an entry, or between two entries: :func:`find_duplicates`.

A pair is reported when the cosine similarity of the two rows, prepared as the indexed
entry's :class:`~transferkit.search.SimilarityIndex` prepares them (centred with *its*
mean when it was built with ``center=True``, then normalised), is at least
``threshold``. The search is exact, whatever the index's backend: every pair is
compared, a block of query rows at a time, so at most ``BLOCK_ELEMENTS`` (see
``_index``) similarities are in memory, never ``n x n``.

Invariants of a :class:`DuplicateReport`:

* within one entry (``against=None``): pairs ``(i, j)`` with ``i < j``, each pair once,
  never a row with itself; ``query_key == match_key``;
* between entries: ``query_rows`` are rows of ``against`` (``query_key``), ``match_rows``
  rows of ``index`` (``match_key``); every pair above the threshold, not only the nearest;
* pairs are sorted by similarity, highest first, ties by query row then match row;
  similarities are float32 in [-1, 1].

The CSV file (:meth:`DuplicateReport.to_csv`) has the columns ``query_key, query_row,
match_key, match_row, similarity`` and, when either entry has labels, ``query_label,
match_label`` (class names when the entry knows them; empty for an entry without labels).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from .._labels import labels_to_names
from .._validation import check_float, check_positive_int, describe
from ..exceptions import InvalidInputError, InvalidTypeError
from . import _index
from ._store import EntryIndex

__all__ = ["DEFAULT_DUPLICATE_THRESHOLD", "DuplicateReport", "find_duplicates"]

#: Cosine similarity from which two images count as near-duplicates: calibrated on augmented
#: CIFAR-10 copies for raw (uncentred) Lite0 features at 48 px, stages block3..top, avgmax
#: pooling (``benchmarks/near_duplicates.py``; docs/how-to/similar-images.md).
DEFAULT_DUPLICATE_THRESHOLD = 0.94

_COLUMNS = ["query_key", "query_row", "match_key", "match_row", "similarity"]


class DuplicateReport:
    """Pairs of rows whose features are nearly the same (see :func:`find_duplicates`).

    Attributes
    ----------
    query_key, match_key : str
        The entries the query and match rows belong to (equal within one entry).
    threshold : float
        The cosine similarity from which a pair was reported.
    query_rows, match_rows : ndarray of shape (n_pairs,), int64
    similarities : ndarray of shape (n_pairs,), float32
        Highest first.
    query_labels, match_labels : ndarray of shape (n_pairs,) or None
        Each pair's labels (class names when known), when the entry has labels.
    """

    def __init__(
        self, *, query_key: str, match_key: str, threshold: float, query_rows: Any,
        match_rows: Any, similarities: Any, query_labels: Any = None, match_labels: Any = None,
    ) -> None:
        self.query_key = query_key
        self.match_key = match_key
        self.threshold = float(threshold)
        self.query_rows = np.asarray(query_rows, dtype=np.int64)
        self.match_rows = np.asarray(match_rows, dtype=np.int64)
        self.similarities = np.asarray(similarities, dtype=np.float32)
        self.query_labels = None if query_labels is None else np.asarray(query_labels)
        self.match_labels = None if match_labels is None else np.asarray(match_labels)

    def __len__(self) -> int:
        return int(self.similarities.shape[0])

    @property
    def within(self) -> bool:
        """Whether the pairs are within one entry."""
        return self.query_key == self.match_key

    @property
    def n_queries_with_match(self) -> int:
        """Number of distinct query rows in at least one pair."""
        return int(np.unique(self.query_rows).size)

    def __repr__(self) -> str:
        where = (f"within {self.query_key[:12]!r}" if self.within
                 else f"query_key={self.query_key[:12]!r}, match_key={self.match_key[:12]!r}")
        return (f"DuplicateReport({len(self)} pairs, {self.n_queries_with_match} query rows "
                f"with a match, threshold={self.threshold:g}, {where})")

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the pairs as CSV (columns in the module doc), atomically.

        Parameters
        ----------
        path : str or path-like
            The CSV file; its folder is created if needed.

        Returns
        -------
        Path
            ``path``.
        """
        if not isinstance(path, str | os.PathLike):
            raise InvalidTypeError(f"`path` must be a file path; received {describe(path)}.")
        target = Path(path)
        labelled = self.query_labels is not None or self.match_labels is not None
        with atomic_path(target, suffix=".csv") as tmp, open(
            tmp, "w", newline="", encoding="utf-8"
        ) as fh:
            writer = csv.writer(fh)
            writer.writerow(_COLUMNS + (["query_label", "match_label"] if labelled else []))
            for i in range(len(self)):
                row = [self.query_key, int(self.query_rows[i]), self.match_key,
                       int(self.match_rows[i]), f"{float(self.similarities[i]):.6f}"]
                if labelled:
                    row += [_label(self.query_labels, i), _label(self.match_labels, i)]
                writer.writerow(row)
        return target


def _label(labels: np.ndarray | None, i: int) -> str:
    if labels is None:
        return ""
    value = labels[i]
    return str(value.item() if isinstance(value, np.generic) else value)


def _pair_labels(index: EntryIndex, rows: np.ndarray) -> np.ndarray | None:
    if index.labels is None:
        return None
    return labels_to_names(index.labels, index.class_names)[rows]


def find_duplicates(
    index: EntryIndex,
    against: EntryIndex | None = None,
    *,
    threshold: float | None = None,
    max_pairs: int | None = None,
) -> DuplicateReport:
    """Pairs of near-identical images: within one entry, or between two entries.

    Parameters
    ----------
    index : EntryIndex
        The indexed entry (:func:`index_entry`, with ``metric="cosine"``). When it
        was built with ``center=True``, its mean centres both sides.
    against : EntryIndex, optional
        Another entry from the same extractor (e.g. ``index`` over the training set,
        ``against`` over the test set): each of its rows is compared with every row of
        ``index``. None (or ``index``'s own entry) looks for pairs within ``index``.
    threshold : float in [-1, 1], optional
        Cosine similarity from which a pair is reported; None means
        :data:`DEFAULT_DUPLICATE_THRESHOLD`.
    max_pairs : int, optional
        Keep only the most similar pairs, at most this many.

    Returns
    -------
    DuplicateReport
    """
    if not isinstance(index, EntryIndex):
        raise InvalidTypeError(
            f"`index` must be an EntryIndex (from `index_entry`); received {describe(index)}."
        )
    if index.index.metric != "cosine":
        raise InvalidInputError(
            "`index` must be built with metric='cosine': duplicates are found by cosine "
            f"similarity; received an index with metric={index.index.metric!r}."
        )
    threshold = DEFAULT_DUPLICATE_THRESHOLD if threshold is None else check_float(
        "threshold", threshold, low=-1.0, high=1.0)
    max_pairs = check_positive_int("max_pairs", max_pairs, allow_none=True)
    if against is not None:
        if not isinstance(against, EntryIndex):
            raise InvalidTypeError(
                f"`against` must be an EntryIndex (from `index_entry`) or None; received "
                f"{describe(against)}."
            )
        if against.entry.extractor_fingerprint != index.entry.extractor_fingerprint:
            raise InvalidInputError(
                f"`against` must be an entry from the extractor of `index`, "
                f"{index.extractor_description()}; received entry {against.key[:12]!r} from "
                f"{against.extractor_description()}. Features of different extractors "
                "cannot be compared."
            )
        if against.key == index.key:
            against = None
    pairs = _Pairs(max_pairs)
    V = np.asarray(index.index.prepared_rows(slice(None)), dtype=np.float32)
    n = len(V)
    step = max(1, min(_index.READ_ROWS, _index.BLOCK_ELEMENTS // n))
    if against is None:
        for s in range(0, n, step):
            e = min(s + step, n)
            S = V[s:e] @ V[s:].T
            S[:, : e - s][np.tril_indices(e - s)] = np.nan  # j <= i: each pair once, no self
            pairs.add(S, s, s, threshold)
        query, match = index, index
    else:
        raw = against.cache.load(against.key, lazy=True)
        for s in range(0, len(against), step):
            S = index.index.transform(raw[s : s + step]) @ V.T
            pairs.add(S, s, 0, threshold)
        query, match = against, index
    q, m, sim = pairs.result()
    return DuplicateReport(
        query_key=query.key, match_key=match.key, threshold=threshold, query_rows=q,
        match_rows=m, similarities=sim, query_labels=_pair_labels(query, q),
        match_labels=_pair_labels(match, m),
    )


class _Pairs:
    """Pairs above the threshold, gathered block by block (the best ``max_pairs`` if set)."""

    def __init__(self, max_pairs: int | None) -> None:
        self.max_pairs = max_pairs
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.count = 0
        self.floor = -np.inf  # with max_pairs: no pair below it can be kept any more

    def add(self, S: np.ndarray, q0: int, m0: int, threshold: float) -> None:
        np.clip(S, -1.0, 1.0, out=S)  # NaN (a masked pair) stays NaN, never >= threshold
        r, c = np.nonzero(S >= max(threshold, self.floor))
        if not r.size:
            return
        self.parts.append((r + q0, c + m0, S[r, c].astype(np.float32)))
        self.count += r.size
        if self.max_pairs is not None and self.count > 2 * self.max_pairs:
            q, m, sim = self.result()
            self.parts, self.count = [(q, m, sim)], len(sim)
            self.floor = float(sim[-1])

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.parts:
            return (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
        q = np.concatenate([p[0] for p in self.parts]).astype(np.int64)
        m = np.concatenate([p[1] for p in self.parts]).astype(np.int64)
        sim = np.concatenate([p[2] for p in self.parts])
        order = np.lexsort((m, q, -sim))
        if self.max_pairs is not None:
            order = order[: self.max_pairs]
        return q[order], m[order], sim[order]
