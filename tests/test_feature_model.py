"""``feature_model`` (a trainable Keras model equal to ``transform``) and ``layer_blocks``.

One model per registered extractor (random weights, the smallest default image size)
serves every check on it, so the suite stays fast.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_features_close, make_images, make_learnable, needs_bf16_kernels

from transferkit import exceptions as exc
from transferkit.extractors import (
    BaseExtractor,
    CifarCNN,
    EfficientNetLite0Extractor,
    VGG16Extractor,
    create_extractor,
    get_extractor_class,
    layer_blocks,
    list_extractors,
)

#: Blocks of each registered extractor's default feature model (the last one "top"
#: when layers with weights follow the last stage).
EXPECTED_BLOCKS = {
    "cifar_cnn": ["block1", "block2", "block3"],  # the "fast" preset; the stem joins block1
    "convnext_tiny": ["stage_0", "stage_1", "stage_2", "stage_3", "top"],
    "densenet121": ["conv2", "conv3", "conv4", "conv5", "top"],
    "efficientnet_b0": [f"block{i}" for i in range(1, 8)] + ["top"],
    "efficientnet_lite0": [f"block{i}" for i in range(1, 8)] + ["top"],
    "inception_v3": [f"mixed{i}" for i in range(11)],
    "mobilenet_v2": [f"block_{i}" for i in range(1, 17)] + ["top"],
    "resnet50": ["conv2", "conv3", "conv4", "conv5"],
    "vgg16": [f"block{i}" for i in range(1, 6)],
    "xception": [f"block{i}" for i in range(1, 15)],
}
TINY_FAST = dict(preset="fast", conv_filters=(8, 16, 16), batch_size=32, random_state=0,
                 epochs=1)
EXTRACTORS = list_extractors()


def _make(name: str):
    if get_extractor_class(name).trainable:  # CifarCNN: a tiny trained network
        x, y = make_learnable(64, size=16, seed=5)
        return create_extractor(name, **TINY_FAST).fit(x, y)
    return create_extractor(name, weights=None)


@pytest.fixture(scope="module")
def built():
    """Extractor name -> (extractor, its default feature model), built on first use."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            ext = _make(name)
            cache[name] = (ext, ext.feature_model())
        return cache[name]

    return get


def _weighted(model) -> list[str]:
    return [layer.name for layer in model.layers if layer.weights]


def _run(model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model(images.astype(np.float32), training=False))


# ------------------------------------------------------------------------ feature_model
#: Extractors whose second model (``transform``'s) takes several seconds to build.
_SLOW = {"convnext_tiny", "densenet121", "efficientnet_b0", "inception_v3", "resnet50",
         "xception"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in EXTRACTORS])
def test_feature_model_gives_the_extractors_features(built, name) -> None:
    ext, model = built(name)
    size = tuple(int(s) for s in model.input.shape[1:3])
    images = make_images(3, size=size[0], seed=1)
    fingerprint = ext.fingerprint
    assert model.input.name == "images" and tuple(model.input.shape) == (None, *size, 3)
    assert model.input.dtype == "float32" and model.output.dtype == "float32"
    assert not model.trainable and model.trainable_weights == []
    out = _run(model, images)
    assert out.dtype == np.float32 and out.shape == (3, ext.output_dim(size))
    assert_features_close(out, ext.transform(images))
    assert ext.fingerprint == fingerprint


def test_the_model_is_flat_self_contained_and_saves(built, tmp_path) -> None:
    import keras

    from transferkit.extractors import _layers

    vgg = VGG16Extractor(weights=None, input_size=48, layer="block4_pool", resize_method="area")
    model = vgg.feature_model((40, 40))
    assert model.get_layer("block4_conv3").name == "block4_conv3"
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)  # not nested
    resize = model.get_layer("resize_images")
    assert isinstance(resize, _layers.ResizeImages)
    assert resize.size == (48, 48) and resize.method == "area"
    prep = model.get_layer("backbone_preprocessing")
    assert prep.get_config()["preprocessing"] == "caffe_bgr_mean"
    assert all(type(layer).__name__ != "Lambda" for layer in model.layers)
    images = make_images(4, size=40, seed=2)
    out = _run(model, images)
    assert_features_close(out, vgg.transform(images))
    lite, lite_model = built("efficientnet_lite0")
    assert lite_model.get_layer("backbone_preprocessing").preprocessing == "(x-127)/128"
    lite_images = make_images(2, seed=3)
    for m, x in ((model, images), (lite_model, lite_images)):
        path = tmp_path / f"{m.name}.keras"
        m.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        np.testing.assert_allclose(_run(loaded, x), _run(m, x), rtol=1e-6, atol=1e-6)
        assert [layer.name for layer in loaded.layers] == [layer.name for layer in m.layers]


