"""The network a fine-tune trains: augmentation -> backbone -> gradient scale -> head.

Built from an extractor's :meth:`~transferkit.extractors.BaseExtractor.feature_model`
(a flat Keras model of the backbone, frozen) and :func:`transferkit.heads.head_to_keras`
(the fitted head as Keras layers: the warm start). Invariants:

- The backbone's learning rate is the head's times ``backbone_lr_scale``: a
  :class:`GradientScale` layer between backbone and head multiplies every gradient
  that reaches the backbone. With SGD (momentum included) that is exactly a lower
  learning rate for the backbone's variables; the head's are untouched.
- Batch-norm layers stay frozen unless ``train_batchnorm``: Keras 3 runs a
  non-trainable ``BatchNormalization`` in inference mode, so it normalises with its
  moving (ImageNet) statistics and neither they nor its scale and offset change. (A
  ``training=False`` on the nested backbone's call is not honoured by ``fit``; the
  layer flag is.) With ``train_batchnorm``, those of the trained blocks train and
  update their statistics.
- Only the layers of the top ``trainable_blocks`` blocks (``"all"``: every layer)
  train; blocks are :func:`transferkit.extractors.layer_blocks` of the backbone.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from ..exceptions import InvalidInputError
from ..extractors import layer_blocks

__all__ = [
    "AUGMENTATIONS",
    "GradientScale",
    "augmentation_layers",
    "build_training_model",
    "unfreeze_top_blocks",
]

#: Augmentations a fine-tune can apply to its training images (before any resizing).
AUGMENTATIONS = ("flip", "translate", "zoom", "brightness")
#: Largest shift of "translate", as a fraction of the side (2 pixels of 32).
_TRANSLATE = 0.0625


@keras.saving.register_keras_serializable(package="transferkit")
class GradientScale(keras.layers.Layer):
    """Identity forwards; multiplies the gradient by ``scale`` backwards.

    Placed between a backbone and its head, it gives every backbone variable a
    learning rate ``scale`` times the optimizer's (exactly so for SGD with momentum).
    """

    def __init__(self, scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs: Any) -> Any:
        scale = self.scale

        @tf.custom_gradient
        def scaled(x: Any) -> Any:
            def grad(dy: Any) -> Any:
                return dy * tf.cast(scale, dy.dtype)

            return tf.identity(x), grad

        return scaled(inputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale}


def augmentation_layers(names: tuple[str, ...], seed: int | None) -> list[Any]:
    """Keras augmentation layers (active in training only), seeded from ``seed``."""

    def s(i: int) -> int | None:
        return None if seed is None else int(seed) + 700 + i

    make = {
        "flip": lambda i: keras.layers.RandomFlip("horizontal", seed=s(i), name="aug_flip"),
        "translate": lambda i: keras.layers.RandomTranslation(
            _TRANSLATE, _TRANSLATE, fill_mode="reflect", interpolation="nearest",
            seed=s(i), name="aug_translate"),
        "zoom": lambda i: keras.layers.RandomZoom(0.1, seed=s(i), name="aug_zoom"),
        "brightness": lambda i: keras.layers.RandomBrightness(
            0.2, value_range=(0, 255), seed=s(i), name="aug_brightness"),
    }
    return [make[name](i) for i, name in enumerate(names)]


def unfreeze_top_blocks(
    backbone: Any, trainable_blocks: int | str, *, train_batchnorm: bool = False
) -> list[str]:
    """Make the layers of the top ``trainable_blocks`` blocks trainable; return the blocks.

    ``"all"`` unfreezes every layer with weights; ``0`` none (only the head trains).
    Batch-norm layers stay frozen (inference mode) unless ``train_batchnorm``.
    """
    blocks = layer_blocks(backbone)
    if trainable_blocks == "all":
        chosen = blocks
    else:
        n = int(trainable_blocks)
        if n > len(blocks):
            names = ", ".join(name for name, _ in blocks)
            raise InvalidInputError(
                f"`trainable_blocks` must be at most {len(blocks)}, the number of blocks of "
                f"this backbone ({names}), or 'all'; received {n}."
            )
        chosen = blocks[len(blocks) - n:] if n else []
    backbone.trainable = True  # then freeze all but the chosen layers
    trained = {layer for _, layers in chosen for layer in layers}
    for layer in backbone.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = layer.name in trained and (train_batchnorm or not is_bn)
    return [name for name, _ in chosen]


def build_training_model(
    backbone: Any, head: Any, *, image_shape: tuple[int, int, int], augment: tuple[str, ...],
    backbone_lr_scale: float, seed: int | None,
) -> tuple[Any, Any]:
    """``(train_model, classifier)``: images -> probabilities, with and without augmentation.

    Both share the backbone's and the head's layers. ``train_model`` augments and scales
    the backbone's gradients; ``classifier`` is what predictions and exports use.
    """
    inputs = keras.Input(shape=image_shape, dtype="float32", name="images")
    x = inputs
    for layer in augmentation_layers(augment, seed):
        x = layer(x)
    feats = backbone(x)  # frozen batch norms run in inference mode (see module doc)
    feats = GradientScale(backbone_lr_scale, name="backbone_lr_scale")(feats)
    train_model = keras.Model(inputs, head(feats), name="fine_tune_train")
    clean = keras.Input(shape=image_shape, dtype="float32", name="images")
    classifier = keras.Model(clean, head(backbone(clean, training=False)),
                             name="fine_tuned_classifier")
    return train_model, classifier
