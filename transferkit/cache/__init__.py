"""An HDF5 feature cache: run the backbone once, train heads again and again.

Each entry holds the features one extractor produced for one collection of images.
Its key combines the extractor's fingerprint (weights, layer, pooling, input size,
preprocessing, dtype...) with a fingerprint of the images (every pixel, their order),
so a changed setting or changed data never gets stale features.

Extraction streams batch by batch into a chunked, resizable dataset, flushing the
file after every batch together with a progress counter. If it is interrupted (an
exception, Ctrl-C, a killed process), the next call resumes from the last complete
batch, with the same batch boundaries, so the result equals an uninterrupted run.

The extraction is pipelined (see :mod:`transferkit._pipeline`): a reader thread
prepares the next batches of images, the calling thread runs the backbone, and a
writer thread writes the previous batch's rows, progress counter and flush, so the
backbone never waits for the disk. A batch counts as done only once its rows and the
progress counter are flushed, in order; a crash loses at most the batches still in
flight (computed or queued, never half-written), and an exception in the backbone
lets the writer finish every batch computed before it. The writer holds the
``.sync`` lock exclusively only while it writes and flushes one batch.

Images can be arrays, ``h5py`` datasets, or streams larger than memory: any object
with ``shape``, ``dtype``, ``iter_batches(batch_size, start=0)`` and a
``fingerprint()`` naming its content, such as :class:`ImageStream` (images produced
by a function or a generator) or an image folder
(:func:`transferkit.datasets.load_image_folder`). Only a few batches of them are in
memory at once; pass ``lazy=True`` to :meth:`FeatureCache.extract` to keep the
features on disk too.

Modules: ``_core`` (:class:`FeatureCache`), ``_format`` (the layout and entry
metadata), ``_keys`` (entry keys and argument checks), ``_locks`` (one writer, consistent
readers), ``_writer`` (the pipelined extraction), ``_rows`` (lazy and sharded
reads), ``_repair`` and ``_shards``.

File layout (HDF5)::

    /                          attrs: format, format_version
    /entries/<key>/            attrs: extractor, extractor_config (JSON), fingerprints,
                                      n_images, feature_dim, batch_size, versions (JSON),
                                      created, completed, complete, class_names (JSON),
                                      extract_seconds (backbone time, summed over resumes)
    /entries/<key>/features    float32 (n_done, d), chunked, grows to (n_images, d)
    /entries/<key>/progress    int64 scalar: rows written and flushed
    /entries/<key>/labels      optional, (n_images,)

A sharded entry (written by :func:`transferkit.distributed.merge_shards`) has the same
layout, except that ``features`` is an HDF5 virtual dataset over shard files in the
folder ``<cache file>.shards/<key>/`` and the attrs ``shards`` (JSON: each shard's
file, key and row range), ``n_shards`` and ``shard_nbytes``. Its rows are read from the
shard files, each checked first: a missing or damaged shard raises
:class:`~transferkit.exceptions.ShardsMissingError` naming it, never rows filled in.
"""

from __future__ import annotations

from ..datasets.stream import ImageStream
from ._core import FeatureCache, as_cache
from ._format import FORMAT_VERSION, CacheEntry
from ._rows import LazyFeatures

__all__ = [
    "FeatureCache", "CacheEntry", "ImageStream", "LazyFeatures", "FORMAT_VERSION", "as_cache",
]
