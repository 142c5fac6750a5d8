"""Frozen ImageNet VGG-16 as a feature extractor (the talk's transfer-learning backbone).

The shared machinery (parameters, weights, pooling, resizing, dtype) is
:class:`~transferkit.extractors._frozen.FrozenBackbone`'s; this module only says what
is VGG-16's: the ``keras.applications`` model and its layers, Keras' "caffe"
preprocessing (RGB to BGR, ImageNet channel means subtracted), and where Keras keeps
its ImageNet weights (the file and MD5 Keras checks, per ``include_top``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

from ..exceptions import InvalidInputError
from ._frozen import (
    RESIZE_METHODS,
    FrozenBackbone,
    fetch_keras_weights,
    keras_application,
    keras_weights_path,
    load_weights_strictly,
    preprocess_family,
)
from ._registry import register_extractor

__all__ = [
    "VGG16Extractor",
    "keras_weights_path",
    "load_weights_strictly",
    "RESIZE_METHODS",
]

_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
_WEIGHTS = {
    # include_top -> (file name, md5 that Keras checks)
    True: ("vgg16_weights_tf_dim_ordering_tf_kernels.h5", "64373286793e3c8b2b4e3219cbf3544b"),
    False: (
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc",
    ),
}
_CONV_LAYERS = [
    f"block{b}_conv{c}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3), strict=True)
    for c in range(1, n + 1)
]
_POOL_LAYERS = [f"block{b}_pool" for b in range(1, 6)]
_TOP_LAYERS = ["fc1", "fc2", "predictions"]
LAYERS = tuple(_CONV_LAYERS + _POOL_LAYERS + _TOP_LAYERS)


@register_extractor("vgg16")
class VGG16Extractor(FrozenBackbone):
    """Frozen VGG-16 (Simonyan & Zisserman, 2014) mapping images to feature vectors.

    Images are resized inside the model (the talk upsampled CIFAR-10's 32x32 to
    224x224) and preprocessed as VGG-16 expects (RGB to BGR, ImageNet channel means
    subtracted); the caller's array is never modified.

    Parameters
    ----------
    weights : {"imagenet", None} or path, default="imagenet"
        ``"imagenet"``: Keras' ImageNet weights (downloaded once into
        ``~/.keras/models``; offline, a :class:`~transferkit.exceptions.WeightsNotFoundError`
        says which file to put where). ``None``: random weights, seeded by ``seed``
        (for tests). A path: a Keras weights file for this architecture.
    layer : str or sequence of str, default="block5_pool"
        Layer whose output becomes the features: any ``block{i}_conv{j}``,
        ``block{i}_pool``, or ``"fc1"``, ``"fc2"``, ``"predictions"`` (these need the
        full 224x224 ImageNet model: ``input_size=224``). A tuple or list of distinct
        names, e.g. ``("block4_pool", "block5_pool")``, concatenates the layers' pooled
        vectors in that order (width: the sum of theirs); ``"predictions"`` cannot be
        one of several.
    pooling : {"avg", "max", "avgmax", "flatten"}, default="avg"
        How a convolutional feature map becomes a vector: the average or the maximum of
        each channel, both (``"avgmax"``: ``[avg, max]``, twice the channels), or the
        whole map flattened. Ignored for ``fc1``, ``fc2`` and ``predictions``, whose
        outputs already are vectors.
    input_size : int or None, default=None
        Side length images are resized to inside the model. ``None`` keeps the
        images' own size (at least 32x32).
    resize_method : str, default="bilinear"
        Interpolation for resizing, as in ``tf.image.resize``.
    batch_size : int, default=64
        Images per forward pass.
    seed : int, default=0
        Seed of the random weights when ``weights=None``.
    dtype : {"float32", "bfloat16", "mixed_bfloat16"}, default="float32"
        Compute dtype. ``"bfloat16"`` computes with bfloat16 weights and activations,
        ``"mixed_bfloat16"`` with float32 weights cast to bfloat16 (Keras' mixed
        precision); both are much faster on CPUs with AVX-512 BF16 or AMX and change
        features by about 1% (relative). Features are float32 in every case, and the
        dtype is part of the fingerprint.

    Examples
    --------
    >>> from transferkit import VGG16Extractor
    >>> vgg = VGG16Extractor(weights=None, pooling="avg")
    >>> vgg.transform(np.zeros((2, 32, 32, 3), np.uint8)).shape  # doctest: +SKIP
    (2, 512)
    """

    min_input_size = 32
    backbone_name = "VGG-16"
    layer_choices = LAYERS

    def __init__(
        self,
        *,
        weights: str | os.PathLike[str] | None = "imagenet",
        layer: str | Sequence[str] = "block5_pool",
        pooling: str = "avg",
        input_size: int | None = None,
        resize_method: str = "bilinear",
        batch_size: int = 64,
        seed: int = 0,
        dtype: str = "float32",
    ) -> None:
        super().__init__(
            weights=weights, layer=layer, pooling=pooling, input_size=input_size,
            resize_method=resize_method, batch_size=batch_size, seed=seed, dtype=dtype,
        )

    def _validate_params(self) -> None:
        super()._validate_params()
        if self._include_top and self.input_size != 224:
            raise InvalidInputError(
                f"`layer={self.layer!r}` needs the full ImageNet model, which takes 224x224 "
                f"images: set `input_size=224`; received input_size={self.input_size}."
            )

    @property
    def _include_top(self) -> bool:
        return any(name in _TOP_LAYERS for name in self._layer_names())

    def _build_base(self, size: tuple[int, int]) -> Any:
        return keras_application("VGG16", size, include_top=self._include_top)

    def _preprocessing(self) -> tuple[str, Callable[[Any], Any]]:
        # RGB -> BGR, zero-centred per channel: keras.applications.vgg16.preprocess_input
        return "caffe_bgr_mean", functools.partial(preprocess_family, family="caffe")

    def _imagenet_weights_file(self, size: tuple[int, int]) -> str:
        name, md5 = _WEIGHTS[self._include_top]
        return fetch_keras_weights(name, _BASE_URL + name, md5, what="VGG-16")
