"""Extractors: the contract every registered extractor meets, then each one's specifics."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import assert_features_close, make_images, make_learnable
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from transferkit import exceptions as exc
from transferkit.extractors import (
    BaseExtractor,
    CifarCNN,
    EfficientNetLite0Extractor,
    VGG16Extractor,
    create_extractor,
    get_extractor_class,
    list_extractors,
    register_extractor,
)
from transferkit.extractors._frozen import FrozenBackbone

# One factory per registered extractor: how the contract test gets an instance that works
# offline. A newly registered extractor without an entry here fails `test_every_registered...`.
_TRAIN = make_learnable(96, seed=1)


def _fitted_cnn() -> CifarCNN:
    return CifarCNN(conv_filters=(8, 8), dense_units=(16,), epochs=1, random_state=0).fit(*_TRAIN)


def _keras_app(name: str, **params):
    """Seeded random weights, the contract's 32x32 images (resized up where the model needs)."""
    return lambda: create_extractor(name, weights=None, batch_size=8, **params)


FACTORIES = {
    "vgg16": lambda: VGG16Extractor(weights=None, batch_size=8),
    "cifar_cnn": _fitted_cnn,
    "efficientnet_lite0": lambda: EfficientNetLite0Extractor(weights=None, batch_size=8),
    "resnet50": _keras_app("resnet50"),
    "mobilenet_v2": _keras_app("mobilenet_v2"),
    "efficientnet_b0": _keras_app("efficientnet_b0"),
    "convnext_tiny": _keras_app("convnext_tiny"),
    "densenet121": _keras_app("densenet121"),
    "inception_v3": _keras_app("inception_v3", input_size=75),
    "xception": _keras_app("xception", input_size=71),
}


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def extractor(request) -> BaseExtractor:
    return FACTORIES[request.param]()


def test_every_registered_extractor_has_a_contract_factory() -> None:
    assert set(list_extractors()) == set(FACTORIES)


# ---------------------------------------------------------------------------- contract
def test_transform_returns_float32_matrix_of_output_dim(extractor, images) -> None:
    feats = extractor.transform(images)
    assert feats.dtype == np.float32
    assert feats.shape == (len(images), extractor.output_dim())
    assert np.isfinite(feats).all()


@pytest.mark.kernels
def test_transform_is_deterministic_and_batch_size_independent(extractor, images) -> None:
    a = extractor.transform(images)
    b = extractor.transform(images)
    np.testing.assert_array_equal(a, b)
    pieces = np.concatenate([f for _, f in extractor.iter_features(images, batch_size=5)])
    assert_features_close(pieces, a)  # other batches: kernels may round differently
    again = np.concatenate([f for _, f in extractor.iter_features(images, batch_size=5)])
    np.testing.assert_array_equal(again, pieces)  # the same batches: the same bits


@pytest.mark.kernels
def test_iter_features_resumes_from_start(extractor, images) -> None:
    full = extractor.transform(images)
    tail = list(extractor.iter_features(images, start=10, batch_size=4))
    assert tail[0][0] == 10
    assert_features_close(np.concatenate([f for _, f in tail]), full[10:])
    # Resuming at a batch boundary (as the cache does) computes exactly the batches of
    # a whole run: the same bits.
    whole = list(extractor.iter_features(images, batch_size=4))
    resumed = list(extractor.iter_features(images, start=12, batch_size=4))
    np.testing.assert_array_equal(
        np.concatenate([f for _, f in resumed]),
        np.concatenate([f for o, f in whole if o >= 12]))


def test_caller_array_is_never_modified(extractor) -> None:
    for dtype in (np.uint8, np.float32, np.float64):
        x = make_images(3, seed=5).astype(dtype)
        before = x.copy()
        extractor.transform(x)
        np.testing.assert_array_equal(x, before)


def test_uint8_and_float_inputs_agree(extractor) -> None:
    x = make_images(4, seed=2)
    np.testing.assert_allclose(
        extractor.transform(x), extractor.transform(x.astype(np.float64)), atol=1e-4
    )


