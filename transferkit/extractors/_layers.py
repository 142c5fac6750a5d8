"""Keras layers that belong to transferkit models and must load from ``.keras`` files.

Imported only when a model is built or loaded (it imports Keras).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from .._lazy import import_tf
from ..exceptions import InvalidInputError
from ._frozen import PREPROCESSING, RESIZE_METHODS, preprocess_family

__all__ = [
    "AlternatingFlip",
    "BackbonePreprocessing",
    "ClassifierInfo",
    "DiracUniform",
    "PerImageStandardization",
    "ResizeImages",
    "preprocessing_function",
    "register_preprocessing",
]


def _scale_127_128(x: Any) -> Any:
    """EfficientNet-Lite0's input scaling, ``(x - 127) / 128`` (its preprocessing's name)."""
    return (x - 127.0) / 128.0


#: Preprocessing name (as in the extractors' fingerprints) -> function on a float32 RGB
#: batch in [0, 255]. The built-in backbones' names are here from the start, so a saved
#: model loads in a fresh process; :func:`register_preprocessing` adds others.
_PREPROCESSING_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    **{family: functools.partial(preprocess_family, family=family) for family in PREPROCESSING},
    "caffe_bgr_mean": functools.partial(preprocess_family, family="caffe"),  # VGG-16
    "(x-127)/128": _scale_127_128,  # EfficientNet-Lite0
}


def register_preprocessing(name: str, function: Callable[[Any], Any]) -> None:
    """Make ``name`` usable by :class:`BackbonePreprocessing` (first registration wins).

    A preprocessing name identifies its computation, as in the extractors' fingerprints,
    so registering a name that is already known changes nothing. A model using a name
    registered this way loads in another process only after the same registration.

    Parameters
    ----------
    name : str
        The name an extractor's ``_preprocessing()`` gives.
    function : callable
        Maps a float32 RGB batch in [0, 255] (a tensor) to the backbone's input.
    """
    if not isinstance(name, str) or not name:
        raise InvalidInputError(
            f"`name` must be a non-empty string; received {name!r}.")
    _PREPROCESSING_FUNCTIONS.setdefault(name, function)


def preprocessing_function(name: str) -> Callable[[Any], Any]:
    """The function registered under the preprocessing ``name``.

    Raises
    ------
    InvalidInputError
        If no function is registered under ``name``.
    """
    try:
        return _PREPROCESSING_FUNCTIONS[name]
    except (KeyError, TypeError):
        raise InvalidInputError(
            f"`preprocessing` must be one of {sorted(_PREPROCESSING_FUNCTIONS)} (or a name "
            f"given to `register_preprocessing` first); received {name!r}."
        ) from None


@keras.saving.register_keras_serializable(package="transferkit")
class DiracUniform(keras.initializers.Initializer):
    """Convolution kernels that start as an identity map: an implicit residual connection.

    The first ``min(in_channels, out_channels)`` filters copy input channel ``i`` to
    output channel ``i`` (a one at the kernel's centre, as ``torch.nn.init.dirac_``);
    the others are uniform in ``+-1/sqrt(fan_in)`` (PyTorch's default convolution
    initialisation). The fastest published CIFAR-10 recipes (airbench) train about 15%
    fewer epochs to the same accuracy with it.

    Parameters
    ----------
    seed : int or None
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        if len(shape) != 4:
            raise ValueError(f"DiracUniform is for Conv2D kernels (4-D); received shape {shape}.")
        kh, kw, cin, cout = (int(v) for v in shape)
        bound = 1.0 / np.sqrt(kh * kw * cin)
        dtype = dtype or "float32"
        w = keras.random.uniform(shape, -bound, bound, dtype=dtype, seed=self.seed)
        n = min(cin, cout)
        identity = np.zeros(shape, dtype=np.float32)
        identity[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
        first = (np.arange(cout) < n).reshape(1, 1, 1, cout)
        return keras.ops.where(first, keras.ops.cast(identity, dtype), w)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="transferkit")
class PerImageStandardization(keras.layers.Layer):
    """Scale each image to zero mean and unit variance, as ``tf.image.per_image_standardization``.

    The standard deviation is floored at ``1 / sqrt(number of pixel values)`` so
    uniform images do not divide by zero.
    """

    def call(self, inputs: Any) -> Any:
        x = keras.ops.cast(inputs, self.compute_dtype)
        axes = (1, 2, 3)
        mean = keras.ops.mean(x, axis=axes, keepdims=True)
        var = keras.ops.mean(keras.ops.square(x - mean), axis=axes, keepdims=True)
        n = keras.ops.cast(keras.ops.prod(keras.ops.shape(x)[1:]), self.compute_dtype)
        std = keras.ops.maximum(keras.ops.sqrt(var), keras.ops.rsqrt(n))
        return (x - mean) / std

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@keras.saving.register_keras_serializable(package="transferkit")
class AlternatingFlip(keras.layers.Layer):
    """Mirror the whole batch left-right in every other epoch (training only).

    Used on training images that were each mirrored at random once, before the first
    epoch: every image is then seen mirrored in alternate epochs, rather than on a coin
    flip each epoch, so consecutive epochs never repeat a view (airbench's alternating
    flip). The epoch's side is the non-trainable variable ``mirrored``, which
    :class:`transferkit.CifarCNN` sets at the start of each epoch. At inference the
    layer passes images through unchanged.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mirrored = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="mirrored", dtype="float32")

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not training:
            return inputs
        flipped = keras.ops.flip(inputs, axis=2)
        return keras.ops.where(self.mirrored > 0.5, flipped, inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@keras.saving.register_keras_serializable(package="transferkit")
class ResizeImages(keras.layers.Layer):
    """Resize an image batch to ``size`` with ``tf.image.resize``, as the extractors do.

    Parameters
    ----------
    size : (int, int)
        Output height and width.
    method : str, default="bilinear"
        Interpolation, as in ``tf.image.resize``.
    """

    def __init__(self, size: Any, method: str = "bilinear", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        ok = (isinstance(size, list | tuple) and len(size) == 2
              and all(isinstance(v, int | np.integer) and v > 0 for v in size))
        if not ok:
            raise InvalidInputError(
                f"`size` must be a (height, width) pair of positive integers; received {size!r}.")
        if method not in RESIZE_METHODS:
            raise InvalidInputError(
                f"`method` must be one of {list(RESIZE_METHODS)}; received {method!r}.")
        self.size = (int(size[0]), int(size[1]))
        self.method = method

    def call(self, inputs: Any) -> Any:
        tf = import_tf()
        if inputs.dtype.is_integer:  # uint8 images: resized in float32 (as TFLite needs)
            inputs = tf.cast(inputs, tf.float32)
        return tf.image.resize(inputs, self.size, method=self.method)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], *self.size, input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": list(self.size), "method": self.method}


@keras.saving.register_keras_serializable(package="transferkit")
class BackbonePreprocessing(keras.layers.Layer):
    """A backbone's input preprocessing, known by its name (as in the fingerprint).

    The configuration holds the name only; the function comes from
    :func:`preprocessing_function`, so a saved model loads without arbitrary code.

    Parameters
    ----------
    preprocessing : str
        E.g. ``"caffe"``, ``"tf"``, ``"torch"``, ``"none"``, ``"caffe_bgr_mean"`` (VGG-16)
        or ``"(x-127)/128"`` (EfficientNet-Lite0).
    """

    def __init__(self, preprocessing: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.function = preprocessing_function(preprocessing)
        self.preprocessing = preprocessing

    def call(self, inputs: Any) -> Any:
        return self.function(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "preprocessing": self.preprocessing}


@keras.saving.register_keras_serializable(package="transferkit")
class ClassifierInfo(keras.layers.Layer):
    """Identity layer whose configuration records a classifier's class names and image size.

    The last layer of :func:`transferkit.export.classifier_model`: a saved classifier
    says which class each probability column is, and the size its head was trained at.

    Parameters
    ----------
    class_names : list of str
    image_size : (int, int)
    """

    def __init__(self, class_names: Any, image_size: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.class_names = [str(c) for c in class_names]
        self.image_size = [int(v) for v in image_size]

    def call(self, inputs: Any) -> Any:
        return inputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "class_names": self.class_names,
                "image_size": self.image_size}
