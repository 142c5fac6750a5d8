"""Entry keys, and the checks that turn an extraction's arguments into them.

An entry's key is ``hash_json({"extractor": extractor_fp, "data": data_fp})``: the
extractor's fingerprint (everything that changes its features) and the images'
(every pixel and their order, or a stream's own content fingerprint). Labels and class
names travel with an entry but never change its key. These named functions are what
:mod:`transferkit.distributed` and the command line use to compute the same keys and
batch boundaries as :meth:`FeatureCache.extract`.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from .._hashing import hash_json
from .._labels import check_labels as shared_check_labels
from .._validation import describe
from ..exceptions import InvalidTypeError

__all__ = [
    "check_labels",
    "default_batch_size",
    "entry_key",
    "extractor_fingerprint",
    "resolve_labels",
]


def entry_key(extractor_fp: str, data_fp: str) -> str:
    """The key of the entry for these extractor and data fingerprints."""
    return hash_json({"extractor": extractor_fp, "data": data_fp})


def extractor_fingerprint(extractor: Any) -> str:
    """``extractor.fingerprint``, after checking it is a transferkit extractor."""
    fp = getattr(extractor, "fingerprint", None)
    if not isinstance(fp, str) or not hasattr(extractor, "iter_features"):
        raise InvalidTypeError(
            "`extractor` must be a transferkit extractor (with `fingerprint` and "
            f"`iter_features`); received {describe(extractor)}."
        )
    return fp


def default_batch_size(extractor: Any, batch_size: int | None) -> int:
    """The batch size an extraction uses: ``batch_size``, else the extractor's, else 64."""
    own = getattr(extractor, "default_batch_size", None)  # BaseExtractor's
    return int(batch_size or (own() if callable(own) else None)
               or getattr(extractor, "batch_size", None) or 64)


def check_labels(labels: Any, n: int) -> np.ndarray | None:
    """Labels as stored: ``(n,)`` int64 or strings (the rules of :mod:`transferkit._labels`).

    One-hot rows become class indices; soft (probability) rows are refused, as the heads
    and CifarCNN refuse them, so labels the cache stores always train a head.
    """
    if labels is None:
        return None
    arr = shared_check_labels(labels, n, name="labels", per="image")
    if arr.dtype.kind in "US":
        return arr.astype(h5py.string_dtype() if arr.dtype.kind == "U" else arr.dtype)
    if arr.dtype.kind not in "iubf":
        raise InvalidTypeError(
            f"`labels` must be integers or strings; received dtype {arr.dtype}."
        )
    return arr.astype(np.int64)  # integral floats (1.0) too: the rules refuse others


def resolve_labels(
    images: Any, labels: Any, class_names: Any, n: int
) -> tuple[np.ndarray | None, list[str] | None]:
    """Checked labels and class names: the arguments, else the image stream's own."""
    if labels is None and getattr(images, "labels", None) is not None:
        labels = images.labels
        class_names = class_names or list(getattr(images, "class_names", []) or []) or None
    labels_arr = check_labels(labels, n)
    if class_names is not None:
        if not isinstance(class_names, list | tuple) or not all(
            isinstance(c, str) for c in class_names
        ):
            raise InvalidTypeError(
                f"`class_names` must be a list of strings; received {describe(class_names)}."
            )
        class_names = list(class_names)
    return labels_arr, class_names