def test_fingerprint_is_stable_hex_and_survives_clone_and_pickle(extractor) -> None:
    fp = extractor.fingerprint
    assert isinstance(fp, str) and len(fp) == 40 and int(fp, 16) >= 0
    assert extractor.fingerprint == fp
    assert pickle.loads(pickle.dumps(extractor)).fingerprint == fp
    if not extractor.trainable:
        assert clone(extractor).fingerprint == fp


def test_describe_is_json_and_names_the_extractor(extractor) -> None:
    import json

    config = extractor.describe()
    json.dumps(config)
    assert config["extractor"] == extractor.registry_name
    for key in ("weights", "layer", "pooling", "input_size", "preprocessing", "dtype"):
        assert key in config


def test_works_as_a_pipeline_step(extractor, images) -> None:
    from sklearn.preprocessing import StandardScaler

    pipe = Pipeline([("features", extractor), ("scale", StandardScaler())])
    out = pipe.fit_transform(images, np.arange(len(images)) % 3)
    assert out.shape == (len(images), extractor.output_dim())


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (np.zeros((2, 32, 32), np.uint8), exc.InvalidInputError, "4 dimensions"),
        (np.zeros((32, 32, 3), np.uint8), exc.InvalidInputError, r"single image.*\[None\]"),
        (np.zeros((2, 32, 32, 1), np.uint8), exc.InvalidInputError, "3 \\(RGB\\) channels"),
        (np.zeros((2, 3, 32, 32), np.uint8), exc.InvalidInputError, "channels-first"),
        (np.zeros((2, 32, 32, 3), np.int32), exc.InvalidTypeError, "dtype int32"),
        (np.zeros((0, 32, 32, 3), np.uint8), exc.InvalidInputError, "empty"),
        (np.full((2, 32, 32, 3), np.nan, np.float32), exc.InvalidInputError, "NaN"),
        (np.full((2, 32, 32, 3), 300.0, np.float32), exc.InvalidInputError, r"\[0, 255\]"),
        ("not images", exc.InvalidTypeError, "received 'not images'"),
    ],
)
def test_bad_images_raise_clear_errors(extractor, bad, error, match) -> None:
    with pytest.raises(error, match=match):
        extractor.transform(bad)


# ---------------------------------------------------------------------------- registry
def test_registry_create_and_errors() -> None:
    vgg = create_extractor("vgg16", weights=None, pooling="max")
    assert isinstance(vgg, VGG16Extractor) and vgg.pooling == "max"
    assert get_extractor_class("cifar_cnn") is CifarCNN
    assert list_extractors("vgg*") == ["vgg16"]
    with pytest.raises(exc.InvalidInputError, match="Unknown extractor 'resnet9'.*vgg16"):
        create_extractor("resnet9")
    with pytest.raises(exc.InvalidInputError, match=r"Unknown parameter\(s\) \['polling'\]"):
        create_extractor("vgg16", polling="avg")
    with pytest.raises(exc.InvalidInputError, match="already registered"):
        register_extractor("vgg16")(type("Other", (BaseExtractor,), {}))


# ---------------------------------------------------------------------------- VGG16
@pytest.fixture(scope="module")
def vgg() -> VGG16Extractor:
    return VGG16Extractor(weights=None, batch_size=8)


def test_vgg16_matches_keras_reference_pipeline(vgg, tmp_path) -> None:
    """Our resize/preprocess/pool path equals keras.applications' own on the same weights."""
    import keras

    x = make_images(4, seed=3)
    weights = tmp_path / "vgg.weights.h5"
    vgg.transform(x)  # build the seeded model
    model = next(iter(vgg._forward_cache.values())).python_function.model
    ref = keras.applications.VGG16(
        include_top=False, weights=None, input_shape=(64, 64, 3), pooling="max"
    )
    # same weights: copy the trunk's variables into the reference model
    ref.set_weights(model.get_weights())
    ref.save_weights(weights)
    ours = VGG16Extractor(weights=str(weights), pooling="max", input_size=64)
    resized = keras.ops.convert_to_numpy(
        keras.ops.image.resize(x.astype("float32"), (64, 64), interpolation="bilinear")
    )
    expected = ref.predict(keras.applications.vgg16.preprocess_input(resized), verbose=0)
    np.testing.assert_allclose(ours.transform(x), expected, rtol=1e-4, atol=1e-3)