def test_each_call_has_its_own_weights_and_training_it_leaves_the_extractor_alone() -> None:
    import keras

    vgg = VGG16Extractor(weights=None, layer="block2_pool")
    images = make_images(8, seed=4)
    before = vgg.transform(images)
    fingerprint = vgg.fingerprint
    model = vgg.feature_model()
    assert model.trainable_weights == []
    # Keras 3: a model whose `trainable` is False has no trainable weights, whatever its
    # layers say; unfreeze the model (every layer), then freeze what is not trained.
    model.trainable = True
    train = {n for _, names in layer_blocks(model)[-1:] for n in names}
    for layer in model.layers:
        layer.trainable = layer.name in train
    assert {w.path.split("/")[0] for w in model.trainable_weights} == train
    kernel = model.get_layer("block2_conv2").kernel
    start = np.asarray(kernel).copy()
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    target = np.full((8, model.output.shape[-1]), 10.0, np.float32)
    model.fit(images.astype(np.float32), target, epochs=1, batch_size=4, verbose=0)
    assert not np.allclose(np.asarray(kernel), start)
    np.testing.assert_array_equal(np.asarray(model.get_layer("block1_conv1").kernel),
                                  np.asarray(vgg.feature_model().get_layer("block1_conv1").kernel))
    np.testing.assert_array_equal(vgg.transform(images), before)
    assert vgg.fingerprint == fingerprint
    assert_features_close(_run(vgg.feature_model(), images), before)


def test_cifar_cnn_feature_model_leaves_out_augmentation(built) -> None:
    cnn, model = built("cifar_cnn")
    names = [layer.name for layer in model.layers]
    assert "alternating_flip" in [layer.name for layer in cnn.model_.layers]
    assert names[:2] == ["images", "standardize"] and names[-1] == "features"
    assert tuple(model.input.shape) == (None, 16, 16, 3)
    assert not {id(w) for w in model.weights} & {id(w) for w in cnn.model_.weights}
    model.get_layer("block3b").kernel.assign(np.zeros(model.get_layer("block3b").kernel.shape))
    x = make_images(3, size=16, seed=6)
    assert not np.allclose(_run(model, x), cnn.transform(x))  # its own copy of the weights
    with pytest.raises(exc.InvalidInputError, match=r"`image_size` must be \(16, 16\)"):
        cnn.feature_model((32, 32))
    with pytest.raises(exc.NotFittedError, match="not fitted"):
        CifarCNN().feature_model()


@needs_bf16_kernels
def test_feature_model_is_built_under_the_dtype_policy() -> None:
    lite = EfficientNetLite0Extractor(weights=None, layer="predictions", dtype="mixed_bfloat16")
    model = lite.feature_model()
    assert model.get_layer("top_conv").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("backbone_preprocessing").dtype_policy.name == "float32"
    assert model.layers[-1].name == "features_float32" and model.output.dtype == "float32"
    images = make_images(3, seed=7)
    out = _run(model, images)
    assert out.dtype == np.float32
    assert_features_close(out, lite.transform(images))


