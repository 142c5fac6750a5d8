"""The layers of a backbone grouped into blocks (stages), to say "train the top N blocks".

:func:`layer_blocks` reads the block structure from the layer names that the
``keras.applications`` architectures, EfficientNet-Lite0 and :class:`CifarCNN` use, so
it works on the models :meth:`BaseExtractor.feature_model
<transferkit.extractors.BaseExtractor.feature_model>` returns and on any model that
names its layers the same way.
"""

from __future__ import annotations

import re
from typing import Any

from .._lazy import import_keras
from .._validation import describe
from ..exceptions import InvalidTypeError

__all__ = ["layer_blocks"]

#: Layer name -> block name, tried in order; the first group is the block's name.
_BLOCK_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^(block_\d+)_"),  # MobileNetV2: block_16_project -> block_16
    # VGG-16, Xception: block5_conv1 -> block5; EfficientNet(-Lite): block6a_expand_conv
    # -> block6; CifarCNN "fast": block1a, block1b_bn -> block1
    re.compile(r"^(block\d+)[a-z]?(?:_|$)"),
    re.compile(r"^(conv\d+)_block"),  # ResNet, DenseNet: conv4_block3_1_conv -> conv4
    re.compile(r"(?:^|_)(stage_\d+)_block"),  # ConvNeXt: convnext_tiny_stage_2_block_0_...
)
#: ConvNeXt's downsampling layers open the next stage: downsampling_block_0 -> stage_1.
_DOWNSAMPLING = re.compile(r"(?:^|_)downsampling_block_(\d+)$")
#: InceptionV3 names its convolutions conv2d_N; each block ends at a mixedN concatenation.
_BLOCK_END = re.compile(r"^mixed\d+$")
#: The block of the layers with weights after the last recognised block.
TOP = "top"


def _block_of(name: str) -> str | None:
    match = _DOWNSAMPLING.search(name)
    if match:
        return f"stage_{int(match.group(1)) + 1}"
    for pattern in _BLOCK_PATTERNS:
        match = pattern.search(name)
        if match:
            return match.group(1)
    return None


def _blocks_ending_at_concatenations(layers: list[Any]) -> list[tuple[str, list[str]]]:
    blocks: list[tuple[str, list[str]]] = []
    pending: list[str] = []
    for layer in layers:
        if layer.weights:
            pending.append(layer.name)
        if _BLOCK_END.match(layer.name) and pending:
            blocks.append((layer.name, pending))
            pending = []
    if pending:
        blocks.append((TOP, pending))
    return blocks


def layer_blocks(model: Any) -> list[tuple[str, list[str]]]:
    """The layers of ``model`` that have weights, grouped into blocks from input to output.

    The blocks are the architectures' own stages, read from the layer names:

    - VGG-16, Xception: ``block5_conv1`` -> ``"block5"``;
    - EfficientNet-B0 and -Lite0, CifarCNN ``"fast"``: ``block6a_expand_conv`` ->
      ``"block6"`` (a stage; ``block1a`` and ``block1b`` -> ``"block1"``);
    - MobileNetV2: ``block_16_project`` -> ``"block_16"``;
    - ResNet, DenseNet: ``conv4_block3_1_conv`` -> ``"conv4"``;
    - ConvNeXt: ``..._stage_2_block_0_...`` -> ``"stage_2"`` (the downsampling layers
      before a stage belong to it);
    - InceptionV3 (layers named ``conv2d_N``): each block ends at a ``mixedN``
      concatenation layer and takes its name.

    Layers with weights before the first recognised block (stems) join the first block;
    unrecognised ones between two blocks (shortcuts, transitions) join the block before
    them; those after the last block form the block ``"top"`` (``top_conv``,
    ``Conv_1``, ``bn``, a classifier...). A model without recognisable names gives each
    layer with weights its own block, named after it. Layers without weights (inputs,
    resizing, preprocessing, activations, pooling) are in no block. Every layer with
    weights (trainable or not, e.g. batch-norm statistics only) is in exactly one block.

    Parameters
    ----------
    model : keras.Model
        E.g. a model from :meth:`BaseExtractor.feature_model
        <transferkit.extractors.BaseExtractor.feature_model>`.

    Returns
    -------
    list of (str, list of str)
        ``(block name, layer names)`` in model order; block names are unique.

    Examples
    --------
    >>> model = VGG16Extractor(weights=None).feature_model()  # doctest: +SKIP
    >>> [name for name, _ in layer_blocks(model)]  # doctest: +SKIP
    ['block1', 'block2', 'block3', 'block4', 'block5']
    >>> train = {n for _, names in layer_blocks(model)[-2:] for n in names}  # doctest: +SKIP
    >>> model.trainable = True  # Keras 3: unfreeze the model, then freeze  # doctest: +SKIP
    >>> for layer in model.layers:  # all but the top 2 blocks  # doctest: +SKIP
    ...     layer.trainable = layer.name in train
    """
    keras = import_keras()
    if not isinstance(model, keras.Model):
        raise InvalidTypeError(
            f"`model` must be a keras.Model; received {describe(model)}.")
    layers = list(model.layers)
    if any(_BLOCK_END.match(layer.name) for layer in layers):
        return _blocks_ending_at_concatenations(layers)
    weighted = [layer.name for layer in layers if layer.weights]
    keys = [_block_of(name) for name in weighted]
    if not any(keys):
        return [(name, [name]) for name in weighted]
    blocks: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    pending: list[str] = []
    for name, key in zip(weighted, keys, strict=True):
        if key is None:
            pending.append(name)
            continue
        if blocks and (key == blocks[-1][0] or key in seen):
            # a name of the current block, or of an earlier one (out of order): the
            # current block takes it, with the unrecognised layers before it
            blocks[-1][1].extend([*pending, name])
        elif blocks:
            blocks[-1][1].extend(pending)  # shortcuts, transitions: the block before
            blocks.append((key, [name]))
        else:
            blocks.append((key, [*pending, name]))  # the stem joins the first block
        seen.add(key)
        pending = []
    if pending:
        blocks.append((TOP, pending))
    return blocks