def test_vgg16_options_change_width_and_fingerprint(vgg, images) -> None:
    fps = {vgg.fingerprint}
    for params, dim in [
        ({"pooling": "max"}, 512),
        ({"pooling": "flatten"}, 512),  # 32x32 -> 1x1x512 after five pools
        ({"layer": "block3_pool"}, 256),
        ({"layer": "block4_conv1", "pooling": "flatten", "input_size": 32}, 4 * 4 * 512),
        ({"input_size": 64, "pooling": "flatten"}, 2 * 2 * 512),
        ({"seed": 1}, 512),
    ]:
        other = clone(vgg).set_params(**params)
        assert other.output_dim((32, 32)) == dim
        fps.add(other.fingerprint)
    assert len(fps) == 7


def test_vgg16_resizes_inside_the_model(images) -> None:
    small = VGG16Extractor(weights=None, input_size=48, batch_size=8)
    feats = small.transform(images[:4])
    assert feats.shape == (4, 512)
    # 16x16 images are too small for VGG-16 unless resized inside the model
    tiny = make_images(2, size=16)
    assert small.transform(tiny).shape == (2, 512)
    with pytest.raises(exc.InvalidInputError, match="at least 32x32.*received 16x16.*input_size"):
        VGG16Extractor(weights=None).transform(tiny)


def test_vgg16_weights_file_identity_enters_fingerprint(vgg, tmp_path, images) -> None:
    vgg.transform(images[:1])
    model = next(iter(vgg._forward_cache.values())).python_function.base
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    from_file = VGG16Extractor(weights=str(path), batch_size=8)
    np.testing.assert_allclose(from_file.transform(images), vgg.transform(images), atol=1e-5)
    fp = from_file.fingerprint
    assert fp != vgg.fingerprint
    weights = model.get_weights()
    weights[0] = weights[0] + 1e-3
    model.set_weights(weights)
    model.save_weights(path)
    assert VGG16Extractor(weights=str(path)).fingerprint != fp


def test_vgg16_refuses_a_weights_file_missing_layers(vgg, tmp_path, images) -> None:
    """Keras only warns when layers are missing; transferkit refuses (no silent garbage)."""
    import keras

    vgg.transform(images[:1])
    partial = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(
        64, 3, padding="same", name="block1_conv1")])
    path = tmp_path / "partial.weights.h5"
    partial.save_weights(path)
    with pytest.raises(exc.InvalidInputError, match=r"partial\.weights\.h5"):
        VGG16Extractor(weights=str(path)).transform(images[:1])


def test_vgg16_imagenet_offline_names_the_file_and_where_to_put_it(monkeypatch) -> None:
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(
        exc.WeightsNotFoundError,
        match=r"vgg16_weights_tf_dim_ordering_tf_kernels_notop\.h5.*keras_home.*models.*weights=",
    ):
        VGG16Extractor(weights="imagenet").transform(make_images(1))


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"pooling": "mean"}, exc.InvalidInputError, r"`pooling` must be one of.*'mean'"),
        ({"layer": "block9_pool"}, exc.InvalidInputError, r"`layer` must be one of"),
        ({"input_size": 16}, exc.InvalidInputError, r"`input_size` must be at least 32"),
        ({"input_size": 0}, exc.InvalidInputError, r"`input_size` must be a positive"),
        ({"layer": "fc2"}, exc.InvalidInputError, r"input_size=224"),
        ({"batch_size": 0}, exc.InvalidInputError, r"`batch_size`"),
        ({"dtype": "float16"}, exc.InvalidInputError, r"`dtype`"),
        ({"weights": "/nonexistent/w.h5"}, exc.WeightsNotFoundError, r"does not exist"),
        ({"weights": 3}, exc.InvalidTypeError, r"`weights` must be 'imagenet', None or a path"),
        ({"resize_method": "cubic"}, exc.InvalidInputError, r"`resize_method`"),
    ],
)
def test_vgg16_bad_params_named_at_use(params, error, match) -> None:
    extractor = VGG16Extractor(**{"weights": None, **params})  # __init__ only stores
    with pytest.raises(error, match=match):
        extractor.fit()


