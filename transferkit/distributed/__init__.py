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

from ._dask import extract_distributed
from ._plan import Shard, ShardPlan, plan_shards
from ._shard import extract_shard, merge_shards

__all__ = [
    "Shard",
    "ShardPlan",
    "extract_distributed",
    "extract_shard",
    "merge_shards",
    "plan_shards",
]
