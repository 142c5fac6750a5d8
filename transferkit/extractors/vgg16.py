"""Frozen ImageNet VGG-16 as a feature extractor (the talk's transfer-learning backbone)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._hashing import hash_file
from .._lazy import import_keras, import_tf
from .._pipeline import cpu_supports_bf16, keras_dtype_policy
from .._validation import check_choice
from ..exceptions import InvalidInputError, WeightsNotFoundError
from ._base import RESIZE_METHODS, BaseExtractor, validate_backbone_params
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
#: Per-channel means (B, G, R) subtracted by Keras' "caffe" preprocessing.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def keras_weights_path(file_name: str) -> Path:
    """Where Keras keeps a downloaded weights file: ``$KERAS_HOME/models/<file_name>``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models" / file_name


def _resolve_imagenet_weights(include_top: bool) -> str:
    """Local path of VGG-16's ImageNet weights, downloading them if needed."""
    name, md5 = _WEIGHTS[include_top]
    local = keras_weights_path(name)
    if local.is_file():
        return str(local)
    keras = import_keras()
    try:
        return str(
            keras.utils.get_file(name, _BASE_URL + name, cache_subdir="models", file_hash=md5)
        )
    except Exception as exc:  # offline, proxy, disk full...
        raise WeightsNotFoundError(
            f"VGG-16 ImageNet weights are not available: {name} is not in {local.parent} and "
            f"downloading it from {_BASE_URL + name} failed ({type(exc).__name__}: {exc}). "
            f"Download that file on a machine with internet and copy it to {local}, or pass "
            "its path as `weights='/path/to/" + name + "'`; `weights=None` gives randomly "
            "initialised (seeded) weights for testing."
        ) from exc


def load_weights_strictly(model: Any, path: str, *, what: str, include_top: bool) -> None:
    """``model.load_weights(path)``, refusing files that leave any layer unloaded.

    Keras only warns when a weights file lacks some layers ("Skipping ... retain their
    freshly-initialized weights"); features from such a model would be silently wrong.
    """
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as exc:
            raise InvalidInputError(
                f"`weights` file {path!r} could not be loaded into {what} "
                f"(include_top={include_top}): {exc}"
            ) from exc
    skipped = [str(w.message) for w in caught if "Skipping" in str(w.message)
               or "could not be loaded" in str(w.message)]
    if skipped:
        raise InvalidInputError(
            f"`weights` file {path!r} does not hold every layer of {what} "
            f"(include_top={include_top}); Keras reported: {skipped[0][:300]}. Pass a file "
            f"saved from the full {what} model (e.g. `model.save_weights(...)` on "
            "`keras.applications` model), or Keras' own weights file."
        )


def _seeded_init(model: Any, seed: int) -> None:
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


