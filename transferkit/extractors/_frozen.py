"""What every frozen pretrained backbone shares: :class:`FrozenBackbone` and its helpers.

A frozen backbone is a Keras architecture with fixed weights, cut at a layer, whose
feature map is pooled to a vector. :class:`FrozenBackbone` holds everything that does
not depend on the architecture: the shared parameters (``weights``, ``layer``,
``pooling``, ``input_size``, ``resize_method``, ``batch_size``, ``seed``, ``dtype``) and
their checks, the weights' identity in the fingerprint, finding the weights file
before anything is built, strict loading, seeded random weights, the compute dtype,
resizing and preprocessing inside the model, pooling, and the architecture alone for
:meth:`~BaseExtractor.estimate`. A subclass says what differs: how to build the Keras
model (:meth:`~FrozenBackbone._build_base`), which layers it offers, its preprocessing
(:meth:`~FrozenBackbone._preprocessing`) and where its ImageNet weights come from
(:meth:`~FrozenBackbone._imagenet_weights_file`).

Invariants the feature cache relies on (changing any of them changes features, so it
needs a new ``FEATURE_VERSION`` or a new fingerprint entry):

- The fingerprint's configuration is ``weights`` (:meth:`FrozenBackbone._weights_identity`),
  ``layer`` (the name; a list of the names when there are several), ``pooling`` (``None``
  for the classifier's outputs), ``input_size``,
  ``resize_method`` (``None`` without resizing), the preprocessing's name, any
  :attr:`FrozenBackbone.extra_config`, and ``dtype``, in that order, after the
  subclass's own leading entries.
- The forward function casts to float32, resizes (``tf.image.resize``) when
  ``input_size`` is set, preprocesses, runs the model and returns float32 features;
  pooling layers compute in float32 whatever the dtype. With several layers, each map is
  pooled on its own and the vectors are concatenated in the order of ``layer``;
  ``"avgmax"`` pooling concatenates the average and the maximum, ``[avg, max]``.
- ``weights=None`` initialises from ``numpy.random.default_rng(seed)`` alone, never
  from a global RNG, so equal seeds give equal weights on every machine.
- Weights files are resolved (downloaded, converted) before the model is built and
  outside the dtype policy, then loaded strictly: a file that leaves any layer
  unloaded is refused rather than giving silently wrong features.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._hashing import hash_file
from .._lazy import import_keras, import_tf
from .._pipeline import COMPUTE_DTYPES, cpu_supports_bf16, keras_dtype_policy
from .._validation import check_choice, check_positive_int, describe
from ..exceptions import InvalidInputError, InvalidTypeError, WeightsNotFoundError
from ._base import BaseExtractor

__all__ = [
    "POOLINGS",
    "PREPROCESSING",
    "RESIZE_METHODS",
    "FrozenBackbone",
    "check_layer_sequence",
    "fetch_keras_weights",
    "flat_model",
    "keras_application",
    "keras_weights_path",
    "layer_list",
    "load_weights_strictly",
    "pool_features",
    "preprocess_family",
    "seeded_glorot_init",
    "seeded_lecun_init",
    "validate_backbone_params",
    "warn_if_emulated_bf16",
]

#: Ways a feature map becomes a vector, for the frozen backbones ("avgmax": the average
#: and the maximum of each channel, concatenated as [avg, max]).
POOLINGS = ("avg", "max", "flatten", "avgmax")
#: Interpolations for resizing inside the model, as in ``tf.image.resize``.
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "gaussian")

#: Preprocessing families, as ``keras.applications.imagenet_utils.preprocess_input`` modes.
PREPROCESSING = {
    "caffe": "RGB->BGR, minus the ImageNet channel means (103.939, 116.779, 123.68)",
    "tf": "x / 127.5 - 1",
    "torch": "x / 255, minus (0.485, 0.456, 0.406), divided by (0.229, 0.224, 0.225)",
    "none": "none: the model rescales/normalises inside",
}
#: Per-channel means (B, G, R) subtracted by Keras' "caffe" preprocessing.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------
# Parameters and preprocessing
# ------------------------------------------------------------------------------------
def validate_backbone_params(extractor: Any, *, backbone: str, min_size: int) -> None:
    """Check the parameters every frozen pretrained backbone shares.

    ``pooling``, ``resize_method``, ``dtype``, ``input_size`` (at least ``min_size``),
    ``seed``, and ``weights`` (``"imagenet"``, ``None`` or an existing file). Messages
    name the argument and the received value.
    """
    check_choice("pooling", extractor.pooling, POOLINGS)
    check_choice("resize_method", extractor.resize_method, RESIZE_METHODS)
    check_choice("dtype", extractor.dtype, COMPUTE_DTYPES)
    check_positive_int("input_size", extractor.input_size, allow_none=True)
    if extractor.input_size is not None and extractor.input_size < min_size:
        raise InvalidInputError(
            f"`input_size` must be at least {min_size} for {backbone}; "
            f"received {extractor.input_size}."
        )
    seed = extractor.seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InvalidTypeError(f"`seed` must be an integer; received {describe(seed)}.")
    w = extractor.weights
    if w is None or w == "imagenet":
        return
    if not isinstance(w, str | os.PathLike):
        raise InvalidTypeError(
            "`weights` must be 'imagenet', None or a path to a weights file; "
            f"received {describe(w)}."
        )
    if not Path(w).is_file():
        raise WeightsNotFoundError(
            f"`weights` must be 'imagenet', None or the path of an existing weights file; "
            f"received {str(w)!r}, which does not exist."
        )


def layer_list(layer: Any) -> list[Any]:
    """``layer`` as a list of names: ``[layer]`` for one name (or ``None``), else its items.

    A tuple and a list of the same names give the same list, which is what the
    fingerprint records for several layers.
    """
    return list(layer) if isinstance(layer, tuple | list) else [layer]


def check_layer_sequence(layer: Any) -> None:
    """Check a tuple or list ``layer`` (several layers at once); other values pass.

    It must hold at least one name, every entry a non-empty string, no name twice, and
    not ``"predictions"`` next to other layers (the classifier's probabilities are a
    model of their own). Messages name ``layer`` and the bad entry.
    """
    if not isinstance(layer, tuple | list):
        return
    if not layer:
        raise InvalidInputError(
            f"`layer` must name at least one layer; received an empty {type(layer).__name__}."
        )
    for entry in layer:
        if not isinstance(entry, str) or not entry:
            raise InvalidTypeError(
                "every entry of `layer` must be a layer name (a non-empty string); received "
                f"{describe(entry)} in `layer={layer!r}`."
            )
    seen: set[str] = set()
    for entry in layer:
        if entry in seen:
            raise InvalidInputError(
                f"`layer` names {entry!r} twice; each layer may appear once. Received "
                f"`layer={layer!r}`."
            )
        seen.add(entry)
    if "predictions" in seen and len(layer) > 1:
        raise InvalidInputError(
            "`layer` cannot combine 'predictions' (the classifier's probabilities) with "
            f"other layers; pass `layer='predictions'` alone. Received `layer={layer!r}`."
        )


def pool_features(x: Any, pooling: str, *, name: str | None = None) -> Any:
    """A feature map (n, h, w, c) pooled to vectors by float32 Keras layers.

    ``"avg"``: (n, c), ``"max"``: (n, c), ``"avgmax"``: (n, 2c), the average then the
    maximum of each channel; ``"flatten"``: (n, h * w * c). ``name`` prefixes the
    layers' names (Keras names them when it is ``None``). bfloat16 maps are pooled in
    float32.
    """
    keras = import_keras()

    def named(suffix: str) -> dict[str, str]:
        return {} if name is None else {"name": f"{name}_{suffix}"}

    if pooling == "avgmax":
        avg = keras.layers.GlobalAveragePooling2D(dtype="float32", **named("avg"))(x)
        top = keras.layers.GlobalMaxPooling2D(dtype="float32", **named("max"))(x)
        return keras.layers.Concatenate(dtype="float32", **named("avgmax"))([avg, top])
    layer = {
        "avg": keras.layers.GlobalAveragePooling2D,
        "max": keras.layers.GlobalMaxPooling2D,
        "flatten": keras.layers.Flatten,
    }[pooling]
    return layer(dtype="float32", **named(pooling))(x)


def preprocess_family(x: Any, family: str) -> Any:
    """Apply a ``keras.applications`` preprocessing family to a float32 RGB batch.

    Works on TensorFlow tensors and NumPy arrays alike, always returning a new value.

    Parameters
    ----------
    x : float32 tensor or array of shape (n, h, w, 3), RGB in [0, 255]
    family : {"caffe", "tf", "torch", "none"}
        See :data:`PREPROCESSING`.
    """
    if family == "caffe":
        return x[..., ::-1] - np.asarray(_CAFFE_MEAN_BGR, np.float32)
    if family == "tf":
        return x / np.float32(127.5) - np.float32(1.0)
    if family == "torch":
        mean = np.asarray(_TORCH_MEAN, np.float32)
        std = np.asarray(_TORCH_STD, np.float32)
        return (x / np.float32(255.0) - mean) / std
    if family == "none":
        return x + np.float32(0.0)  # a copy for NumPy input
    raise InvalidInputError(  # pragma: no cover - the tables only hold known families
        f"`family` must be one of {list(PREPROCESSING)}; received {family!r}."
    )


def warn_if_emulated_bf16(dtype: str) -> None:
    """Warn when bfloat16 is asked for on a CPU that only emulates it (slow)."""
    if dtype != "float32" and not cpu_supports_bf16():
        warnings.warn(
            f"`dtype={dtype!r}`: this CPU has no native bfloat16 (AVX-512 BF16 or AMX), so "
            "TensorFlow emulates it, usually slower than float32. Use dtype='float32' here.",
            UserWarning,
            stacklevel=3,
        )


# ------------------------------------------------------------------------------------
# Weights: finding, loading, seeded random initialisation
# ------------------------------------------------------------------------------------
def keras_weights_path(file_name: str) -> Path:
    """Where Keras keeps a downloaded weights file: ``$KERAS_HOME/models/<file_name>``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models" / file_name