def test_vgg16_preprocess_returns_new_array() -> None:
    x = make_images(2)
    before = x.copy()
    out = VGG16Extractor(weights=None).preprocess(x)
    np.testing.assert_array_equal(x, before)
    import keras

    np.testing.assert_allclose(
        out, keras.applications.vgg16.preprocess_input(x.astype("float32")), atol=1e-4
    )


# ---------------------------------------------------------------------------- CifarCNN
def test_cifar_cnn_learns_a_learnable_task() -> None:
    x, y = make_learnable(300, seed=4)
    x_test, y_test = make_learnable(120, seed=5)
    cnn = CifarCNN(conv_filters=(8, 16), dense_units=(32, 16), epochs=4, random_state=0)
    assert cnn.fit(x, y) is cnn
    assert cnn.score(x_test, y_test) > 0.8
    assert cnn.predict_proba(x_test).shape == (120, 3)
    np.testing.assert_allclose(cnn.predict_proba(x_test).sum(axis=1), 1.0, rtol=1e-5)
    assert cnn.transform(x_test).shape == (120, 16)
    assert set(cnn.history_) >= {"loss", "accuracy"} and cnn.n_iter_ == 4


def test_cifar_cnn_seeded_fits_are_identical_and_weights_enter_fingerprint() -> None:
    x, y = make_learnable(64, seed=6)
    params = dict(conv_filters=(4,), dense_units=(8,), epochs=1, batch_size=16)
    a = CifarCNN(**params, random_state=3).fit(x, y)
    b = CifarCNN(**params, random_state=3).fit(x, y)
    c = CifarCNN(**params, random_state=4).fit(x, y)
    np.testing.assert_array_equal(a.transform(x), b.transform(x))
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_cifar_cnn_string_and_one_hot_labels() -> None:
    x, y = make_learnable(48, seed=7)
    names = np.array(["r", "g", "b"])[y]
    cnn = CifarCNN(conv_filters=(4,), dense_units=(8,), epochs=1, random_state=0).fit(x, names)
    assert set(cnn.predict(x)) <= {"r", "g", "b"}
    onehot = np.eye(3)[y]
    cnn2 = CifarCNN(conv_filters=(4,), dense_units=(8,), epochs=1, random_state=0).fit(x, onehot)
    np.testing.assert_array_equal(cnn2.classes_, [0, 1, 2])


def test_cifar_cnn_save_load_predicts_identically(tmp_path) -> None:
    cnn = _fitted_cnn()
    x = make_images(10, seed=8)
    path = cnn.save(tmp_path / "cnn.keras")
    loaded = CifarCNN.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(x), cnn.predict_proba(x))
    np.testing.assert_array_equal(loaded.transform(x), cnn.transform(x))
    assert loaded.fingerprint == cnn.fingerprint
    assert loaded.get_params() == cnn.get_params()
    import keras

    # still a plain Keras file
    model = keras.saving.load_model(path)
    np.testing.assert_allclose(model.predict(x.astype("float32"), verbose=0),
                               cnn.predict_proba(x), atol=1e-6)


def test_cifar_cnn_errors(tmp_path) -> None:
    x, y = make_learnable(20)
    with pytest.raises(exc.NotFittedError, match="not fitted"):
        CifarCNN().transform(x)
    with pytest.raises(exc.NotFittedError):
        CifarCNN().predict(x)
    with pytest.raises(exc.InvalidInputError, match="expected 20, received 19"):
        CifarCNN(epochs=1).fit(x, y[:-1])
    with pytest.raises(exc.InvalidInputError, match="at least 2 classes"):
        CifarCNN(epochs=1).fit(x, np.zeros(20))
    with pytest.raises(exc.InvalidInputError, match="`dropout` must be a number in"):
        CifarCNN(dropout=1.5).fit(x, y)
    with pytest.raises(exc.InvalidInputError, match="`early_stopping=True` needs"):
        CifarCNN(early_stopping=True).fit(x, y)
    with pytest.raises(exc.InvalidInputError, match="`conv_filters`"):
        CifarCNN(conv_filters=()).fit(x, y)
    cnn = _fitted_cnn()
    with pytest.raises(exc.InvalidInputError, match="32x32 like the training images"):
        cnn.transform(make_images(2, size=40))
    with pytest.raises(exc.InvalidInputError, match="must end in '.keras'"):
        cnn.save(tmp_path / "cnn.h5")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(exc.InvalidInputError, match="not a CifarCNN file"):
        CifarCNN.load(bad)


