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

import copy
from typing import Any

import keras
import tensorflow as tf

from ..exceptions import InvalidInputError
from ..extractors import layer_blocks

__all__ = [
    "GradientScale",
    "augmentation_layers",
    "build_training_model",
    "split_at",
    "unfreeze_top_blocks",
]

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


def _histories(arg: Any) -> list[tuple[Any, ...]]:
    """The ``keras_history`` (layer, node, tensor) of every tensor in a node's config."""
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        return [tuple(arg["config"]["keras_history"])]
    if isinstance(arg, list | tuple):
        return [h for a in arg for h in _histories(a)]
    if isinstance(arg, dict):
        return [h for v in arg.values() for h in _histories(v)]
    return []


def _rewired(arg: Any, old: tuple[Any, ...], new: tuple[Any, ...]) -> Any:
    """A copy of a node's config in which tensor ``old`` is replaced by tensor ``new``."""
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        if tuple(arg["config"]["keras_history"]) == old:
            arg = copy.deepcopy(arg)
            arg["config"]["keras_history"] = list(new)
        return arg
    if isinstance(arg, list | tuple):
        return [_rewired(a, old, new) for a in arg]
    if isinstance(arg, dict):
        return {k: _rewired(v, old, new) for k, v in arg.items()}
    return arg


def split_at(backbone: Any, first_layer: str) -> tuple[Any, Any]:
    """``(bottom, top)``: ``backbone`` cut just before layer ``first_layer``.

    ``bottom`` maps the images to the tensor ``first_layer`` reads (the activations at
    the block boundary); ``top`` maps those activations to the features, so that
    ``top(bottom(x)) == backbone(x)``. Both are new models rebuilt from the
    backbone's configuration (public Keras API: ``get_config``/``from_config``) with
    copies of its weights and its layers' ``trainable`` flags; copy ``top``'s trained
    weights back with :func:`copy_weights`. A backbone whose later layers also read
    tensors from before the cut (a skip connection across it) cannot be split there.
    """
    config = backbone.get_config()
    layers = config["layers"]
    names = [layer["name"] for layer in layers]
    index = names.index(first_layer)
    sources = {h for node in layers[index]["inbound_nodes"] for h in _histories(node)}
    if len(sources) != 1 or layers[0]["class_name"] != "InputLayer":
        raise InvalidInputError(
            f"this backbone cannot be cut before layer {first_layer!r}: it reads "
            f"{len(sources)} tensors; use full fine-tuning (activation_cache=None).")
    (source,) = sources
    cut = names.index(source[0])
    new_input = copy.deepcopy(layers[0])
    new_input["name"] = new_input["config"]["name"] = "activations"
    new_input["config"]["batch_shape"] = [None, *backbone.get_layer(source[0]).output.shape[1:]]
    kept: set[str] = set()
    top_layers = [new_input]
    for layer in layers[cut + 1:]:
        reads = {h for node in layer["inbound_nodes"] for h in _histories(node)}
        if not all(h == source or h[0] in kept for h in reads):
            raise InvalidInputError(
                f"this backbone cannot be cut before layer {first_layer!r}: layer "
                f"{layer['name']!r} also reads activations from before it (a skip "
                "connection); use full fine-tuning (activation_cache=None).")
        layer = copy.deepcopy(layer)
        layer["inbound_nodes"] = [_rewired(n, source, ("activations", 0, 0))
                                  for n in layer["inbound_nodes"]]
        top_layers.append(layer)
        kept.add(layer["name"])
    top = keras.Model.from_config({**config, "name": f"{backbone.name}_top",
                                   "layers": top_layers,
                                   "input_layers": ["activations", 0, 0]})
    bottom = keras.Model.from_config({**config, "name": f"{backbone.name}_bottom",
                                      "layers": copy.deepcopy(layers[: cut + 1]),
                                      "output_layers": list(source)})
    for model in (bottom, top):
        copy_weights(backbone, model)
    bottom.trainable = False
    return bottom, top


def copy_weights(source: Any, target: Any, *, strict: bool = True) -> None:
    """Copy the weights and ``trainable`` flags of ``source``'s layers to ``target``'s
    layers of the same names (those with weights).

    ``strict``: every such layer of ``target`` must have its counterpart; otherwise
    those without one are left as they are (copying a split-off top back).
    """
    by_name = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        match = by_name.get(layer.name)
        if match is None and not strict:
            continue
        if match is None or len(match.weights) != len(layer.weights):
            raise InvalidInputError(
                f"layer {layer.name!r} has no counterpart in {source.name!r}; this backbone "
                "cannot be split for cached activations (use activation_cache=None).")
        layer.set_weights(match.get_weights())
        layer.trainable = match.trainable
