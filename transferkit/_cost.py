"""Compute and storage costs of an extraction, known before it runs.

:func:`count_macs` walks a Keras model's layers and counts multiply-accumulates
(MACs) of convolutions (regular, depthwise, separable, transposed) and dense layers,
the layers that carry nearly all of a CNN's arithmetic. One MAC is two floating-point
operations (a multiply and an add), so ``FLOPs = 2 x MACs``. Papers and model zoos
quote either; VGG-16 at 224x224, for instance, is 15.47 G MACs = 30.9 GFLOPs.
Biases, batch normalisation, activations, pooling, resizing and preprocessing are
not counted (together well under 1% for these backbones).

:class:`CostEstimate` is what :meth:`BaseExtractor.estimate
<transferkit.extractors.BaseExtractor.estimate>` returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["CostEstimate", "count_macs", "feature_cache_bytes", "chunk_rows"]

#: Target size of one HDF5 chunk of a feature array (the cache's layout).
CHUNK_BYTES = 1 << 20
#: Bytes an entry takes besides its feature rows: groups, attributes (the extractor's
#: configuration as JSON, versions), the progress counter and the chunk index.
_ENTRY_OVERHEAD = 16 * 1024
#: Bytes of chunk index per chunk (B-tree entry) and fletcher32 checksum.
_PER_CHUNK = 64


def chunk_rows(n: int, d: int, batch_size: int | None = None) -> int:
    """Rows per HDF5 chunk of an ``(n, d)`` float32 feature array (at most about 1 MiB).

    With ``batch_size`` (how the rows are written), a divisor of it: every batch then
    fills whole chunks of its own, and a chunk is written once, never rewritten when a
    later batch arrives. So a process killed while writing a batch can damage only
    that batch's chunks, never the rows of the batches flushed before it.
    """
    limit = max(1, min(int(n), CHUNK_BYTES // (4 * max(1, int(d)))))
    if batch_size is None:
        return limit
    bs = max(1, int(batch_size))
    return max(r for r in range(1, min(bs, limit) + 1) if bs % r == 0)


def feature_cache_bytes(
    n: int, d: int, *, labels: bool = False, batch_size: int | None = None
) -> int:
    """Expected bytes on disk of a cache entry of ``n`` float32 feature vectors of width ``d``.

    Whole chunks are allocated, so the last one counts in full; ``labels`` adds one
    int64 per image; ``batch_size`` as for :func:`chunk_rows`.
    """
    rows = chunk_rows(n, d, batch_size)
    chunks = math.ceil(n / rows)
    return chunks * (rows * d * 4 + _PER_CHUNK) + _ENTRY_OVERHEAD + (8 * n if labels else 0)


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(s) if s is not None else 1 for s in tensor.shape)


def _nodes(layer: Any) -> list[tuple[Any, Any]]:
    """(input tensor, output tensor) of each call of ``layer`` in its graph."""
    try:
        return [(layer.input, layer.output)]
    except (AttributeError, ValueError):  # called several times, or never
        out = []
        for node in getattr(layer, "_inbound_nodes", []):
            ins, outs = node.input_tensors, node.output_tensors
            if ins and outs:
                out.append((ins[0], outs[0]))
        return out


def count_macs(model: Any) -> tuple[int, int]:
    """Multiply-accumulates per image, and the largest activation's element count.

    Parameters
    ----------
    model : keras.Model
        A functional or sequential model built for a fixed input size (nested models
        are walked too). The batch dimension is ignored: counts are per image.

    Returns
    -------
    macs : int
        Multiply-accumulates of one image through every convolution and dense layer.
    largest_activation : int
        Elements (per image) of the largest layer output: what a batch's activation
        memory scales with.
    """
    from ._lazy import import_keras

    layers = import_keras().layers
    macs = 0
    largest = 0
    for layer in model.layers:
        if hasattr(layer, "layers") and hasattr(layer, "inputs"):  # a nested model
            inner, inner_largest = count_macs(layer)
            macs += inner
            largest = max(largest, inner_largest)
            continue
        for x, y in _nodes(layer):
            if isinstance(x, list | tuple):
                x = x[0] if x else y  # an InputLayer has no input
            if isinstance(y, list | tuple):
                y = y[0]
            in_shape, out_shape = _shape(x), _shape(y)
            largest = max(largest, math.prod(out_shape[1:]))
            macs += _macs(layers, layer, in_shape, out_shape)
    return int(macs), int(largest)


def _macs(layers: Any, layer: Any, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    first = getattr(layer, "data_format", "channels_last") == "channels_first"

    def split(shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
        return (shape[2:], shape[1]) if first else (shape[1:-1], shape[-1])

    if isinstance(layer, layers.DepthwiseConv2D | getattr(layers, "DepthwiseConv1D", ())):
        out_sp, _ = split(out_shape)
        _, c_in = split(in_shape)
        return math.prod(out_sp) * c_in * layer.depth_multiplier * math.prod(layer.kernel_size)
    if isinstance(layer, layers.SeparableConv2D | layers.SeparableConv1D):
        out_sp, c_out = split(out_shape)
        _, c_in = split(in_shape)
        mid = c_in * layer.depth_multiplier
        return math.prod(out_sp) * mid * (math.prod(layer.kernel_size) + c_out)
    if isinstance(layer, layers.Conv2DTranspose | layers.Conv1DTranspose | layers.Conv3DTranspose):
        in_sp, c_in = split(in_shape)
        _, c_out = split(out_shape)
        return math.prod(in_sp) * c_in * c_out * math.prod(layer.kernel_size)
    if isinstance(layer, layers.Conv1D | layers.Conv2D | layers.Conv3D):
        out_sp, c_out = split(out_shape)
        _, c_in = split(in_shape)
        groups = int(getattr(layer, "groups", 1) or 1)
        return math.prod(out_sp) * c_out * math.prod(layer.kernel_size) * c_in // groups
    if isinstance(layer, layers.Dense):
        return math.prod(in_shape[1:-1]) * in_shape[-1] * int(layer.units)
    return 0


@dataclass(frozen=True)
class CostEstimate:
    """The cost of extracting features, computed before running (see ``estimate``).

    Attributes
    ----------
    extractor : str
        Registry name of the extractor.
    n_images : int
    image_size : (int, int)
        Height and width of the images given.
    model_input_size : (int, int)
        What the backbone sees (after resizing to ``input_size``, if set).
    macs_per_image : int or None
        Multiply-accumulates of one image (convolutions and dense layers). ``None``
        when the extractor has no Keras model to count.
    flops_per_image : int or None
        ``2 * macs_per_image``.
    total_flops : int or None
        ``n_images * flops_per_image``.
    feature_dim : int
        Width ``d`` of the feature vectors.
    feature_bytes : int
        ``n_images * d * 4``: the float32 features themselves.
    cache_bytes : int
        Expected size on disk of the feature cache entry (features in whole ~1 MiB
        chunks, checksums, metadata).
    activation_bytes_per_image : int or None
        Bytes of the largest activation of one image in the compute dtype; a batch of
        ``b`` images needs a few times ``b`` times this.
    batch_size : int
        The extractor's batch size.
    dtype : str
        Compute dtype.
    native_flops_per_image : int or None
        FLOPs per image at the images' own size without resizing (when the
        extractor resizes to ``input_size`` and the backbone accepts that size).
    """

    extractor: str
    n_images: int
    image_size: tuple[int, int]
    model_input_size: tuple[int, int]
    macs_per_image: int | None
    flops_per_image: int | None
    total_flops: int | None
    feature_dim: int
    feature_bytes: int
    cache_bytes: int
    activation_bytes_per_image: int | None
    batch_size: int
    dtype: str
    native_flops_per_image: int | None = None

    @property
    def resize_factor(self) -> float | None:
        """Compute at ``model_input_size`` over compute at the native size (e.g. 49.0)."""
        if not self.native_flops_per_image or self.flops_per_image is None:
            return None
        return self.flops_per_image / self.native_flops_per_image

    def seconds_at(self, flops_per_second: float) -> float | None:
        """Expected backbone time at a sustained rate of ``flops_per_second``."""
        if self.total_flops is None:
            return None
        return self.total_flops / float(flops_per_second)

    def summary(self) -> str:
        """A few human-readable lines."""
        h, w = self.image_size
        mh, mw = self.model_input_size
        size = f"{h}x{w}" if (h, w) == (mh, mw) else f"{h}x{w} resized to {mh}x{mw}"
        lines = [f"{self.extractor} ({self.dtype}) on {self.n_images:,} images of {size}:"]
        if self.flops_per_image is None:
            lines.append("  FLOPs: not counted (no Keras model to walk)")
        else:
            lines.append(
                f"  {_si(self.flops_per_image)}FLOPs per image "
                f"({_si(self.macs_per_image or 0)} multiply-adds), "
                f"{_si(self.total_flops or 0)}FLOPs in total"
            )
        factor = self.resize_factor
        if factor is not None:
            lines.append(
                f"  resizing costs {factor:.1f}x the compute at the native {h}x{w} "
                f"({_si(self.native_flops_per_image or 0)}FLOPs per image)"
            )
        lines.append(
            f"  features: {self.feature_dim} floats per image; cache entry about "
            f"{_bytes(self.cache_bytes)} on disk"
        )
        if self.activation_bytes_per_image is not None:
            lines.append(
                f"  largest activation {_bytes(self.activation_bytes_per_image)} per image; "
                f"batch_size={self.batch_size}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _si(value: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} "


def _bytes(value: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"
