"""What transferkit accepts as images, and the one function that turns it into a source.

Every public entry point that takes images (``FeatureCache.extract`` and ``key``,
extractors' ``transform`` / ``iter_features`` / ``fit``, the views,
``extract_distributed``, ``FineTuner``, the exported classifier) passes them through
:func:`as_image_source` first. It returns:

* NumPy arrays, lists of images, ``h5py`` datasets and every object that already
  streams itself (``iter_batches`` + ``fingerprint()``: :class:`ImageFolderDataset`,
  :class:`ImageListDataset`, :class:`ImageStream`, :class:`HFImageDataset`, the views'
  wrappers) unchanged;
* a ``tf.data.Dataset`` or ``keras.utils.PyDataset`` wrapped in a
  :class:`~transferkit.datasets.keras_data.KerasDataSource`;
* a Hugging Face ``datasets.Dataset`` wrapped by
  :func:`~transferkit.datasets.hf.from_hf_dataset` with its defaults (the one image
  column, the ``ClassLabel`` column; images must share a size, else call
  ``from_hf_dataset(ds, image_size=...)`` yourself);

and refuses, with a message saying what to call instead, a pandas DataFrame (call
:func:`load_image_list` with an ``image_size``), a Hugging Face ``DatasetDict`` (pick a
split) and the path of a file or folder (call :func:`load_image_folder` or
:func:`load_image_list`). Anything
else is returned as is, for :func:`transferkit._validation.check_images` to judge.

Nothing heavy is imported to decide: types are recognised by their class names.
"""

from __future__ import annotations

import os
from typing import Any

from .._validation import describe
from ..exceptions import InvalidInputError, InvalidTypeError
from .keras_data import KerasDataSource, is_keras_data

__all__ = ["as_image_source", "labelled_pair", "source_labels"]

_HF_CLASSES = ("Dataset", "DatasetDict", "IterableDataset", "IterableDatasetDict")


def _module_class(obj: Any, module_prefix: str, names: tuple[str, ...]) -> bool:
    return any(c.__name__ in names and c.__module__.startswith(module_prefix)
               for c in type(obj).__mro__)


def as_image_source(images: Any, *, name: str = "images") -> Any:
    """``images`` as an array or image source every transferkit consumer reads.

    Parameters
    ----------
    images : array-like, image source, tf.data.Dataset, keras.utils.PyDataset or datasets.Dataset
        See the module docstring for what is converted and what is refused.
    name : str, default "images"
        The argument's name, for error messages.

    Returns
    -------
    object
        ``images`` itself, or a source wrapping it (with ``labels`` and
        ``class_names`` when the data carries them).

    Raises
    ------
    InvalidTypeError
        A DataFrame, a DatasetDict, a path: the message says what to call.
    """
    if is_keras_data(images):
        return KerasDataSource(images, name=name)
    if _module_class(images, "datasets", _HF_CLASSES):
        from .hf import from_hf_dataset

        return from_hf_dataset(images)  # a split of images, or a clear error for the others
    if _module_class(images, "pandas", ("DataFrame",)):
        raise InvalidTypeError(
            f"`{name}` is a pandas DataFrame; read its image files with "
            "`transferkit.datasets.load_image_list(df, image_size=(224, 224))` (a path "
            "column, and optionally a label column) and pass that."
        )
    if isinstance(images, os.PathLike) or (
            isinstance(images, str) and os.path.exists(os.path.expanduser(images))):
        raise InvalidTypeError(
            f"`{name}` must be images, not a path: read a folder with "
            "`load_image_folder(path, image_size=...)` or a CSV list of files with "
            f"`load_image_list(path, image_size=...)`, and pass that; received "
            f"{describe(images)}."
        )
    return images


def source_labels(images: Any, classes: Any = None) -> Any:
    """The labels an image source carries, for ``fit(X)`` called without ``y``; or None.

    With class names they are returned as names (``class_names[label]``), unless
    ``classes`` (the classes a fitted head already has) are integers, in which case
    the label indices are returned. Arrays carry no labels: None.
    """
    import numpy as np

    labels = getattr(images, "labels", None)
    if labels is None or isinstance(images, np.ndarray):
        return None
    labels = np.asarray(labels)
    names = getattr(images, "class_names", None)
    if names is None or (classes is not None and np.asarray(classes).dtype.kind in "iu"):
        return labels
    return np.asarray(list(names), dtype=object)[labels]


def labelled_pair(data: Any, *, name: str) -> Any:
    """``validation_data`` as an ``(images, labels)`` pair: a pair, or a labelled source."""
    if isinstance(data, list | tuple):
        return data
    source = as_image_source(data, name=name)
    labels = source_labels(source)
    if labels is None:
        raise InvalidInputError(
            f"`{name}` must be a pair (images, labels), or images that carry their labels "
            f"(an image folder, a tf.data.Dataset of (images, labels), ...); received "
            f"{describe(data)}."
        )
    return (source, labels)
