"""The images behind a cache entry, re-read from where ``transferkit extract`` found them.

A cache stores features, not images. To show an entry's images (the neighbours of a
query, a near-duplicate pair), the commands re-open its source from the provenance
``extract`` recorded with it (:func:`transferkit.cli._common.tag_entry`): the dataset
kind, its location, the split, the image size and the ``--limit`` subset. Row ``i`` of
the entry is row ``i`` of what this returns, because the same loader makes the same
selection in the same order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._options import UsageError

__all__ = ["EntryImages", "entry_images"]


class EntryImages:
    """Rows of an entry's images, read on demand, with a short name for each row."""

    def __init__(self, images: Any, rows: np.ndarray, names: list[str]) -> None:
        self._images, self._rows, self._names = images, rows, names

    def __len__(self) -> int:
        return len(self._rows)

    def read(self, rows: Any) -> np.ndarray:
        """The images of entry rows ``rows``, as a uint8 (k, h, w, 3) array."""
        picked = self._rows[np.asarray(rows, dtype=np.int64)]
        return np.asarray(self._images[picked])

    def name(self, row: int) -> str:
        """A short name of entry row ``row``: its file, or its split and index."""
        return self._names[int(row)]


def _subset(labels: np.ndarray | None, limit: int | None) -> np.ndarray:
    from ..datasets import balanced_subset

    rows = np.arange(len(labels) if labels is not None else 0)
    if limit is not None and labels is not None and limit < len(labels):
        rows, _ = balanced_subset(rows, labels, limit)
    return np.asarray(rows, dtype=np.int64)


def entry_images(prov: dict[str, Any], option: str = "--plot") -> EntryImages:
    """The images of the entry whose provenance is ``prov`` (``option`` needs them)."""
    kind = prov.get("dataset")
    size = tuple(prov.get("image_size") or (224, 224))
    limit = prov.get("limit")
    if kind == "image-folder":
        from ..datasets import load_image_folder

        ds = load_image_folder(prov["root"], image_size=size)
        rows = _subset(ds.labels, limit)
        names = [str(Path(ds.files[i]).relative_to(ds.root)) for i in rows]
        return EntryImages(ds, rows, names)
    if kind == "image-list":
        from ..datasets import load_image_list

        ds = load_image_list(prov["csv"], path_column=prov.get("path_column"),
                             label_column=prov.get("label_column", "auto"), image_size=size)
        rows = _subset(ds.labels, limit) if ds.labels is not None else np.arange(len(ds))
        return EntryImages(ds, rows, [Path(ds.files[i]).name for i in rows])
    if kind == "hf":
        from ..datasets import from_hf_dataset
        from ._common import load_hf_dataset

        raw, split = load_hf_dataset(prov["hf_dataset"], prov.get("split"))
        ds = from_hf_dataset(raw, image_column=prov.get("image_column"),
                             label_column=prov.get("label_column", "auto"), image_size=size)
        rows = _subset(ds.labels, limit) if ds.labels is not None else np.arange(len(ds))
        return EntryImages(ds, rows, [f"{split} {i}" for i in rows])
    if kind == "cifar10":
        from ..datasets import load_cifar10_or_sample

        (x_train, y_train), (x_test, y_test), _ = load_cifar10_or_sample(prov.get("data"))
        split = prov.get("split") or "train"
        x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
        rows = _subset(y, limit)
        return EntryImages(x, rows, [f"{split} {i}" for i in rows])
    raise UsageError(
        f"{option} needs the entry's images, and this entry does not record where they came "
        "from (it was not written by `transferkit extract`)"
    )