@register_extractor("vgg16")
class VGG16Extractor(BaseExtractor):
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
    layer : str, default="block5_pool"
        Layer whose output becomes the features: any ``block{i}_conv{j}``,
        ``block{i}_pool``, or ``"fc1"``, ``"fc2"``, ``"predictions"`` (these need the
        full 224x224 ImageNet model: ``input_size=224``).
    pooling : {"avg", "max", "flatten"}, default="avg"
        How a convolutional feature map becomes a vector. Ignored for ``fc1``,
        ``fc2`` and ``predictions``, whose outputs already are vectors.
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

    def __init__(
        self,
        *,
        weights: str | os.PathLike[str] | None = "imagenet",
        layer: str = "block5_pool",
        pooling: str = "avg",
        input_size: int | None = None,
        resize_method: str = "bilinear",
        batch_size: int = 64,
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

    # ---------------------------------------------------------------- parameters
    def _validate_params(self) -> None:
        super()._validate_params()
        check_choice("layer", self.layer, LAYERS)
        validate_backbone_params(self, backbone="VGG-16", min_size=self.min_input_size)
        if self._include_top and self.input_size != 224:
            raise InvalidInputError(
                f"`layer={self.layer!r}` needs the full ImageNet model, which takes 224x224 "
                f"images: set `input_size=224`; received input_size={self.input_size}."
            )

    @property
    def _include_top(self) -> bool:
        return self.layer in _TOP_LAYERS

    def _weights_identity(self) -> Any:
        if self.weights is None:
            return {"random_seed": int(self.seed)}
        if self.weights == "imagenet":
            return "imagenet"
        return {"file_hash": hash_file(self.weights)}

    def _feature_config(self) -> dict[str, Any]:
        return {
            "weights": self._weights_identity(),
            "layer": self.layer,
            "pooling": None if self._include_top else self.pooling,
            "input_size": self.input_size,
            "resize_method": self.resize_method if self.input_size else None,
            "preprocessing": "caffe_bgr_mean",
            "dtype": self.dtype,
        }

    def _model_key(self, image_size: tuple[int, int]) -> Any:
        return None if self.input_size else image_size

    # ---------------------------------------------------------------- the model
    def _build_trunk(self, size: tuple[int, int], *, weights: bool = True) -> tuple[Any, Any]:
        """``(trunk, base)``: the feature model and the full VGG-16 it is cut from.

        ``weights=False`` builds the float32 architecture alone (for counting).
        """
        keras = import_keras()
        with keras_dtype_policy(self.dtype if weights else "float32"):
            base = keras.applications.VGG16(
                include_top=self._include_top, weights=None, input_shape=(*size, 3)
            )
        if weights and self.weights is None:
            _seeded_init(base, int(self.seed))
        elif weights:
            path = (
                _resolve_imagenet_weights(self._include_top)
                if self.weights == "imagenet"
                else os.fspath(self.weights)
            )
            load_weights_strictly(base, path, what="VGG-16", include_top=self._include_top)
        base.trainable = False
        out = base.get_layer(self.layer).output
        if not self._include_top:
            pool = {  # float32 layers: bfloat16 maps are pooled in float32
                "avg": keras.layers.GlobalAveragePooling2D(dtype="float32"),
                "max": keras.layers.GlobalMaxPooling2D(dtype="float32"),
                "flatten": keras.layers.Flatten(dtype="float32"),
            }[self.pooling]
            out = pool(out)
        return keras.Model(base.input, out, name=f"vgg16_{self.layer}"), base

    def _cost_model(self, image_size: tuple[int, int]) -> Any:
        size = (self.input_size, self.input_size) if self.input_size else image_size
        return self._build_trunk(size, weights=False)[0]

    def _build_forward(self, image_size: tuple[int, int]) -> Any:
        tf = import_tf()
        size = (self.input_size, self.input_size) if self.input_size else image_size
        _warn_if_emulated_bf16(self.dtype)
        trunk, base = self._build_trunk(size)
        mean = tf.constant(_CAFFE_MEAN_BGR, dtype=tf.float32)
        resize = self.input_size is not None
        method = self.resize_method

        def forward(x: Any) -> Any:
            x = tf.cast(x, tf.float32)
            if resize:
                x = tf.image.resize(x, size, method=method)
            x = x[..., ::-1] - mean  # RGB -> BGR, zero-centred per channel (Keras "caffe")
            return tf.cast(trunk(x, training=False), tf.float32)

        forward.model = trunk  # type: ignore[attr-defined]
        forward.base = base  # type: ignore[attr-defined]
        return forward

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """VGG-16's preprocessing as NumPy, returning a new array (for inspection).

        Equivalent to ``keras.applications.vgg16.preprocess_input`` on a copy.
        """
        x = np.asarray(images, dtype=np.float32)[..., ::-1]
        return x - np.asarray(_CAFFE_MEAN_BGR, dtype=np.float32)


def _warn_if_emulated_bf16(dtype: str) -> None:
    """Warn when bfloat16 is asked for on a CPU that only emulates it (slow)."""
    if dtype != "float32" and not cpu_supports_bf16():
        import warnings

        warnings.warn(
            f"`dtype={dtype!r}`: this CPU has no native bfloat16 (AVX-512 BF16 or AMX), so "
            "TensorFlow emulates it, usually slower than float32. Use dtype='float32' here.",
            UserWarning,
            stacklevel=3,
        )