def test_feature_model_errors_name_the_argument() -> None:
    class NumpyExtractor(BaseExtractor):
        compiled = False

        def _feature_config(self):
            return {}

        def _build_forward(self, image_size):
            return lambda x: np.asarray(x, np.float32).reshape(len(x), -1)

    with pytest.raises(exc.InvalidInputError, match="NumpyExtractor cannot give a Keras model"):
        NumpyExtractor().feature_model()
    vgg = VGG16Extractor(weights=None)
    with pytest.raises(exc.InvalidInputError, match="`image_size` must be at least 32x32.*16x16"):
        vgg.feature_model((16, 16))
    with pytest.raises(exc.InvalidTypeError, match="`image_size` must be a .*'32'"):
        vgg.feature_model(("32", 32))
    with pytest.raises(exc.InvalidInputError, match="`pooling`"):
        VGG16Extractor(weights=None, pooling="mean").feature_model()


# ------------------------------------------------------------------------ layer_blocks
@pytest.mark.parametrize("name", EXTRACTORS)
def test_layer_blocks_of_every_registered_extractor(built, name) -> None:
    _, model = built(name)
    blocks = layer_blocks(model)
    block_names = [block for block, _ in blocks]
    assert all(layers for _, layers in blocks)
    assert len(set(block_names)) == len(block_names)
    # every layer with weights exactly once, blocks in model order
    assert [layer for _, layers in blocks for layer in layers] == _weighted(model)
    if name in EXPECTED_BLOCKS:
        assert block_names == EXPECTED_BLOCKS[name]


def test_layer_blocks_put_stems_shortcuts_and_heads_where_they_belong(built) -> None:
    blocks = dict(layer_blocks(built("resnet50")[1]))
    assert blocks["conv2"][:2] == ["conv1_conv", "conv1_bn"]  # the stem
    assert all(n.startswith("conv4_block") for n in blocks["conv4"])
    blocks = dict(layer_blocks(built("efficientnet_lite0")[1]))
    assert blocks["block1"][:2] == ["stem_conv", "stem_bn"]
    assert blocks["block6"][0] == "block6a_expand_conv" and blocks["top"] == ["top_conv", "top_bn"]
    blocks = dict(layer_blocks(built("convnext_tiny")[1]))
    assert blocks["stage_1"][0] == "convnext_tiny_downsampling_block_0"
    blocks = dict(layer_blocks(built("cifar_cnn")[1]))
    assert blocks["block1"][0] == "whiten" and "block1b_bn" in blocks["block1"]
    top = layer_blocks(VGG16Extractor(weights=None, layer="block3_pool").feature_model())
    assert [b for b, _ in top] == ["block1", "block2", "block3"]


def test_layer_blocks_without_recognisable_names() -> None:
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, name="first")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(3, name="dense_a")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense_b")(x))
    assert layer_blocks(model) == [("first", ["first"]), ("dense_a", ["dense_a"]),
                                   ("dense_b", ["dense_b"])]
    with pytest.raises(exc.InvalidTypeError, match="`model` must be a keras.Model; received"):
        layer_blocks("vgg16")


def test_a_new_backbones_preprocessing_is_registered_by_name() -> None:
    from transferkit.extractors import _layers
    from transferkit.extractors._frozen import FrozenBackbone

    class Tiny(FrozenBackbone):
        registry_name = "tiny_test"  # not registered: names the model
        backbone_name = "Tiny"
        layer_choices = ("conv",)
        min_input_size = 8

        def _build_base(self, size):
            import keras

            inputs = keras.Input((*size, 3))
            return keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs))

        def _preprocessing(self):
            return "x/255 (test)", lambda x: x / np.float32(255.0)

    tiny = Tiny(weights=None, layer="conv", input_size=12)
    with pytest.raises(exc.InvalidInputError, match=r"`preprocessing` must be one of .*'x/255"):
        _layers.BackbonePreprocessing("x/255 (test)")
    model = tiny.feature_model((10, 10))
    images = make_images(3, size=10, seed=8)
    assert_features_close(_run(model, images), tiny.transform(images))
    assert [layer.name for layer in model.layers][:3] == [
        "images", "resize_images", "backbone_preprocessing"]
    np.testing.assert_array_equal(
        _layers.preprocessing_function("x/255 (test)")(np.full((1, 2, 2, 3), 51.0, np.float32)),
        np.full((1, 2, 2, 3), 0.2, np.float32))
    assert [name for name, _ in layer_blocks(model)] == ["conv"]