def test_cifar_cnn_validation_split_and_early_stopping() -> None:
    x, y = make_learnable(80, seed=9)
    cnn = CifarCNN(
        conv_filters=(4,), dense_units=(8,), epochs=30, validation_split=0.25,
        early_stopping=True, patience=1, random_state=0,
    ).fit(x, y)
    assert "val_accuracy" in cnn.history_
    assert cnn.n_iter_ < 30


# ---------------------------------------------------------------------------- keras.applications
@pytest.mark.parametrize(
    ("name", "module", "size"),
    [("resnet50", "resnet50", 64), ("mobilenet_v2", "mobilenet_v2", 64)],
)
def test_keras_app_matches_keras_reference_pipeline(name, module, size, tmp_path) -> None:
    """Resize + family preprocessing + pooling equal keras.applications' own on the same weights."""
    import keras

    x = make_images(4, seed=3)
    cls = get_extractor_class(name)
    ref = getattr(keras.applications, cls.architecture)(
        include_top=False, weights=None, input_shape=(size, size, 3), pooling="max"
    )
    weights = tmp_path / f"{name}.weights.h5"
    ref.save_weights(weights)
    ours = create_extractor(name, weights=str(weights), pooling="max", input_size=size)
    resized = keras.ops.convert_to_numpy(
        keras.ops.image.resize(x.astype("float32"), (size, size), interpolation="bilinear")
    )
    preprocess = getattr(keras.applications, module).preprocess_input
    expected = ref.predict(preprocess(resized), verbose=0)
    np.testing.assert_allclose(ours.transform(x), expected, rtol=1e-4, atol=1e-4)
    assert ours.describe()["weights"]["file_hash"]


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("resnet50", "resnet50"),
        ("mobilenet_v2", "mobilenet_v2"),
        ("efficientnet_b0", "efficientnet"),
        ("convnext_tiny", "convnext"),
        ("densenet121", "densenet"),
        ("inception_v3", "inception_v3"),
        ("xception", "xception"),
    ],
)
def test_keras_app_preprocessing_equals_keras_preprocess_input(name, module) -> None:
    import keras

    x = make_images(3, seed=4)
    before = x.copy()
    ours = create_extractor(name, weights=None).preprocess(x)
    np.testing.assert_array_equal(x, before)
    expected = getattr(keras.applications, module).preprocess_input(x.astype("float32"))
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-4)


