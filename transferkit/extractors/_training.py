"""Training pieces of the fast CifarCNN recipe: schedule, weight averaging, whitening.

Named functions that :mod:`transferkit.extractors.cifar_cnn` composes: the one-cycle
learning-rate schedule (a serialisable Keras schedule whose length a time budget can
change mid-run), the Lookahead weight-averaging and alternating-flip callbacks, and the
statistics the model's fixed input layers are computed from (channel moments, the 2x2
patch-whitening kernel).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._lazy import import_keras

__all__ = [
    "OneCycle",
    "WHITEN_EPS",
    "alternating_flip_callback",
    "channel_stats",
    "lookahead_callback",
    "patch_whitening_kernel",
]

#: Added to the patch covariance's eigenvalues before whitening.
WHITEN_EPS = 5e-4


def patch_whitening_kernel(images: np.ndarray, eps: float = WHITEN_EPS) -> np.ndarray:
    """A 2x2 convolution kernel that whitens the 2x2 patches of ``images``.

    The filters are the eigenvectors of the patch covariance divided by the square root
    of their eigenvalues, each with its negation (so a following GELU keeps both
    signs): shape ``(2, 2, channels, 2 * 4 * channels)``.
    """
    c = images.shape[-1]
    h, w = images.shape[1] - 1, images.shape[2] - 1
    patches = np.stack(
        [images[:, dy : dy + h, dx : dx + w, :] for dy in (0, 1) for dx in (0, 1)], axis=3
    ).reshape(-1, 4 * c).astype(np.float64)
    patches -= patches.mean(axis=0)
    cov = patches.T @ patches / max(1, len(patches) - 1)
    eigvals, eigvecs = np.linalg.eigh(cov)
    filters = eigvecs / np.sqrt(np.maximum(eigvals, 0.0) + eps)
    return np.concatenate([filters, -filters], axis=1).reshape(2, 2, c, 8 * c).astype(
        np.float32)


def alternating_flip_callback(layer: Any) -> Any:
    """Keras callback: set ``layer`` (an AlternatingFlip) to mirror odd epochs."""
    keras = import_keras()

    class _Callback(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            layer.mirrored.assign(float(epoch % 2))

    return _Callback()


def lookahead_callback(
    steps_per_epoch: int, total_steps: Any, *, start_epoch: int = 3, every: int = 5,
    decay: float = 0.95, power: float = 3.0,
) -> Any:
    """Keras callback: Lookahead weight averaging, as in hlb-cifar10 and airbench.

    From epoch ``start_epoch`` (0-based) on, every ``every`` steps, an average ``a`` of
    the weights moves towards them, ``a <- rho * a + (1 - rho) * w``, and the weights are
    reset to it, with ``rho = decay**every * (step / total_steps())**power`` growing
    over training; at each epoch's end the weights are set to ``a``. Averaged: trainable
    weights and batch-norm moving statistics.
    """
    keras = import_keras()

    class _Lookahead(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0
            self.average: list[Any] | None = None
            self.variables: list[Any] = []

        def on_train_begin(self, logs: Any = None) -> None:
            self.variables = list(self.model.trainable_weights) + [
                v for layer in self.model.layers
                if isinstance(layer, keras.layers.BatchNormalization)
                for v in layer.non_trainable_weights]

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.step += 1
            if self.step <= start_epoch * steps_per_epoch or self.step % every:
                return
            ops = keras.ops
            if self.average is None:
                self.average = [ops.copy(ops.convert_to_tensor(v)) for v in self.variables]
                return
            rho = decay**every * min(1.0, self.step / max(1.0, total_steps())) ** power
            for i, v in enumerate(self.variables):
                a = self.average[i]
                a = a + (1.0 - rho) * (ops.convert_to_tensor(v) - a)
                self.average[i] = a
                v.assign(a)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if self.average is not None:
                for v, a in zip(self.variables, self.average, strict=True):
                    v.assign(a)

    return _Lookahead()


def channel_stats(images: np.ndarray, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance of uint8/float images, in blocks (flat memory)."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for i in range(0, len(images), block):
        b = np.asarray(images[i : i + block], dtype=np.float64).reshape(-1, 3)
        total += b.sum(axis=0)
        total_sq += np.square(b).sum(axis=0)
        count += len(b)
    mean = total / count
    var = np.maximum(total_sq / count - np.square(mean), 1e-6)
    return mean.astype(np.float32), var.astype(np.float32)


def _one_cycle_class() -> type:
    keras = import_keras()

    @keras.saving.register_keras_serializable(package="transferkit")
    class _OneCycle(keras.optimizers.schedules.LearningRateSchedule):
        """Linear warm-up to ``peak`` over ``warmup`` of the steps, then linear decay to 0.

        ``total_steps`` is a variable, so a time budget can shorten the schedule after
        timing the first batches.
        """

        def __init__(self, peak: float, total_steps: int, warmup: float = 0.2) -> None:
            self.peak = float(peak)
            self.warmup = float(warmup)
            self.total_steps = keras.Variable(
                float(max(1, total_steps)), trainable=False, dtype="float32",
                name="one_cycle_total_steps",
            )

        def __call__(self, step: Any) -> Any:
            ops = keras.ops
            step = ops.cast(step, "float32")
            total = ops.convert_to_tensor(self.total_steps)
            warm = ops.maximum(total * self.warmup, 1.0)
            up = self.peak * (step + 1.0) / warm
            down = self.peak * ops.maximum(total - step, 0.0) / ops.maximum(total - warm, 1.0)
            return ops.where(step < warm, up, down)

        def get_config(self) -> dict[str, Any]:
            return {"peak": self.peak, "total_steps": int(float(self.total_steps.numpy())),
                    "warmup": self.warmup}

    return _OneCycle


_ONE_CYCLE: type | None = None


def OneCycle(peak: float, total_steps: int, warmup: float = 0.2) -> Any:  # noqa: N802
    """The one-cycle learning-rate schedule (a Keras ``LearningRateSchedule``)."""
    global _ONE_CYCLE
    if _ONE_CYCLE is None:
        _ONE_CYCLE = _one_cycle_class()
    return _ONE_CYCLE(peak, total_steps, warmup)
