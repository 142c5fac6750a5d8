"""transferkit: image feature extraction and transfer learning on TensorFlow/Keras 3.

Extractors map images to feature vectors, :class:`FeatureCache` stores them in HDF5,
and heads (:class:`DenseHead`, :class:`SklearnHead`) are trained on the cached features;
:class:`FineTuner` then fine-tunes backbone and head together, and
:func:`export_classifier` saves them as one Keras model.

Importing ``transferkit`` is cheap: TensorFlow is imported only when an extractor or
a Keras head is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Version of everything in transferkit that changes extracted features. It is part of
#: every fingerprint; bump it when a change would make cached features differ.
FEATURE_VERSION = "1"

_LAZY = {
    "VGG16Extractor": "transferkit.extractors",
    "EfficientNetLite0Extractor": "transferkit.extractors",
    "KerasApplicationExtractor": "transferkit.extractors",
    "CifarCNN": "transferkit.extractors",
    "BaseExtractor": "transferkit.extractors",
    "create_extractor": "transferkit.extractors",
    "list_extractors": "transferkit.extractors",
    "register_extractor": "transferkit.extractors",
    "FeatureCache": "transferkit.cache",
    "ImageStream": "transferkit.cache",
    "extract_distributed": "transferkit.distributed",
    "DenseHead": "transferkit.heads",
    "SklearnHead": "transferkit.heads",
    "load_head": "transferkit.heads",
    "TransferkitError": "transferkit.exceptions",
    "FineTuner": "transferkit.fine_tune",
    "FineTunedExtractor": "transferkit.fine_tune",
    "classifier_model": "transferkit.export",
    "export_classifier": "transferkit.export",
    "load_classifier": "transferkit.export",
}

__all__ = [
    "__version__",
    "FEATURE_VERSION",
    "BaseExtractor",
    "CifarCNN",
    "DenseHead",
    "EfficientNetLite0Extractor",
    "FeatureCache",
    "FineTunedExtractor",
    "FineTuner",
    "ImageStream",
    "KerasApplicationExtractor",
    "SklearnHead",
    "TransferkitError",
    "VGG16Extractor",
    "classifier_model",
    "create_extractor",
    "export_classifier",
    "extract_distributed",
    "list_extractors",
    "load_classifier",
    "load_head",
    "register_extractor",
]

if TYPE_CHECKING:  # pragma: no cover
    from .cache import FeatureCache, ImageStream
    from .distributed import extract_distributed
    from .exceptions import TransferkitError
    from .export import classifier_model, export_classifier, load_classifier
    from .extractors import (
        BaseExtractor,
        CifarCNN,
        EfficientNetLite0Extractor,
        KerasApplicationExtractor,
        VGG16Extractor,
        create_extractor,
        list_extractors,
        register_extractor,
    )
    from .fine_tune import FineTunedExtractor, FineTuner
    from .heads import DenseHead, SklearnHead, load_head


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'transferkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
