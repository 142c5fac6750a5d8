"""What a cache file holds, and reading and writing one entry's metadata.

The file layout (HDF5)::

    /                          attrs: format, format_version
    /entries/<key>/            attrs: extractor, extractor_config (JSON), fingerprints,
                                      n_images, feature_dim, batch_size, versions (JSON),
                                      created, completed, complete, class_names (JSON),
                                      extract_seconds (backbone time, summed over resumes),
                                      and annotations (any other attribute; JSON values)
    /entries/<key>/features    float32 (n_done, d), chunked, grows to (n_images, d)
    /entries/<key>/progress    int64 scalar: rows written and flushed
    /entries/<key>/labels      optional, (n_images,)

Invariants: ``complete`` is written last, so an entry cut short is never complete;
``progress`` counts only flushed rows; rows past it are never trusted. A batch is
committed in two flushes: its rows (and the dataset's new length) first, the counter
second, so a kill in the middle of a flush can leave more rows than ``progress`` but
never a counter ahead of the rows. Readers still take the smaller of the two
(:func:`flushed_rows`), for files written before this rule.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from .. import __version__

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LAYOUT_ATTRS",
    "CacheEntry",
    "entry_info",
    "entry_is_valid",
    "flushed_rows",
    "now",
    "same_labels",
    "update_labels",
    "versions",
    "write_labels",
]

FORMAT_NAME = "transferkit.FeatureCache"
#: Layout version written into every cache file; files from a newer version are refused.
FORMAT_VERSION = 1
#: Entry attributes that the layout defines; every other attribute is an annotation.
LAYOUT_ATTRS = frozenset({
    "extractor", "extractor_config", "extractor_fingerprint", "data_fingerprint",
    "n_images", "image_shape", "image_dtype", "feature_dim", "batch_size", "versions",
    "created", "completed", "complete", "class_names", "extract_seconds", "shards",
    "n_shards", "shard_nbytes",
})


def now() -> str:
    """The current UTC time as ISO 8601, to the second (``created``/``completed``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    """The library versions recorded with an entry."""
    out = {
        "transferkit": __version__,
        "numpy": np.__version__,
        "h5py": h5py.version.version,
        "hdf5": h5py.version.hdf5_version,
        "python": platform.python_version(),
    }
    for mod in ("tensorflow", "keras"):
        module = sys.modules.get(mod)
        if module is not None:
            out[mod] = getattr(module, "__version__", "?")
    return out


@dataclass(frozen=True)
class CacheEntry:
    """What the cache knows about one entry (see :meth:`FeatureCache.entries`).

    ``n_shards`` is 0 for an ordinary entry, and the number of shard files for a
    sharded one (see :mod:`transferkit.distributed`), whose ``nbytes`` counts the
    shard files' feature storage. ``annotations`` holds what was recorded with
    :meth:`FeatureCache.annotate` (such as the command line's ``provenance``).
    """

    key: str
    extractor: str
    extractor_config: dict[str, Any]
    extractor_fingerprint: str
    data_fingerprint: str
    n_images: int
    n_done: int
    feature_dim: int
    complete: bool
    created: str
    completed: str | None
    versions: dict[str, str] = field(default_factory=dict)
    has_labels: bool = False
    class_names: list[str] | None = None
    nbytes: int = 0
    extract_seconds: float = 0.0
    n_shards: int = 0
    annotations: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the full feature array."""
        return (self.n_images, self.feature_dim)


def _annotation(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value.item() if isinstance(value, np.generic) else value


def entry_info(g: h5py.Group) -> CacheEntry:
    """The :class:`CacheEntry` of the entry group ``g``."""
    a = g.attrs
    names = a.get("class_names")
    return CacheEntry(
        key=g.name.rsplit("/", 1)[-1],
        extractor=str(a.get("extractor", "")),
        extractor_config=json.loads(a.get("extractor_config", "{}")),
        extractor_fingerprint=str(a.get("extractor_fingerprint", "")),
        data_fingerprint=str(a.get("data_fingerprint", "")),
        n_images=int(a.get("n_images", 0)),
        n_done=flushed_rows(g),
        feature_dim=int(a.get("feature_dim", 0)),
        complete=bool(a.get("complete", False)),
        created=str(a.get("created", "")),
        completed=str(a["completed"]) if "completed" in a else None,
        versions=json.loads(a.get("versions", "{}")),
        has_labels="labels" in g,
        class_names=json.loads(names) if names is not None else None,
        nbytes=(
            int(a["shard_nbytes"]) if "shard_nbytes" in a
            else int(g["features"].id.get_storage_size()) if "features" in g else 0
        ),
        extract_seconds=float(a.get("extract_seconds", 0.0)),
        n_shards=int(a.get("n_shards", 0)),
        annotations={k: _annotation(v) for k, v in a.items() if k not in LAYOUT_ATTRS},
    )


def flushed_rows(g: h5py.Group) -> int:
    """Rows of entry ``g`` that were written and flushed: its counter, within its rows.

    The counter never runs ahead of the features in files written by this version
    (see the module doc); taking the minimum keeps older or damaged files honest.
    """
    if "progress" not in g:
        return 0
    done = int(g["progress"][()])
    if "features" in g:
        done = min(done, int(g["features"].shape[0]))
    return max(done, 0)


def entry_is_valid(entry: h5py.Group, n: int) -> bool:
    """Whether ``entry`` has the datasets and attributes an extraction of ``n`` images needs."""
    try:
        return (
            "features" in entry
            and "progress" in entry
            and int(entry.attrs["n_images"]) == n
            and "complete" in entry.attrs
        )
    except (KeyError, OSError, ValueError):
        return False


def same_labels(old: h5py.Dataset, labels: np.ndarray) -> bool:
    """Whether the stored labels ``old`` equal ``labels`` (as checked by ``check_labels``)."""
    if old.shape != labels.shape or old.dtype.kind != labels.dtype.kind:
        return False
    stored = old.asstr()[()] if old.dtype.kind == "O" else old[()]
    return bool(np.array_equal(stored, labels.astype(stored.dtype, copy=False)))


def write_labels(entry: h5py.Group, labels: np.ndarray) -> None:
    """Store ``labels`` with ``entry`` (nothing is written if they are already there)."""
    if "labels" in entry:
        if same_labels(entry["labels"], labels):
            return
        del entry["labels"]
    entry.create_dataset("labels", data=labels)


def update_labels(
    entry: h5py.Group, labels: np.ndarray | None, class_names: list[str] | None
) -> None:
    """Store labels and class names with ``entry``, those given."""
    if labels is not None:
        write_labels(entry, labels)
    if class_names is not None:
        entry.attrs["class_names"] = json.dumps(class_names)