def test_keras_app_efficientnet_imagenet_equals_keras_imagenet_model(monkeypatch) -> None:
    """Keras adds a Rescaling layer only for weights="imagenet": reproduced exactly."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.utils import file_utils

    from transferkit.extractors.vgg16 import keras_weights_path

    x = make_images(3, seed=6)
    fake = keras.applications.EfficientNetB0(include_top=False, weights=None,
                                             input_shape=(32, 32, 3))
    norm = next(lay for lay in fake.layers if isinstance(lay, keras.layers.Normalization))
    norm.adapt_mean.assign([0.485, 0.456, 0.406])  # the ImageNet file's statistics
    norm.adapt_variance.assign([0.052, 0.05, 0.051])
    path = keras_weights_path("efficientnetb0_notop.h5")  # where our extractor looks
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        legacy_h5_format.save_weights_to_hdf5_group(fh, fake)
    monkeypatch.setattr(file_utils, "get_file", lambda *a, **k: str(path))
    ref = keras.applications.EfficientNetB0(include_top=False, weights="imagenet",
                                            input_shape=(32, 32, 3), pooling="avg")
    expected = ref.predict(x.astype("float32"), verbose=0)
    ours = create_extractor("efficientnet_b0", weights="imagenet").transform(x)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)
    path.unlink()


@pytest.mark.parametrize(
    ("name", "params", "file"),
    [
        ("resnet50", {}, r"resnet50_weights_tf_dim_ordering_tf_kernels_notop\.h5"),
        ("mobilenet_v2", {"input_size": 96},
         r"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1\.0_96_no_top\.h5"),
        ("xception", {"layer": "predictions", "input_size": 299},
         r"xception_weights_tf_dim_ordering_tf_kernels\.h5"),
    ],
)
def test_keras_app_imagenet_offline_names_the_file_and_where_to_put_it(
    monkeypatch, name, params, file
) -> None:
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(exc.WeightsNotFoundError, match=rf"{file} is not in .*keras_home.*models"
                       r".*weights="):
        create_extractor(name, weights="imagenet", **params).transform(make_images(1))


def test_keras_app_layers_predictions_and_generic_class(images) -> None:
    from transferkit.extractors import KerasApplicationExtractor, MobileNetV2Extractor

    generic = KerasApplicationExtractor(architecture="MobileNetV2", weights=None, batch_size=8)
    fixed = MobileNetV2Extractor(weights=None, batch_size=8)
    np.testing.assert_allclose(generic.transform(images), fixed.transform(images), atol=1e-6)
    assert "architecture" in generic.get_params() and "architecture" not in fixed.get_params()
    assert generic.describe()["architecture"] == fixed.describe()["architecture"]
    mid = clone(fixed).set_params(layer="block_6_expand_relu", pooling="flatten")
    assert mid.output_dim((32, 32)) == 4 * 4 * 192
    probs = clone(fixed).set_params(layer="predictions").transform(images[:2])
    assert probs.shape == (2, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    assert "block_6_expand_relu" in fixed.layer_names()
    with pytest.raises(exc.InvalidInputError, match=r"`layer` must be.*received 'block_99'"):
        clone(fixed).set_params(layer="block_99").transform(images[:1])
    fps = {create_extractor(n, weights=None).fingerprint
           for n in ("resnet50", "mobilenet_v2", "densenet121")}
    assert fixed.fingerprint in fps  # batch_size does not change features
    assert len(fps | {clone(fixed).set_params(seed=1).fingerprint}) == 4


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"architecture": "ResNet9"}, exc.InvalidInputError, r"`architecture` must be one of"),
        ({"architecture": "InceptionV3", "input_size": 64}, exc.InvalidInputError,
         r"`input_size` must be at least 75 for InceptionV3; received 64"),
        ({"layer": 3}, exc.InvalidTypeError, r"`layer` must be None, 'predictions' or"),
        ({"pooling": "mean"}, exc.InvalidInputError, r"`pooling` must be one of.*'mean'"),
        ({"weights": "/nonexistent/w.h5"}, exc.WeightsNotFoundError, r"does not exist"),
        ({"weights": 3}, exc.InvalidTypeError, r"`weights` must be 'imagenet', None or a path"),
        ({"seed": 1.5}, exc.InvalidTypeError, r"`seed` must be an integer"),
    ],
)
def test_keras_app_bad_params_named_at_use(params, error, match) -> None:
    from transferkit.extractors import KerasApplicationExtractor

    with pytest.raises(error, match=match):
        KerasApplicationExtractor(**{"weights": None, **params}).fit()


def test_keras_app_minimum_input_size() -> None:
    tiny = make_images(1, size=40)
    inception = create_extractor("inception_v3", weights=None)
    with pytest.raises(exc.InvalidInputError, match="at least 75x75.*received 40x40.*input_size"):
        inception.transform(tiny)
    with pytest.raises(exc.InvalidInputError, match="at least 75x75.*received 32x32.*input_size"):
        inception.output_dim((32, 32))


@pytest.mark.parametrize(("name", "layer"), [("efficientnet_lite0", "stem_conv"),
                                           ("resnet50", "conv1_conv")])
def test_backbones_refuse_a_weights_file_missing_layers(name, layer, tmp_path) -> None:
    """A file lacking layers is refused, naming the file, by every backbone (as by VGG-16)."""
    import keras

    partial = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(
        32 if name == "efficientnet_lite0" else 64, 3, padding="same", name=layer)])
    path = tmp_path / "partial.weights.h5"
    partial.save_weights(path)
    with pytest.raises(exc.InvalidInputError, match=r"partial\.weights\.h5"):
        create_extractor(name, weights=str(path)).transform(make_images(1))


def test_generic_keras_app_estimate_at_sizes_below_its_native_minimum() -> None:
    from transferkit.extractors import KerasApplicationExtractor

    ext = KerasApplicationExtractor(architecture="InceptionV3", weights=None, input_size=299)
    est = ext.estimate(10, image_size=(32, 32))  # 32x32 is below InceptionV3's 75x75
    assert est.model_input_size == (299, 299) and est.native_flops_per_image is None


# ---------------------------------------------------------------------------- new backbones
class _TinyBackbone(FrozenBackbone):
    """A backbone written as a user would: only what differs from FrozenBackbone."""

    registry_name = "tiny"
    backbone_name = "TinyNet"
    layer_choices = ("conv", "predictions")
    min_input_size = 8

    def __init__(self, *, weights=None, layer="conv", pooling="avg", input_size=None,
                 resize_method="bilinear", batch_size=4, seed=0, dtype="float32") -> None:
        super().__init__(
            weights=weights, layer=layer, pooling=pooling, input_size=input_size,
            resize_method=resize_method, batch_size=batch_size, seed=seed, dtype=dtype,
        )

    def _build_base(self, size):
        import keras

        inputs = keras.Input((*size, 3))
        x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax",
                                                      name="predictions")(x))

    def _preprocessing(self):
        return "x/255", lambda x: x / np.float32(255.0)

    def _imagenet_weights_file(self, size):
        raise exc.WeightsNotFoundError("TinyNet has no ImageNet weights.")


def test_a_new_frozen_backbone_says_only_what_differs(tmp_path) -> None:
    images = make_images(5, size=12)
    tiny = _TinyBackbone()
    feats = tiny.transform(images)
    assert feats.shape == (5, 4) and feats.dtype == np.float32
    assert list(tiny.describe())[3:] == ["weights", "layer", "pooling", "input_size",
                                         "resize_method", "preprocessing", "dtype"]
    assert tiny.describe()["weights"] == {"random_seed": 0}
    assert tiny.set_params(seed=1).fingerprint != _TinyBackbone().fingerprint
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clone(tiny))).transform(images),
                                  tiny.transform(images))
    assert _TinyBackbone(pooling="flatten").transform(images).shape == (5, 10 * 10 * 4)
    assert _TinyBackbone(input_size=16, pooling="flatten").transform(images).shape == (5, 784)
    probs = _TinyBackbone(layer="predictions").transform(images)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert _TinyBackbone().estimate(10, image_size=(12, 12)).flops_per_image > 0
    np.testing.assert_array_equal(tiny.preprocess(images), images.astype(np.float32) / 255)
    # a weights file: loaded, identified by its hash, features as saved
    base = next(iter(tiny._forward_cache.values())).python_function.base
    path = tmp_path / "tiny.weights.h5"
    base.save_weights(path)
    from_file = _TinyBackbone(weights=str(path))
    np.testing.assert_array_equal(from_file.transform(images), tiny.transform(images))
    assert set(from_file.describe()["weights"]) == {"file_hash"}
    with pytest.raises(exc.WeightsNotFoundError, match="TinyNet"):
        _TinyBackbone(weights="imagenet").transform(images)
    with pytest.raises(exc.InvalidInputError, match="`layer` must be one of"):
        _TinyBackbone(layer="fc").fit()


# ---------------------------------------------------------------------------- cost estimate
def test_estimate_counts_every_registered_extractor(extractor) -> None:
    """`estimate` works for every extractor and reports the real feature width."""
    est = extractor.estimate(1000, image_size=(32, 32))
    assert est.feature_dim == extractor.output_dim((32, 32))
    assert est.feature_bytes == 1000 * est.feature_dim * 4 <= est.cache_bytes
    assert est.extractor == extractor.registry_name and est.n_images == 1000
    assert est.flops_per_image == 2 * est.macs_per_image > 0
    assert est.total_flops == 1000 * est.flops_per_image
    assert est.activation_bytes_per_image > 0
    assert est.batch_size > 0