def fetch_keras_weights(name: str, url: str, file_hash: str | None, *, what: str) -> str:
    """Local path of a ``keras.applications`` weights file, downloading it if needed.

    Parameters
    ----------
    name : str
        File name, looked for in :func:`keras_weights_path` first.
    url : str
        Where ``keras.utils.get_file`` downloads it from.
    file_hash : str or None
        The MD5 or SHA-256 that Keras checks.
    what : str
        The network, for the error message ("VGG-16").

    Raises
    ------
    WeightsNotFoundError
        If the file is not there and cannot be downloaded; the message names the file
        and the folder to copy it to.
    """
    local = keras_weights_path(name)
    if local.is_file():
        return str(local)
    keras = import_keras()
    try:
        return str(keras.utils.get_file(name, url, cache_subdir="models", file_hash=file_hash))
    except Exception as exc:  # offline, proxy, disk full...
        raise WeightsNotFoundError(
            f"{what} ImageNet weights are not available: {name} is not in {local.parent} and "
            f"downloading it from {url} failed ({type(exc).__name__}: {exc}). Download that "
            f"file on a machine with internet and copy it to {local}, or pass its path as "
            f"`weights='/path/to/{name}'`; `weights=None` gives randomly initialised "
            "(seeded) weights for testing."
        ) from exc


