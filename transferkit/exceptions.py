"""Exceptions raised by transferkit.

Every error transferkit raises on purpose derives from :class:`TransferkitError`, so
``except transferkit.TransferkitError`` catches them all. Errors about bad arguments
also derive from the matching built-in (``ValueError`` or ``TypeError``), so code
written for scikit-learn or Keras conventions keeps working.
"""

from __future__ import annotations

__all__ = [
    "TransferkitError",
    "InvalidInputError",
    "InvalidTypeError",
    "NotFittedError",
    "WeightsNotFoundError",
    "DatasetNotFoundError",
    "CacheError",
    "CacheCorruptedError",
    "CacheLockedError",
    "ShardsIncompleteError",
    "ShardsMissingError",
    "ImageReadError",
    "UnsafePickleError",
    "MissingDependencyError",
    "Terminated",
]

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class TransferkitError(Exception):
    """Base class of every error transferkit raises on purpose."""


class InvalidInputError(TransferkitError, ValueError):
    """An argument has the right type but a wrong value (shape, range, choice...)."""


class InvalidTypeError(TransferkitError, TypeError):
    """An argument has the wrong type."""


class NotFittedError(TransferkitError, _SklearnNotFittedError):
    """An estimator was used before ``fit``.

    Subclasses scikit-learn's ``NotFittedError`` (itself a ``ValueError`` and
    ``AttributeError``), so scikit-learn tooling recognises it.
    """


class WeightsNotFoundError(TransferkitError, FileNotFoundError):
    """Pretrained weights could neither be found locally nor downloaded."""


class DatasetNotFoundError(TransferkitError, FileNotFoundError):
    """A dataset could neither be found locally nor downloaded."""


class ImageReadError(TransferkitError, ValueError):
    """An image file could not be read or decoded."""


class UnsafePickleError(InvalidInputError):
    """A weights file asked to load something other than tensors (refused, never run).

    Raised by the restricted reader of PyTorch weight files
    (:class:`~transferkit.extractors.EfficientNetLite0Extractor`): a pickle that names
    any code to call is refused before anything is called.
    """


class CacheError(TransferkitError):
    """A feature-cache operation failed."""


class CacheCorruptedError(CacheError):
    """A cache file or entry is damaged or of an unsupported format."""


class CacheLockedError(CacheError):
    """Another process is writing to the cache file."""


class ShardsIncompleteError(CacheError):
    """A sharded extraction cannot be merged or served: some shards are not complete.

    Raised when merging a shard set with missing or unfinished shards, and when the
    shards of a distributed extraction failed. :attr:`missing` holds the indices of
    the shards concerned; running the extraction again re-extracts only those.
    """

    def __init__(self, message: str, missing: tuple[int, ...] | list[int] = ()) -> None:
        super().__init__(message)
        #: Indices of the shards that are missing, unfinished or unreadable.
        self.missing: tuple[int, ...] = tuple(int(i) for i in missing)

    def __reduce__(self) -> tuple[type, tuple[str, tuple[int, ...]]]:
        return (type(self), (str(self), self.missing))


class ShardsMissingError(ShardsIncompleteError, CacheCorruptedError):
    """A merged (sharded) cache entry lost shard files: they were moved, deleted or damaged.

    The entry is never served with the lost rows filled in; :attr:`missing` lists the
    shards concerned.
    """


class MissingDependencyError(TransferkitError, ImportError):
    """An optional dependency (such as matplotlib for plots) is not installed."""


class Terminated(SystemExit):
    """SIGTERM arrived (a batch scheduler or container stopping the job).

    Raised in place of the default instant death, so work in progress is saved first
    (a feature extraction writes every batch it computed). A ``SystemExit`` with code
    143 (128 + SIGTERM): left uncaught, the process exits as a terminated one would.
    It is not a :class:`TransferkitError`, for the same reason ``KeyboardInterrupt`` is
    not an ``Exception``: ``except Exception`` must not swallow it.
    """

    def __init__(self, message: str = "terminated (SIGTERM)") -> None:
        super().__init__(143)
        self.message = message

    def __str__(self) -> str:
        return self.message
