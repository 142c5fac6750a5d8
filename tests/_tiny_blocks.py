"""A tiny two-block backbone with batch norm, for fine-tuning tests (also in subprocesses)."""

from __future__ import annotations

import numpy as np

from transferkit import exceptions as exc
from transferkit.extractors._frozen import FrozenBackbone, seeded_lecun_init


class TinyBlocks(FrozenBackbone):
    """block1 (conv + BN) -> block2 (conv + BN) -> pooled; seeded random weights."""

    registry_name = "tiny_blocks"
    backbone_name = "TinyBlocks"
    layer_choices = ("block2_relu",)
    min_input_size = 8

    def __init__(self, *, weights=None, layer="block2_relu", pooling="avg", input_size=None,
                 resize_method="bilinear", batch_size=16, seed=0, dtype="float32") -> None:
        super().__init__(
            weights=weights, layer=layer, pooling=pooling, input_size=input_size,
            resize_method=resize_method, batch_size=batch_size, seed=seed, dtype=dtype,
        )

    def _build_base(self, size):
        import keras

        inputs = keras.Input((*size, 3))
        x = inputs
        for i, width in ((1, 8), (2, 16)):
            x = keras.layers.Conv2D(width, 3, strides=2, padding="same", name=f"block{i}_conv")(x)
            x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
            x = keras.layers.Activation("relu", name=f"block{i}_relu")(x)
        return keras.Model(inputs, x)

    def _random_init(self, base):
        seeded_lecun_init(base, int(self.seed))  # keeps batch norm's unit scales

    def _preprocessing(self):
        return "tf", lambda x: x / np.float32(127.5) - np.float32(1.0)

    def _imagenet_weights_file(self, size):
        raise exc.WeightsNotFoundError("TinyBlocks has no ImageNet weights.")