def load_weights_strictly(
    model: Any, path: str, *, what: str, include_top: bool | None = None
) -> None:
    """``model.load_weights(path)``, refusing files that leave any layer unloaded.

    Keras only warns when a weights file lacks some layers ("Skipping ... retain their
    freshly-initialized weights"); features from such a model would be silently wrong.
    ``what`` names the model in messages, with ``include_top`` unless it is ``None``.
    """
    top = "" if include_top is None else f" (include_top={include_top})"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as exc:
            raise InvalidInputError(
                f"`weights` file {path!r} could not be loaded into {what}{top}: {exc}"
            ) from exc
    skipped = [str(w.message) for w in caught if "Skipping" in str(w.message)
               or "could not be loaded" in str(w.message)]
    if skipped:
        raise InvalidInputError(
            f"`weights` file {path!r} does not hold every layer of {what}{top}; Keras "
            f"reported: {skipped[0][:300]}. Pass a file saved from the full {what} model "
            "(e.g. `model.save_weights(...)` on `keras.applications` model), or Keras' own "
            "weights file."
        )


def seeded_glorot_init(model: Any, seed: int) -> None:
    """Deterministic Glorot-uniform kernels and zero biases, independent of global RNGs."""
    rng = np.random.default_rng(seed)
    for var in model.weights:
        shape = tuple(var.shape)
        if len(shape) <= 1:
            value = np.zeros(shape, dtype=np.float32)
        else:
            receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            value = rng.uniform(-limit, limit, size=shape).astype(np.float32)
        var.assign(value)


