"""Feature extractors: images in, float32 feature vectors out.

All extractors share :class:`BaseExtractor`'s contract and are registered by name:

>>> from transferkit.extractors import list_extractors, create_extractor
>>> list_extractors()  # doctest: +NORMALIZE_WHITESPACE
['cifar_cnn', 'convnext_tiny', 'densenet121', 'efficientnet_b0', 'efficientnet_lite0',
 'inception_v3', 'mobilenet_v2', 'resnet50', 'vgg16', 'xception']
"""

from .._cost import CostEstimate
from ._base import BaseExtractor, iter_image_batches
from ._blocks import layer_blocks
from ._registry import create_extractor, get_extractor_class, list_extractors, register_extractor
from .cifar_cnn import CifarCNN
from .efficientnet_lite import EfficientNetLite0Extractor
from .keras_apps import (
    ConvNeXtTinyExtractor,
    DenseNet121Extractor,
    EfficientNetB0Extractor,
    InceptionV3Extractor,
    KerasApplicationExtractor,
    MobileNetV2Extractor,
    ResNet50Extractor,
    XceptionExtractor,
)
from .vgg16 import VGG16Extractor

__all__ = [
    "BaseExtractor",
    "CifarCNN",
    "ConvNeXtTinyExtractor",
    "CostEstimate",
    "DenseNet121Extractor",
    "EfficientNetB0Extractor",
    "EfficientNetLite0Extractor",
    "InceptionV3Extractor",
    "KerasApplicationExtractor",
    "MobileNetV2Extractor",
    "ResNet50Extractor",
    "VGG16Extractor",
    "XceptionExtractor",
    "create_extractor",
    "get_extractor_class",
    "iter_image_batches",
    "layer_blocks",
    "list_extractors",
    "register_extractor",
]
