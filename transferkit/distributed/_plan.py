"""Shard plans: contiguous runs of whole batches, saved beside the cache so a run resumes.

A plan splits an extraction of ``n`` images into ``n_shards`` index ranges made of whole
batches, so the shards compute exactly the batches one process would. It is saved as
``plan.json`` in the shard folder ``<cache>.shards/<key>/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write_text
from .._hashing import hash_images
from .._validation import check_images, check_positive_int
from ..cache import FeatureCache, _shards, as_cache
from ..cache._keys import (
    default_batch_size,
    entry_key,
    extractor_fingerprint,
)
from ..datasets import as_image_source
from ..exceptions import (
    InvalidInputError,
)

__all__ = ["Shard", "ShardPlan", "check_cache", "new_plan", "plan_shards", "resolve_plan"]

_PLAN_FORMAT = "transferkit.ShardPlan"


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
    atomic_write_text(plan.directory / _shards.PLAN_FILE, json.dumps(record, indent=1))


def check_cache(cache: Any) -> FeatureCache:
    """``cache`` as a :class:`FeatureCache` (see :func:`transferkit.cache.as_cache`)."""
    return as_cache(cache)


def resolve_plan(
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
    return new_plan(cache, fp, data_fp, n, default_batch_size(extractor, batch_size),
                     n_shards)


def new_plan(
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
    cache = check_cache(cache)
    fp = extractor_fingerprint(extractor)
    images = check_images(as_image_source(images, name="images"), name="images")
    n_shards = check_positive_int("n_shards", n_shards, allow_none=True)
    batch_size = check_positive_int("batch_size", batch_size, allow_none=True)
    n = int(images.shape[0])
    plan = resolve_plan(cache, fp, hash_images(images), n, extractor, n_shards, batch_size)
    if plan is None:
        raise InvalidInputError(
            "`n_shards` must be a positive integer: there is no saved plan for this "
            "extractor and these images to reuse; received None."
        )
    return plan


# ====================================================================================
# One shard
# ====================================================================================