def seeded_lecun_init(model: Any, seed: int) -> None:
    """Deterministic kernels, independent of global RNGs.

    Every kernel (a variable of 2 or more dimensions) gets LeCun-uniform values from
    ``numpy.random.default_rng(seed)``; 1-D variables keep the constant values Keras
    built them with (zero biases, unit BN scales, layer scales...).
    """
    rng = np.random.default_rng(seed)
    for var in model.weights:
        shape = tuple(int(d) for d in var.shape)
        if len(shape) < 2:
            continue
        if len(shape) == 4:
            kh, kw, cin, cout = shape
            fan_in = kh * kw * (1 if cout == 1 else cin)  # depthwise kernels: (k, k, C, 1)
        else:
            fan_in = int(np.prod(shape[:-1]))
        limit = np.sqrt(3.0 / max(1, fan_in))
        var.assign(rng.uniform(-limit, limit, size=shape).astype(np.float32))


def keras_application(constructor: str, size: tuple[int, int], *, include_top: bool) -> Any:
    """``keras.applications.<constructor>`` at ``size``, without weights (never downloads)."""
    keras = import_keras()
    return getattr(keras.applications, constructor)(
        include_top=include_top, weights=None, input_shape=(*size, 3)
    )


def flat_model(
    trunk: Any, images: Any, prepared: Any, *, skip: Any = (), copy: bool = False
) -> Any:
    """``trunk``'s layers called on ``prepared`` (computed from ``images``), as one flat model.

    Returns a frozen (``trainable = False``) ``keras.Model`` from ``images`` whose layers
    are ``trunk``'s layers, not one nested model, so ``get_layer`` finds them by name.
    ``copy=False`` uses ``trunk``'s own layer objects (for a trunk the caller owns);
    ``copy=True`` uses new layers, built from their configurations, with copies of the
    weights. Layers named in ``skip`` are left out: their input passes through. A float32
    cast ends the model when the output is not float32.
    """
    keras = import_keras()
    skipped = set(skip)

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = keras.tree.map_structure(
            lambda t: prepared if t is images else t, (args, kwargs))
        if layer.name in skipped:
            return args[0]
        return layer(*args, **kwargs)

    model = keras.models.clone_model(
        trunk, input_tensors=images, call_function=call,
        clone_function=None if copy else (lambda layer: layer))
    if copy:
        for layer in model.layers:
            if layer.weights:
                layer.set_weights(trunk.get_layer(layer.name).get_weights())
    out = model.output
    if keras.backend.standardize_dtype(out.dtype) != "float32":
        out = keras.layers.Activation("linear", dtype="float32", name="features_float32")(out)
        model = keras.Model(images, out, name=trunk.name)
    model.trainable = False
    return model


