"""Argument checks shared by extractors, the cache and the heads.

Messages follow one pattern: they name the argument, say what was expected and
show what was received, so a user can fix the call without reading our code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from .exceptions import InvalidInputError, InvalidTypeError

__all__ = [
    "param_names",
    "check_bool",
    "check_float",
    "check_int",
    "check_images",
    "check_image_batch_values",
    "check_choice",
    "check_positive_int",
    "describe",
    "format_bytes",
    "memory_limit_bytes",
]


def describe(value: Any) -> str:
    """Short description of a received value for error messages."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} (type {type(value).__name__})"


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Raise if ``value`` is not one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise InvalidInputError(
            f"`{name}` must be one of {choices}; received {describe(value)}."
        )
    return value


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """Raise unless ``value`` is an integer >= 1 (or None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidTypeError(
            f"`{name}` must be a positive integer{' or None' if allow_none else ''}; "
            f"received {describe(value)}."
        )
    if value < 1:
        raise InvalidInputError(f"`{name}` must be a positive integer; received {value}.")
    return int(value)


def check_images(
    images: Any,
    *,
    name: str = "images",
    min_size: int | None = None,
    allow_empty: bool = False,
) -> np.ndarray:
    """Validate a batch of NHWC RGB images and return it as a NumPy array.

    The array is not copied when it already is a NumPy array; callers must not
    modify it in place.

    Parameters
    ----------
    images : array-like of shape (n, height, width, 3)
        uint8 images, or floats in [0, 255].
    name : str
        Argument name used in error messages.
    min_size : int, optional
        Smallest height and width the backbone accepts.
    allow_empty : bool
        Whether ``n == 0`` is acceptable.
    """
    if isinstance(images, list | tuple):
        images = np.asarray(images)
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        raise InvalidTypeError(
            f"`{name}` must be an array of shape (n, height, width, 3); "
            f"received {describe(images)}."
        )
    shape = tuple(images.shape)
    dtype = np.dtype(images.dtype)
    if len(shape) == 3 and shape[-1] == 3:
        raise InvalidInputError(
            f"`{name}` must be a batch of shape (n, height, width, 3); received a single "
            f"image of shape {shape}. Pass `{name}[None]` to make a batch of one."
        )
    if len(shape) != 4:
        raise InvalidInputError(
            f"`{name}` must have 4 dimensions (n, height, width, 3) in channels-last "
            f"order; received shape {shape}."
        )
    if shape[-1] != 3:
        hint = ""
        if shape[1] == 3:
            hint = " It looks channels-first: use `np.transpose(images, (0, 2, 3, 1))`."
        elif shape[-1] == 1:
            hint = " For grayscale images use `np.repeat(images, 3, axis=-1)`."
        raise InvalidInputError(
            f"`{name}` must have 3 (RGB) channels in the last axis; received shape "
            f"{shape}.{hint}"
        )
    if not (dtype == np.uint8 or np.issubdtype(dtype, np.floating)):
        raise InvalidTypeError(
            f"`{name}` must have dtype uint8, or a float dtype with values in [0, 255]; "
            f"received dtype {dtype}."
        )
    if shape[1] == 0 or shape[2] == 0:
        raise InvalidInputError(
            f"`{name}` must have a height and width of at least 1 pixel; received shape {shape}."
        )
    if shape[0] == 0 and not allow_empty:
        raise InvalidInputError(f"`{name}` is empty (shape {shape}); pass at least one image.")
    if min_size is not None and (shape[1] < min_size or shape[2] < min_size):
        raise InvalidInputError(
            f"`{name}` must be at least {min_size}x{min_size} pixels for this backbone; "
            f"received {shape[1]}x{shape[2]}. Set `input_size` to resize inside the model."
        )
    return images if isinstance(images, np.ndarray) else images  # h5py datasets stay lazy


def check_image_batch_values(batch: np.ndarray, *, name: str = "images", offset: int = 0) -> None:
    """Raise if a float batch holds NaN/inf or values outside [0, 255]."""
    if batch.dtype == np.uint8 or batch.size == 0:
        return
    finite = np.isfinite(batch)
    if not finite.all():
        bad = int(np.argwhere(~finite)[0][0]) + offset
        raise InvalidInputError(
            f"`{name}` contains NaN or infinite values (first in image {bad}); "
            "images must be finite values in [0, 255]."
        )
    lo, hi = float(batch.min()), float(batch.max())
    if lo < 0.0 or hi > 255.0:
        raise InvalidInputError(
            f"`{name}` must hold values in [0, 255]; received values in [{lo:g}, {hi:g}] "
            f"(images {offset}..{offset + len(batch) - 1}). If your images are in [0, 1], "
            "multiply them by 255."
        )


_CGROUP_LIMITS = (
    "/sys/fs/cgroup/memory.max",  # cgroup v2
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v1
)


def memory_limit_bytes() -> int | None:
    """Memory this process can use at most: physical memory, or a container's lower limit.

    Returns ``None`` when it cannot be found out (callers then skip memory checks).
    """
    total: int | None = None
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and page_size > 0:
            total = int(pages) * int(page_size)
    except (AttributeError, ValueError, OSError):  # not POSIX (Windows)
        pass
    if total is None:
        try:
            import psutil

            total = int(psutil.virtual_memory().total)
        except Exception:  # noqa: BLE001 - psutil is optional, and any failure means "unknown"
            total = None
    for path in _CGROUP_LIMITS:
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or 0 < int(text) < total):
            total = int(text)  # "max" (no limit) and absurd values leave it unchanged
    return total


def format_bytes(nbytes: float) -> str:
    """``nbytes`` in decimal units for messages: ``'27.9 GB'``, ``'512.0 MB'``."""
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes:.0f} B"


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool; InvalidTypeError unless it is True or False."""
    if not isinstance(value, bool | np.bool_):
        raise InvalidTypeError(f"`{name}` must be True or False; received {describe(value)}.")
    return bool(value)


def check_int(name: str, value: Any, *, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidTypeError(f"`{name}` must be an integer; received {describe(value)}.")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidInputError(f"`{name}` must be an integer {bound}; received {value}.")
    return int(value)


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval given by ``low``/``high``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidTypeError(f"`{name}` must be a number; received {describe(value)}.")
    value = float(value)
    ok = np.isfinite(value)
    if low is not None:
        ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        raise InvalidInputError(
            f"`{name}` must be a number in {left}{lo}, {hi}{right}; received {value!r}."
        )
    return value


def param_names(cls: type) -> list[str]:
    """The parameters of an estimator class: its ``__init__``'s named arguments, sorted.

    What scikit-learn's ``get_params`` reports, read from the signature (without
    scikit-learn's private ``_get_param_names``).
    """
    import inspect

    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    params = inspect.signature(cls.__init__).parameters.values()
    return sorted(p.name for p in params if p.name != "self" and p.kind not in skip)
