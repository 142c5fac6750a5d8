"""Feature extractors: images in, float32 feature vectors out.

All extractors share :class:`BaseExtractor`'s contract and are registered by name:

>>> from transferkit.extractors import list_extractors, create_extractor
>>> list_extractors()
['cifar_cnn', 'vgg16']
"""

from ._base import BaseExtractor, iter_image_batches
from ._registry import create_extractor, get_extractor_class, list_extractors, register_extractor
from .cifar_cnn import CifarCNN
from .vgg16 import VGG16Extractor

__all__ = [
    "BaseExtractor",
    "CifarCNN",
    "VGG16Extractor",
    "create_extractor",
    "get_extractor_class",
    "iter_image_batches",
    "list_extractors",
    "register_extractor",
]
