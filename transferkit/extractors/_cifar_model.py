"""The CifarCNN networks: the talk's plain CNN and the fast preset's whitened, batch-normed one.

:func:`build_cifar_model` builds either from resolved parameters (see
:meth:`CifarCNN.resolved_params <transferkit.extractors.CifarCNN.resolved_params>`),
with per-layer seeds at fixed offsets from ``seed`` so seeded runs are reproducible
across processes; :func:`compile_cifar_model` attaches the optimiser, loss and
schedule. Layer names are part of the contract: ``features`` is the trunk's output
(the extractor's features), ``predictions`` the softmax.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._lazy import import_keras
from ._training import OneCycle, channel_stats, patch_whitening_kernel

__all__ = ["build_cifar_model", "cifar_feature_model", "compile_cifar_model"]

_LOGIT_SCALE = 1.0 / 9.0
_BN_MOMENTUM = 0.6  # fast preset: short schedules need running statistics that keep up
_SGD_MOMENTUM = 0.85
_TRANSLATE = 0.0625  # 2 pixels of a 32-pixel side
_WHITEN_SAMPLES = 5000


def build_cifar_model(
    params: dict[str, Any], image_shape: tuple[int, ...], n_classes: int, images: np.ndarray,
    *, seed: int | None, name: str, conv_filters: tuple[int, ...] | None = None,
) -> tuple[Any, tuple[np.ndarray, np.ndarray] | None]:
    """The Keras model for ``params``, and the dataset standardisation (mean, std) if used."""
    keras = import_keras()
    from ._layers import AlternatingFlip, DiracUniform, PerImageStandardization

    r = dict(params)
    if conv_filters is not None:
        r["conv_filters"] = conv_filters
    stats = None

    def s(offset: int) -> int | None:
        return None if seed is None else int(seed) + offset

    init = keras.initializers.GlorotUniform
    inputs = keras.Input(shape=image_shape, name="images")
    x = inputs
    layers = {
        "flip": lambda i: keras.layers.RandomFlip("horizontal", seed=s(500 + i)),
        "alternating_flip": lambda i: AlternatingFlip(name="alternating_flip"),
        "zoom": lambda i: keras.layers.RandomZoom(0.1, seed=s(500 + i)),
        "brightness": lambda i: keras.layers.RandomBrightness(
            0.2, value_range=(0, 255), seed=s(500 + i)),
        "translate": lambda i: keras.layers.RandomTranslation(
            _TRANSLATE, _TRANSLATE, fill_mode="reflect", seed=s(500 + i)),
    }
    for i, name in enumerate(r["augment"]):  # active in training only
        x = layers[name](i)(x)
    if r["standardize"] == "per_image":
        standardize = PerImageStandardization(name="standardize")
    elif r["standardize"] == "dataset":
        mean, var = channel_stats(images)
        stats = (mean, np.sqrt(var))
        standardize = keras.layers.Normalization(mean=mean, variance=var, name="standardize")
    else:
        standardize = keras.layers.Rescaling(1.0 / 255, name="standardize")
    x = standardize(x)
    if r["architecture"] == "talk":
        for i, filters in enumerate(r["conv_filters"], start=1):
            x = keras.layers.Conv2D(
                int(filters), int(r["kernel_size"]), padding="same", activation="relu",
                kernel_initializer=init(seed=s(i)), name=f"conv{i}",
            )(x)
            x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        last = len(r["dense_units"])
        for i, units in enumerate(r["dense_units"], start=1):
            x = keras.layers.Dense(
                int(units), activation="relu", kernel_initializer=init(seed=s(100 + i)),
                name="features" if i == last else f"dense{i}",
            )(x)
    else:
        def conv_bn(x: Any, filters: int, name: str, seed: int, pool: bool = False) -> Any:
            # Identity-initialised kernels: each block starts close to a residual one.
            x = keras.layers.Conv2D(
                filters, int(r["kernel_size"]), padding="same", use_bias=False,
                kernel_initializer=DiracUniform(seed=s(seed)), name=name,
            )(x)
            if pool:
                x = keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)
            x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_bn")(x)
            return keras.layers.Activation("gelu", name=f"{name}_gelu")(x)

        # Stem: a frozen 2x2 convolution that whitens image patches (their PCA on
        # the standardised training images), as the fastest CIFAR-10 recipes do.
        # Cheaper than a learned full-resolution stem and a better start.
        sample = np.asarray(images[:_WHITEN_SAMPLES], dtype=np.float32)
        kernel = patch_whitening_kernel(np.asarray(standardize(sample)))
        whiten = keras.layers.Conv2D(
            kernel.shape[-1], 2, padding="valid", trainable=False, name="whiten")
        x = whiten(x)
        whiten.set_weights([kernel, np.zeros(kernel.shape[-1], np.float32)])
        x = keras.layers.Activation("gelu", name="whiten_gelu")(x)
        for i, filters in enumerate(r["conv_filters"], start=1):
            x = conv_bn(x, int(filters), f"block{i}a", 10 * i, pool=True)
            x = conv_bn(x, int(filters), f"block{i}b", 10 * i + 1)
        x = keras.layers.GlobalMaxPooling2D(name="features")(x)
    if r["dropout"]:
        x = keras.layers.Dropout(float(r["dropout"]), seed=s(200), name="dropout")(x)
    if r["architecture"] == "talk":
        outputs = keras.layers.Dense(
            n_classes, activation="softmax", kernel_initializer=init(seed=s(300)),
            name="predictions",
        )(x)
    else:
        # Max-pooled GELU activations are large: scale the logits down (as the fast
        # published recipes do) so early steps at a high learning rate stay stable.
        x = keras.layers.Dense(
            n_classes, use_bias=False, kernel_initializer=init(seed=s(300)), name="logits"
        )(x)
        x = keras.layers.Rescaling(_LOGIT_SCALE, name="logit_scale")(x)
        outputs = keras.layers.Activation("softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name), stats



def compile_cifar_model(model: Any, params: dict[str, Any], steps_total: int) -> Any:
    """Compile ``model`` for ``params``; returns the one-cycle schedule, or None."""
    keras = import_keras()
    r = params
    lr: Any = float(r["learning_rate"])
    schedule = None
    if r["schedule"] == "one_cycle":
        schedule = OneCycle(peak=lr, total_steps=steps_total)
        lr = schedule
    wd = float(r["weight_decay"]) or None
    if r["optimizer"] == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=_SGD_MOMENTUM, nesterov=True, weight_decay=wd)
    else:
        opt = keras.optimizers.AdamW(lr, weight_decay=wd) if wd else keras.optimizers.Adam(lr)
    if wd:
        opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "mean",
                                                 "variance"])
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=float(r["label_smoothing"]))
    model.compile(optimizer=opt, loss=loss, metrics=["accuracy"])
    return schedule


def cifar_feature_model(model: Any, image_shape: tuple[int, ...]) -> Any:
    """A flat copy of ``model`` from a new ``"images"`` input to its ``"features"`` layer.

    The augmentation layers (every layer between the input and ``"standardize"``) are
    left out; the other layers are new ones with copies of the weights, frozen.
    """
    keras = import_keras()
    from ._frozen import flat_model

    names = [layer.name for layer in model.layers
             if not isinstance(layer, keras.layers.InputLayer)]
    augmentation = names[: names.index("standardize")]
    trunk = keras.Model(model.input, model.get_layer("features").output, name=model.name)
    images = keras.Input(tuple(int(v) for v in image_shape), dtype="float32", name="images")
    return flat_model(trunk, images, images, skip=augmentation, copy=True)
