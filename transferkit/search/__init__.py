"""Nearest neighbours and near-duplicates among the features of cache entries.

:class:`SimilarityIndex` is a scikit-learn style nearest-neighbour index over feature
vectors (cosine or euclidean; exact in NumPy, or approximate with faiss, the optional
extra ``pip install "transferkit[search]"``). :func:`index_entry` builds one over a
:class:`~transferkit.cache.FeatureCache` entry and saves it beside the cache, so it is
built once; the :class:`EntryIndex` it returns answers queries by entry rows, features
or images. :func:`find_duplicates` lists near-identical images within an entry, or
between two entries (say, test images that also appear in the training set).

>>> train = index_entry(cache, cache.key(extractor, x_train))        # doctest: +SKIP
>>> distances, rows = train.query_images(extractor, x_new, k=5)      # doctest: +SKIP
>>> test = index_entry(cache, cache.key(extractor, x_test))          # doctest: +SKIP
>>> leaks = find_duplicates(train, against=test)                     # doctest: +SKIP
>>> leaks.to_csv("train_test_duplicates.csv")                        # doctest: +SKIP

Modules: ``_index`` (:class:`SimilarityIndex`, the prepared vectors and both backends),
``_store`` (:func:`index_entry`, :class:`EntryIndex`, the saved files and when they are
reused) and ``_duplicates`` (:func:`find_duplicates`, :class:`DuplicateReport`, the CSV
columns). Each module's docstring records its formats and invariants.
"""

from __future__ import annotations

from ._duplicates import DEFAULT_DUPLICATE_THRESHOLD, DuplicateReport, find_duplicates
from ._index import SimilarityIndex
from ._store import INDEX_FORMAT_VERSION, EntryIndex, index_entry

__all__ = [
    "DEFAULT_DUPLICATE_THRESHOLD",
    "INDEX_FORMAT_VERSION",
    "DuplicateReport",
    "EntryIndex",
    "SimilarityIndex",
    "find_duplicates",
    "index_entry",
]