# ------------------------------------------------------------------------------------
# The base class
# ------------------------------------------------------------------------------------
class FrozenBackbone(BaseExtractor):
    """Base class of the frozen pretrained backbones (VGG-16, EfficientNet-Lite0, ...).

    A subclass whose defaults differ from these defines its own keyword-only
    ``__init__`` (scikit-learn reads the parameters and their defaults from its
    signature) that passes every parameter on to this one. It sets :attr:`backbone_name`
    and :attr:`layer_choices`, and implements :meth:`_build_base`, :meth:`_preprocessing`
    and :meth:`_imagenet_weights_file`; the other hooks have defaults that fit a
    ``keras.applications``-style model. ``tests/test_extractors.py`` has a complete
    example in about 30 lines (``_TinyBackbone``).

    ``layer`` is one layer name, or a tuple or list of names: each layer's map is then
    pooled on its own (with ``pooling``) and the vectors are concatenated in the order
    given. The parameter is stored as given (scikit-learn's ``clone`` requires it); a
    sequence of one name is the same extractor as that name (same features, same
    fingerprint).
    """

    #: The network's name in messages ("VGG-16").
    backbone_name: ClassVar[str] = ""
    #: Accepted ``layer`` values; ``None`` when :meth:`_check_own_params` checks ``layer``.
    layer_choices: ClassVar[tuple[str, ...] | None] = None
    #: Constant entries of the fingerprint's configuration after the preprocessing.
    extra_config: ClassVar[dict[str, Any]] = {}
    #: Whether the model is built without its classifier unless ``layer`` needs it, so
    #: that weights files exist with and without it (``include_top`` in messages).
    top_is_optional: ClassVar[bool] = True

    def __init__(
        self,
        *,
        weights: str | os.PathLike[str] | None = "imagenet",
        layer: str | Sequence[str] | None = None,
        pooling: str = "avg",
        input_size: int | None = None,
        resize_method: str = "bilinear",
        batch_size: int = 32,
        seed: int = 0,
        dtype: str = "float32",
    ) -> None:
        self.weights = weights
        self.layer = layer
        self.pooling = pooling
        self.input_size = input_size
        self.resize_method = resize_method
        self.batch_size = batch_size
        self.seed = seed
        self.dtype = dtype

    # ---------------------------------------------------------------- subclass API
    def _build_base(self, size: tuple[int, int]) -> Any:
        """The full Keras model at ``size`` (built under the dtype policy, no weights)."""
        raise NotImplementedError

    def _preprocessing(self) -> tuple[str, Callable[[Any], Any]]:
        """``(name, function)``: the name enters the fingerprint; the function maps a
        float32 RGB batch in [0, 255] (tensor or array) to the model's input, as a new
        value."""
        raise NotImplementedError

    def _imagenet_weights_file(self, size: tuple[int, int]) -> str:
        """Local path of the Keras ImageNet weights for a model at ``size``."""
        raise NotImplementedError

    def _check_own_params(self) -> None:
        """Check the parameters particular to this backbone (before the shared ones).

        Runs after :func:`check_layer_sequence`, so a tuple or list ``layer`` holds
        distinct non-empty strings.
        """
        if self.layer_choices is None:
            return
        if not isinstance(self.layer, tuple | list):
            check_choice("layer", self.layer, self.layer_choices)
            return
        for name in self.layer:
            if name not in self.layer_choices:
                raise InvalidInputError(
                    f"every entry of `layer` must be one of {list(self.layer_choices)}; "
                    f"received {name!r} in `layer={self.layer!r}`."
                )

    def _layer_names(self) -> list[Any]:
        """The layers whose outputs become the features, in order (see :func:`layer_list`)."""
        return layer_list(self.layer)

    @property
    def _include_top(self) -> bool:
        """Whether the features come from the classifier (the model with its top)."""
        return "predictions" in self._layer_names()

    def _output_tensor(self, base: Any, layer: Any) -> Any:
        """The tensor of ``base`` for one entry of ``layer`` (before pooling)."""
        return base.get_layer(layer).output

    def _trunk_name(self) -> str:
        return f"{self.registry_name}_{'_'.join(map(str, self._layer_names()))}"

    def _random_init(self, base: Any) -> None:
        """Seeded random weights for ``weights=None``."""
        seeded_glorot_init(base, int(self.seed))

    def _after_load(self, base: Any) -> None:
        """Adjust a model whose weights were just loaded from a file (default: nothing)."""

    def _file_identity(self, path: Any) -> Any:
        """The identity of a weights file in the fingerprint."""
        return {"file_hash": hash_file(path)}

    def _imagenet_identity(self) -> Any:
        """The identity of the ImageNet weights in the fingerprint."""
        return "imagenet"

    def _keras_weights_file(self, size: tuple[int, int] = (224, 224)) -> str:
        """The Keras weights file to load (``weights`` is not ``None``), found first."""
        if self.weights == "imagenet":
            return self._imagenet_weights_file(size)
        return os.fspath(self.weights)

    # ---------------------------------------------------------------- parameters
    def _validate_params(self) -> None:
        super()._validate_params()
        check_layer_sequence(self.layer)
        self._check_own_params()
        validate_backbone_params(
            self, backbone=self.backbone_name, min_size=self._native_min_size()
        )

    def _weights_identity(self) -> Any:
        if self.weights is None:
            return {"random_seed": int(self.seed)}
        if self.weights == "imagenet":
            return self._imagenet_identity()
        return self._file_identity(self.weights)

    def _feature_config(self) -> dict[str, Any]:
        names = self._layer_names()
        several = len(names) > 1
        return {
            "weights": self._weights_identity(),
            # one name as itself (the fingerprints of single layers never change);
            # several as a list, so a tuple and a list of the same names agree
            "layer": names if several else names[0],
            "pooling": None if self._include_top and not several else self.pooling,
            "input_size": self.input_size,
            "resize_method": self.resize_method if self.input_size else None,
            "preprocessing": self._preprocessing()[0],
            **self.extra_config,
            "dtype": self.dtype,
        }

    def _model_key(self, image_size: tuple[int, int]) -> Any:
        return None if self.input_size else image_size

    def _model_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        return (self.input_size, self.input_size) if self.input_size else image_size

    # ---------------------------------------------------------------- the model
    def _build_models(self, size: tuple[int, int], *, weights: bool = True) -> tuple[Any, Any]:
        """``(trunk, base)``: the feature model and the full model it is cut from.

        ``weights=False`` builds the float32 architecture alone (for counting).
        """
        keras = import_keras()
        path = None
        if weights and self.weights is not None:  # find (fetch, convert) the file first
            path = self._keras_weights_file(size)
        with keras_dtype_policy(self.dtype if weights else "float32"):
            base = self._build_base(size)
        if weights and path is None:
            self._random_init(base)
        elif path is not None:
            top = self._include_top if self.top_is_optional else None
            load_weights_strictly(base, path, what=self.backbone_name, include_top=top)
            self._after_load(base)
        base.trainable = False
        names = self._layer_names()
        several = len(names) > 1
        vectors = []
        for i, name in enumerate(names):
            out = self._output_tensor(base, name)
            if len(out.shape) == 4 and (several or not self._include_top):
                # float32 layers: bfloat16 maps are pooled in float32
                out = pool_features(out, self.pooling,
                                    name=f"features_{i}_pool" if several else None)
            elif len(out.shape) > 2:
                out = keras.layers.Flatten(dtype="float32")(out)
            vectors.append(out)
        if several:
            out = keras.layers.Concatenate(dtype="float32", name="features_concat")(vectors)
        return keras.Model(base.input, out, name=self._trunk_name()), base

    def _build_trunk(self, size: tuple[int, int], *, weights: bool = True) -> Any:
        """The feature model; ``weights=False`` builds the float32 architecture alone."""
        return self._build_models(size, weights=weights)[0]

    def _cost_model(self, image_size: tuple[int, int]) -> Any:
        return self._build_trunk(self._model_size(image_size), weights=False)

    def _build_forward(self, image_size: tuple[int, int]) -> Any:
        tf = import_tf()
        size = self._model_size(image_size)
        warn_if_emulated_bf16(self.dtype)
        trunk, base = self._build_models(size)
        resize = self.input_size is not None
        method = self.resize_method
        preprocess = self._preprocessing()[1]

        # Traced once: the outer function (cast, resize) is traced per input dtype and
        # size, but this graph of the backbone is reused by every trace.
        @tf.function(input_signature=[tf.TensorSpec((None, *size, 3), tf.float32)])
        def backbone(x: Any) -> Any:
            return tf.cast(trunk(preprocess(x), training=False), tf.float32)

        def forward(x: Any) -> Any:
            x = tf.cast(x, tf.float32)
            if resize:
                x = tf.image.resize(x, size, method=method)
            return backbone(x)

        forward.model = trunk  # type: ignore[attr-defined]
        forward.base = base  # type: ignore[attr-defined]
        return forward

    def feature_model(self, image_size: tuple[int, int] | None = None) -> Any:
        """A new trainable Keras model of the backbone, equal to :meth:`transform`.

        See :meth:`BaseExtractor.feature_model`. The layers are: the input ``"images"``,
        ``"resize_images"`` (:class:`~transferkit.extractors._layers.ResizeImages`, only
        when ``input_size`` is set), ``"backbone_preprocessing"``
        (:class:`~transferkit.extractors._layers.BackbonePreprocessing`), the backbone's
        own layers up to ``layer``, the pooling layer (float32) and, for outputs that are
        not float32 under a bfloat16 ``dtype``, a float32 cast (``"features_float32"``).
        """
        keras = import_keras()
        from ._layers import BackbonePreprocessing, ResizeImages, register_preprocessing

        size = self._feature_model_size(image_size)
        model_size = self._model_size(size)
        warn_if_emulated_bf16(self.dtype)
        trunk = self._build_models(model_size)[0]  # new layers, new weights, under the policy
        name, function = self._preprocessing()
        register_preprocessing(name, function)  # no-op for the built-in backbones' names
        images = keras.Input((*size, 3), dtype="float32", name="images")
        x = images
        if self.input_size is not None:
            x = ResizeImages(model_size, self.resize_method, dtype="float32",
                             name="resize_images")(x)
        x = BackbonePreprocessing(name, dtype="float32", name="backbone_preprocessing")(x)
        return flat_model(trunk, images, x)

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """The backbone's preprocessing as NumPy, on a new float32 array (for inspection).

        The forward function applies the same computation inside the model (after
        resizing, if ``input_size`` is set); ``images`` is never modified.

        Parameters
        ----------
        images : array-like of shape (n, height, width, 3)
            RGB images in [0, 255].

        Returns
        -------
        ndarray of shape (n, height, width, 3), float32
        """
        self._validate_params()
        function = self._preprocessing()[1]
        return np.asarray(function(np.asarray(images, dtype=np.float32)), dtype=np.float32)
