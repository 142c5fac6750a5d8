"""Any ``keras.applications`` backbone as a frozen feature extractor.

:class:`KerasApplicationExtractor` wraps a ``keras.applications`` architecture chosen by
name (``architecture="ResNet50"``), with that family's ``preprocess_input`` done inside
the forward function (the caller's array is never modified), its minimum input size,
optional resizing inside the model, a choice of layer and pooling, and Keras' ImageNet
weights (found in ``$KERAS_HOME/models`` or downloaded once; offline, the error names
the file and where to put it).

Registered fixed-architecture subclasses: ``"resnet50"``, ``"mobilenet_v2"``,
``"efficientnet_b0"``, ``"convnext_tiny"``, ``"densenet121"``, ``"inception_v3"`` and
``"xception"``, so ``create_extractor("resnet50", weights=None)`` works.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._lazy import import_keras
from .._validation import check_choice, describe
from ..exceptions import InvalidInputError, InvalidTypeError
from ._frozen import (
    PREPROCESSING,
    FrozenBackbone,
    fetch_keras_weights,
    keras_application,
    preprocess_family,
    seeded_lecun_init,
)
from ._registry import register_extractor

__all__ = [
    "ARCHITECTURES",
    "PREPROCESSING",
    "ConvNeXtTinyExtractor",
    "DenseNet121Extractor",
    "EfficientNetB0Extractor",
    "InceptionV3Extractor",
    "KerasApplicationExtractor",
    "MobileNetV2Extractor",
    "ResNet50Extractor",
    "XceptionExtractor",
    "preprocess_family",
]


#: keras.applications.efficientnet.IMAGENET_STDDEV_RGB (see _fix_efficientnet_imagenet).
_EFFICIENTNET_STDDEV_RGB = (0.229, 0.224, 0.225)

_GCS = "https://storage.googleapis.com/tensorflow/keras-applications/"
_MOBILENET_V2_ROWS = (96, 128, 160, 192, 224)


@dataclass(frozen=True)
class _Arch:
    """How to build, preprocess and find ImageNet weights for one architecture."""

    constructor: str  # attribute of keras.applications
    family: str  # key of PREPROCESSING
    min_size: int
    default_size: int
    base_url: str
    top_file: str  # "{rows}" is filled in for MobileNetV2
    notop_file: str
    top_hash: str | None = None
    notop_hash: str | None = None


def _resnet(name: str, wn: str, family: str, hashes: tuple[str, str]) -> _Arch:
    return _Arch(
        name, family, 32, 224, _GCS + "resnet/",
        f"{wn}_weights_tf_dim_ordering_tf_kernels.h5",
        f"{wn}_weights_tf_dim_ordering_tf_kernels_notop.h5", *hashes,
    )


def _efficientnet(b: int, size: int, hashes: tuple[str, str]) -> _Arch:
    return _Arch(
        f"EfficientNetB{b}", "none", 32, size, "https://storage.googleapis.com/keras-applications/",
        f"efficientnetb{b}.h5", f"efficientnetb{b}_notop.h5", *hashes,
    )


def _convnext(size: str, hashes: tuple[str, str]) -> _Arch:
    return _Arch(
        f"ConvNeXt{size.capitalize()}", "none", 32, 224, _GCS + "convnext/",
        f"convnext_{size}.h5", f"convnext_{size}_notop.h5", *hashes,
    )


def _densenet(n: int, hashes: tuple[str, str]) -> _Arch:
    return _Arch(
        f"DenseNet{n}", "torch", 32, 224, _GCS + "densenet/",
        f"densenet{n}_weights_tf_dim_ordering_tf_kernels.h5",
        f"densenet{n}_weights_tf_dim_ordering_tf_kernels_notop.h5", *hashes,
    )


_TABLE: tuple[_Arch, ...] = (
    _resnet("ResNet50", "resnet50", "caffe",
            ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626")),
    _resnet("ResNet101", "resnet101", "caffe",
            ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21")),
    _resnet("ResNet152", "resnet152", "caffe",
            ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c")),
    _resnet("ResNet50V2", "resnet50v2", "tf",
            ("3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917")),
    _resnet("ResNet101V2", "resnet101v2", "tf",
            ("6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5")),
    _resnet("ResNet152V2", "resnet152v2", "tf",
            ("a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33")),
    _Arch(
        "MobileNetV2", "tf", 32, 224, _GCS + "mobilenet_v2/",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}.h5",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5",
    ),
    _efficientnet(0, 224, ("902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d")),
    _efficientnet(1, 240, ("1d254153d4ab51201f1646940f018540", "74c4e6b3e1f6a1eea24c589628592432")),
    _efficientnet(2, 260, ("b15cce36ff4dcbd00b6dd88e7857a6ad", "111f8e2ac8aa800a7a99e3239f7bfb39")),
    _efficientnet(3, 300, ("ffd1fdc53d0ce67064dc6a9c7960ede0", "af6d107764bb5b1abb91932881670226")),
    _convnext("tiny", (
        "8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff",
        "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
    )),
    _convnext("small", (
        "ce1277d8f1ee5a0ef0e171469089c18f5233860ceaf9b168049cb9263fd7483c",
        "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab",
    )),
    _convnext("base", (
        "52cbb006d3dadd03f6e095a8ca1aca47aecdd75acb4bc74bce1f5c695d0086e6",
        "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45",
    )),
    _densenet(121, ("9d60b8095a5708f2dcce2bca79d332c7", "30ee3e1110167f948a6b9946edeeb738")),
    _densenet(169, ("d699b8f76981ab1b30698df4c175e90b", "b8c4d4c20dd625c148057b9ff1c1176b")),
    _densenet(201, ("1ceb130c1ea1b78c3bf6114dbdfd8807", "c13680b51ded0fb44dff2d8f86ac8bb1")),
    _Arch(
        "InceptionV3", "tf", 75, 299, _GCS + "inception_v3/",
        "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "9a0d58056eeedaa3f26cb7ebd46da564", "bcbd6486424b2319ff4ef7d526e38f63",
    ),
    _Arch(
        "Xception", "tf", 71, 299, _GCS + "xception/",
        "xception_weights_tf_dim_ordering_tf_kernels.h5",
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "0a58e3b7378bc2990ea3b43d5981f1f6", "b0042744bf5b25fce3cb969f33bebb97",
    ),
)

#: Supported ``architecture`` values (``keras.applications`` constructor names).
ARCHITECTURES: dict[str, _Arch] = {a.constructor: a for a in _TABLE}


# ------------------------------------------------------------------------------------
# Weights
# ------------------------------------------------------------------------------------
def _weights_file(arch: _Arch, include_top: bool, size: tuple[int, int]) -> tuple[str, str | None]:
    """File name Keras looks for and its hash, for this model and input size."""
    name = arch.top_file if include_top else arch.notop_file
    if "{rows}" in name:  # MobileNetV2: weights per input resolution, as Keras picks them
        rows = size[0] if size[0] == size[1] and size[0] in _MOBILENET_V2_ROWS else 224
        name = name.format(rows=rows)
    return name, arch.top_hash if include_top else arch.notop_hash


def _fix_efficientnet_imagenet(model: Any) -> None:
    """Reproduce ``keras.applications.EfficientNetB*(weights="imagenet")`` on a weights=None build.

    With ImageNet weights Keras adds ``Rescaling(1 / sqrt(IMAGENET_STDDEV_RGB))`` right
    after the ``Normalization`` layer (see tensorflow/tensorflow#49930). A model
    built with ``weights=None`` lacks it; dividing the normalisation's variance by the
    square of that factor (multiplying it by the stddev) is the same computation.
    """
    keras = import_keras()
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            var = layer.adapt_variance
            var.assign(
                np.asarray(var.numpy(), np.float32)
                * np.asarray(_EFFICIENTNET_STDDEV_RGB, np.float32)
            )
            layer.finalize_state()
            return
    raise InvalidInputError(  # pragma: no cover - every EfficientNet has the layer
        "EfficientNet model without a Normalization layer; cannot apply ImageNet scaling."
    )


# ------------------------------------------------------------------------------------
# The extractor
# ------------------------------------------------------------------------------------
class KerasApplicationExtractor(FrozenBackbone):
    """A frozen ``keras.applications`` backbone mapping images to feature vectors.

    Parameters
    ----------
    architecture : str, default="ResNet50"
        A ``keras.applications`` constructor name from :data:`ARCHITECTURES`:
        ResNet50/101/152, ResNet50V2/101V2/152V2, MobileNetV2, EfficientNetB0-B3,
        ConvNeXtTiny/Small/Base, DenseNet121/169/201, InceptionV3, Xception.
    weights : {"imagenet", None} or path, default="imagenet"
        ``"imagenet"``: Keras' ImageNet weights (downloaded once into
        ``$KERAS_HOME/models``, default ``~/.keras/models``; offline, a
        :class:`~transferkit.exceptions.WeightsNotFoundError` says which file to put
        where). ``None``: random weights, seeded by ``seed`` (for tests). A path: a
        Keras weights file for this architecture (``include_top=False`` unless
        ``layer="predictions"``).
    layer : str, sequence of str or None, default=None
        ``None``: the last feature map (the model without its classifier).
        ``"predictions"``: the 1,000 ImageNet softmax probabilities (the full model).
        Any other string: the name of a layer of the model without its classifier
        (see :meth:`layer_names`). A tuple or list of distinct layer names, e.g.
        ``("conv4_block6_out", "conv5_block3_out")`` for ResNet50, concatenates the
        layers' pooled vectors in that order (width: the sum of theirs); it cannot hold
        ``None`` or ``"predictions"``.
    pooling : {"avg", "max", "avgmax", "flatten"}, default="avg"
        How a feature map becomes a vector: the average or the maximum of each channel,
        both (``"avgmax"``: ``[avg, max]``, twice the channels), or the whole map
        flattened. Ignored for vector outputs.
    input_size : int or None, default=None
        Side length images are resized to inside the model. ``None`` keeps the
        images' own size (at least the architecture's minimum, e.g. 32, or 75 for
        InceptionV3).
    resize_method : str, default="bilinear"
        Interpolation for resizing, as in ``tf.image.resize``.
    batch_size : int, default=32
        Images per forward pass.
    seed : int, default=0
        Seed of the random weights when ``weights=None``.
    dtype : {"float32", "bfloat16", "mixed_bfloat16"}, default="float32"
        Compute dtype (see :class:`~transferkit.VGG16Extractor`); features are
        float32 in every case.

    Notes
    -----
    Preprocessing follows each family's ``preprocess_input``: "caffe" (ResNet v1),
    "tf" (ResNet v2, MobileNetV2, InceptionV3, Xception), "torch" (DenseNet), or none
    (EfficientNet, ConvNeXt normalise inside the model). MobileNetV2's ImageNet weights
    depend on the input resolution as in Keras (96, 128, 160, 192 or 224; other sizes
    use the 224 weights).

    Examples
    --------
    >>> from transferkit import KerasApplicationExtractor
    >>> ext = KerasApplicationExtractor(architecture="MobileNetV2", weights=None)
    >>> ext.transform(np.zeros((2, 32, 32, 3), np.uint8)).shape  # doctest: +SKIP
    (2, 1280)
    """

    def __init__(
        self,
        *,
        architecture: str = "ResNet50",
        weights: str | os.PathLike[str] | None = "imagenet",
        layer: str | Sequence[str] | None = None,
        pooling: str = "avg",
        input_size: int | None = None,
        resize_method: str = "bilinear",
        batch_size: int = 32,
        seed: int = 0,
        dtype: str = "float32",
    ) -> None:
        self.architecture = architecture
        super().__init__(
            weights=weights, layer=layer, pooling=pooling, input_size=input_size,
            resize_method=resize_method, batch_size=batch_size, seed=seed, dtype=dtype,
        )

    # ---------------------------------------------------------------- parameters
    @property
    def _arch(self) -> _Arch:
        return ARCHITECTURES[self.architecture]

    @property
    def backbone_name(self) -> str:  # type: ignore[override]
        return str(self.architecture)

    def _check_own_params(self) -> None:
        check_choice("architecture", self.architecture, ARCHITECTURES)
        if isinstance(self.layer, tuple | list):  # entries checked by check_layer_sequence
            return
        if self.layer is not None and (not isinstance(self.layer, str) or not self.layer):
            raise InvalidTypeError(
                "`layer` must be None, 'predictions' or the name of a layer of "
                f"{self.architecture} (or a tuple or list of such names); received "
                f"{describe(self.layer)}."
            )

    def _native_min_size(self) -> int:
        arch = ARCHITECTURES.get(self.architecture)
        return arch.min_size if arch is not None else int(self.min_input_size)

    def _check_image_size(self, size: tuple[int, int]) -> tuple[int, int]:
        size = super()._check_image_size(size)
        minimum = self._min_size_for_input()
        if minimum is not None and min(size) < minimum:
            raise InvalidInputError(
                f"`image_size` must be at least {minimum}x{minimum} for {self.architecture}; "
                f"received {size[0]}x{size[1]}. Set `input_size` to resize inside the model."
            )
        return size

    def output_dim(self, image_size: tuple[int, int] | None = None) -> int:
        """Width ``d`` of the feature vectors for images of ``image_size``.

        Parameters
        ----------
        image_size : (int, int), optional
            Height and width of the input images; default: 32x32, or the
            architecture's minimum if larger (75x75 for InceptionV3). Irrelevant when
            the extractor resizes to a fixed ``input_size``.
        """
        if image_size is None:
            self._validate_params()
            side = max(32, self._arch.min_size)
            image_size = (side, side)
        return super().output_dim(image_size)

    def _feature_config(self) -> dict[str, Any]:
        return {"architecture": self.architecture, **super()._feature_config()}

    # ---------------------------------------------------------------- the model
    def _build_base(self, size: tuple[int, int]) -> Any:
        return keras_application(self._arch.constructor, size, include_top=self._include_top)

    def _preprocessing(self) -> tuple[str, Callable[[Any], Any]]:
        family = self._arch.family
        return family, functools.partial(preprocess_family, family=family)

    def _imagenet_weights_file(self, size: tuple[int, int]) -> str:
        name, file_hash = _weights_file(self._arch, self._include_top, size)
        url = self._arch.base_url + name
        return fetch_keras_weights(name, url, file_hash, what=self._arch.constructor)

    def _random_init(self, base: Any) -> None:
        seeded_lecun_init(base, int(self.seed))

    def _after_load(self, base: Any) -> None:
        if self.weights == "imagenet" and self.architecture.startswith("EfficientNetB"):
            _fix_efficientnet_imagenet(base)

    def _output_tensor(self, base: Any, layer: Any) -> Any:
        if layer is None or self._include_top:
            return base.output
        try:
            return base.get_layer(layer).output
        except ValueError:
            names = [lay.name for lay in base.layers[1:]]
            if isinstance(self.layer, tuple | list):
                raise InvalidInputError(
                    f"every entry of `layer` must be a layer of {self.architecture} such as "
                    f"{names[-3:]} (see `layer_names()`); received {layer!r} in "
                    f"`layer={self.layer!r}`."
                ) from None
            raise InvalidInputError(
                f"`layer` must be None, 'predictions' or a layer of {self.architecture} "
                f"such as {names[-3:]} (see `layer_names()`); received {layer!r}."
            ) from None

    def _trunk_name(self) -> str:
        return f"{self._arch.constructor.lower()}_features"

    def layer_names(self, image_size: tuple[int, int] | None = None) -> list[str]:
        """Names accepted by ``layer`` (besides None and "predictions"), in model order.

        Parameters
        ----------
        image_size : (int, int), optional
            Size to build the model at; default: the architecture's minimum.
        """
        self._validate_params()
        m = self._arch.min_size
        base = keras_application(self._arch.constructor, image_size or (m, m), include_top=False)
        return [lay.name for lay in base.layers[1:]]


class _FixedArchitecture(KerasApplicationExtractor):
    """A :class:`KerasApplicationExtractor` whose ``architecture`` is a class constant."""

    architecture: str = ""  # set by subclasses; not a constructor parameter

    # The shared parameters with their shared defaults: no ``architecture`` parameter.
    __init__ = FrozenBackbone.__init__


_FIXED_DOC = """Frozen ``keras.applications.{arch}``: :class:`KerasApplicationExtractor` with
    ``architecture="{arch}"`` (registered as ``"{name}"``).

    Preprocessing: {pre}. Minimum input size {min}x{min} (set ``input_size`` to resize
    smaller images inside the model). Parameters as :class:`KerasApplicationExtractor`,
    without ``architecture``.
    """


def _fixed_doc(cls: type[_FixedArchitecture]) -> type[_FixedArchitecture]:
    arch = ARCHITECTURES[cls.architecture]
    cls.min_input_size = arch.min_size
    cls.__doc__ = _FIXED_DOC.format(
        arch=arch.constructor, name=cls.registry_name, pre=PREPROCESSING[arch.family],
        min=arch.min_size,
    )
    return cls


@_fixed_doc
@register_extractor("resnet50")
class ResNet50Extractor(_FixedArchitecture):
    architecture = "ResNet50"


@_fixed_doc
@register_extractor("mobilenet_v2")
class MobileNetV2Extractor(_FixedArchitecture):
    architecture = "MobileNetV2"


@_fixed_doc
@register_extractor("efficientnet_b0")
class EfficientNetB0Extractor(_FixedArchitecture):
    architecture = "EfficientNetB0"


@_fixed_doc
@register_extractor("convnext_tiny")
class ConvNeXtTinyExtractor(_FixedArchitecture):
    architecture = "ConvNeXtTiny"


@_fixed_doc
@register_extractor("densenet121")
class DenseNet121Extractor(_FixedArchitecture):
    architecture = "DenseNet121"


@_fixed_doc
@register_extractor("inception_v3")
class InceptionV3Extractor(_FixedArchitecture):
    architecture = "InceptionV3"


@_fixed_doc
@register_extractor("xception")
class XceptionExtractor(_FixedArchitecture):
    architecture = "Xception"
