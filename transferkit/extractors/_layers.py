"""Keras layers that belong to transferkit models and must load from ``.keras`` files.

Imported only when a model is built or loaded (it imports Keras).
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["PerImageStandardization"]


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
