""":class:`FineTunedExtractor`: a fine-tuned backbone, an extractor again.

Its fingerprint covers the base extractor's description and a hash of every trained
weight (:func:`transferkit._hashing.hash_arrays`), so a
:class:`~transferkit.FeatureCache` keys its features apart from the frozen backbone's:
the frozen features are never served for the fine-tuned network, and two fine-tunes
that end with different weights get different entries.

File format (``save``/``load``): a Keras ``.keras`` zip of the feature model with one
more member, ``transferkit.json``: ``{"format": "transferkit.FineTunedExtractor",
"format_version": 1, "base": <the base's describe()>, "base_class": "module.Class",
"base_params": {...} or null, "image_size": [h, w], "blocks": [...], "batch_size": n}``.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar

from .. import __version__
from .._hashing import hash_arrays
from .._keras_file import check_keras_path, read_keras_meta, save_keras_with_meta
from .._lazy import import_keras
from ..exceptions import InvalidInputError
from ..extractors import BaseExtractor

__all__ = ["FineTunedExtractor"]

_FORMAT = "transferkit.FineTunedExtractor"


class FineTunedExtractor(BaseExtractor):
    """A backbone fine-tuned by :class:`~transferkit.FineTuner`, as a feature extractor.

    Made by ``FineTuner.fit`` (``fine_tuner.extractor_``) or read with :meth:`load`;
    its features are the fine-tuned backbone's pooled outputs, computed exactly as the
    base extractor computes its own (same resizing, preprocessing and pooling).

    Parameters
    ----------
    batch_size : int or None, default=None
        Images per forward pass (None: the base extractor's).

    Attributes
    ----------
    model_ : keras.Model
        The fine-tuned feature model, for images of ``image_size_``.
    image_size_ : (int, int)
        The image size it was trained on.
    base_description_ : dict
        The base extractor's :meth:`describe`.
    base_ : BaseExtractor or None
        The base extractor (rebuilds the model for another image size when the base
        resizes inside, i.e. has an ``input_size``).
    blocks_trained_ : list of str
    weights_hash_ : str
    """

    registry_name: ClassVar[str] = "fine_tuned"
    trainable: ClassVar[bool] = True

    def __init__(self, *, batch_size: int | None = None) -> None:
        self.batch_size = batch_size

    @classmethod
    def from_trained(
        cls, base: Any, model: Any, *, image_size: tuple[int, int], blocks: list[str],
        batch_size: int | None = None,
    ) -> FineTunedExtractor:
        """The extractor of a trained feature ``model`` fine-tuned from ``base``."""
        self = cls(batch_size=batch_size)
        self.model_ = model
        self.image_size_ = (int(image_size[0]), int(image_size[1]))
        self.base_ = base
        self.base_description_ = base.describe()
        self.blocks_trained_ = list(blocks)
        self.weights_hash_ = hash_arrays(model.get_weights())
        return self

    # ---------------------------------------------------------------- the contract
    def _validate_params(self) -> None:
        if self.batch_size is not None:
            super()._validate_params()

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            from ..exceptions import NotFittedError

            raise NotFittedError(
                "This FineTunedExtractor holds no model: get one from `FineTuner.fit` "
                "(`fine_tuner.extractor_`) or `FineTunedExtractor.load(path)`.")

    def _feature_config(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "base": self.base_description_,
            "weights": {"fine_tuned_hash": self.weights_hash_},
            "blocks_trained": list(self.blocks_trained_),
            "image_size": list(self.image_size_),
        }

    def _effective_batch_size(self) -> int:
        if self.batch_size is not None:
            return int(self.batch_size)
        base = getattr(self, "base_", None)
        return base.default_batch_size() if base is not None else 64

    def _resizes_inside(self) -> bool:
        return bool(self.base_description_.get("input_size"))

    def _check_image_size(self, size: tuple[int, int]) -> tuple[int, int]:
        self._check_fitted()
        if tuple(size) != self.image_size_ and not (
            self._resizes_inside() and getattr(self, "base_", None) is not None
        ):
            raise InvalidInputError(
                f"`images` must be {self.image_size_[0]}x{self.image_size_[1]} like the "
                f"images this backbone was fine-tuned on; received {size[0]}x{size[1]}."
            )
        return (int(size[0]), int(size[1]))

    def _model_key(self, image_size: tuple[int, int]) -> Any:
        return tuple(image_size)

    def _model_for(self, size: tuple[int, int]) -> Any:
        if tuple(size) == self.image_size_:
            return self.model_
        model = self.base_.feature_model(tuple(size))  # same layers, another input size
        model.set_weights(self.model_.get_weights())
        return model

    def feature_model(self, image_size: tuple[int, int] | None = None) -> Any:
        """A copy of the fine-tuned feature model (see :meth:`BaseExtractor.feature_model`)."""
        keras = import_keras()
        size = self._check_image_size(tuple(image_size or self.image_size_))
        source = self._model_for(size)
        model = keras.models.clone_model(source)
        model.set_weights(source.get_weights())
        model.trainable = False
        return model

    def _build_forward(self, image_size: tuple[int, int]) -> Any:
        keras = import_keras()
        model = self._model_for(self._check_image_size(image_size))

        def forward(x: Any) -> Any:
            return keras.ops.cast(model(keras.ops.cast(x, "float32"), training=False),
                                  "float32")

        forward.model = model  # type: ignore[attr-defined]
        return forward

    # ---------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save to a ``.keras`` file (the feature model plus transferkit's metadata)."""
        self._check_fitted()
        path = check_keras_path(path)
        base = getattr(self, "base_", None)
        params = None
        if base is not None:
            try:
                params = json.loads(json.dumps(base.get_params(deep=False), default=str))
            except (TypeError, ValueError):
                params = None
        meta = {
            "format": _FORMAT, "format_version": 1, "transferkit_version": __version__,
            "base": self.base_description_,
            "base_class": None if base is None else
            f"{type(base).__module__}.{type(base).__qualname__}",
            "base_params": params if base is not None and not base.trainable else None,
            "image_size": list(self.image_size_), "blocks": list(self.blocks_trained_),
            "batch_size": self.batch_size,
        }
        return save_keras_with_meta(self.model_, path, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FineTunedExtractor:
        """Read a file written by :meth:`save` (Keras safe mode: no arbitrary code)."""
        keras = import_keras()
        from ..extractors import _layers  # noqa: F401  (registers the custom layers)

        path = Path(path)
        meta = read_keras_meta(path, _FORMAT, "fine-tuned extractor",
                               "`FineTunedExtractor.save`")
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
        self = cls(batch_size=meta.get("batch_size"))
        self.model_ = model
        self.image_size_ = tuple(int(s) for s in meta["image_size"])
        self.base_description_ = meta["base"]
        self.blocks_trained_ = list(meta.get("blocks", []))
        self.weights_hash_ = hash_arrays(model.get_weights())
        self.base_ = _rebuild_base(meta)
        return self


def _rebuild_base(meta: dict[str, Any]) -> Any:
    """The frozen base extractor from its class and parameters, or None if not possible."""
    name, params = meta.get("base_class"), meta.get("base_params")
    if not name or params is None:
        return None
    module, _, qualname = str(name).rpartition(".")
    if not module.startswith("transferkit."):
        return None
    try:
        cls = getattr(importlib.import_module(module), qualname)
        base = cls(**params)
        base.check_params()
    except Exception:  # noqa: BLE001 - the model still serves its own image size
        return None
    return base if isinstance(base, BaseExtractor) else None
