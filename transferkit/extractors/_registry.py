"""A small registry of extractors, so they can be created by name.

Modelled on timm's registry: ``register_extractor`` adds a class under a name,
``create_extractor(name, **params)`` builds one, ``list_extractors()`` lists names.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._validation import param_names
from ..exceptions import InvalidInputError, InvalidTypeError

if TYPE_CHECKING:  # pragma: no cover
    from ._base import BaseExtractor

__all__ = ["register_extractor", "create_extractor", "list_extractors", "get_extractor_class"]

_REGISTRY: dict[str, type[BaseExtractor]] = {}
_T = TypeVar("_T", bound=type)


def register_extractor(name: str) -> Callable[[_T], _T]:
    """Class decorator registering an extractor under ``name``.

    Parameters
    ----------
    name : str
        Lower-case identifier, e.g. ``"vgg16"``. Must be unique.

    Examples
    --------
    >>> @register_extractor("my_backbone")  # doctest: +SKIP
    ... class MyExtractor(BaseExtractor): ...
    """
    if not isinstance(name, str) or not name or name != name.strip().lower():
        raise InvalidInputError(
            f"`name` must be a non-empty lower-case string; received {name!r}."
        )

    def decorator(cls: _T) -> _T:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise InvalidInputError(
                f"An extractor named {name!r} is already registered ({existing.__name__}); "
                "choose another `name`."
            )
        _REGISTRY[name] = cls  # type: ignore[assignment]
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return decorator


def list_extractors(pattern: str = "*") -> list[str]:
    """Names of the registered extractors, sorted, optionally filtered by a glob.

    Parameters
    ----------
    pattern : str, default="*"
        A shell-style wildcard such as ``"vgg*"``.
    """
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_extractor_class(name: str) -> type[BaseExtractor]:
    """The class registered under ``name``."""
    if not isinstance(name, str):
        raise InvalidTypeError(f"`name` must be a string; received {type(name).__name__}.")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidInputError(
            f"Unknown extractor {name!r}; `name` must be one of {list_extractors()}."
        ) from None


def create_extractor(name: str, **params: Any) -> BaseExtractor:
    """Create a registered extractor by name.

    Parameters
    ----------
    name : str
        A name from :func:`list_extractors`.
    **params
        Keyword arguments for the extractor's constructor.

    Returns
    -------
    BaseExtractor
        A new, unfitted extractor.

    Examples
    --------
    >>> from transferkit import create_extractor
    >>> vgg = create_extractor("vgg16", weights=None, pooling="max")
    """
    cls = get_extractor_class(name)
    valid = set(param_names(cls))
    unknown = sorted(set(params) - valid)
    if unknown:
        raise InvalidInputError(
            f"Unknown parameter(s) {unknown} for extractor {name!r}; valid parameters are "
            f"{sorted(valid)}."
        )
    return cls(**params)
