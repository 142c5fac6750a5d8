"""One exportable classifier: .keras, SavedModel and TFLite give the library's predictions."""

from __future__ import annotations

import numpy as np
import pytest
from _tiny_blocks import TinyBlocks
from conftest import make_learnable
from sklearn.linear_model import LogisticRegression

from transferkit import (
    DenseHead,
    FineTuner,
    SklearnHead,
    classifier_model,
    export_classifier,
    load_classifier,
)
from transferkit import exceptions as exc
from transferkit.heads import class_probabilities


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_learnable(60, size=16, seed=5)
    return x, np.array(["red", "green", "blue"])[y]


@pytest.fixture(scope="module")
def head(data) -> SklearnHead:
    x, y = data
    return SklearnHead(LogisticRegression(max_iter=500)).fit(TinyBlocks().transform(x), y)


def test_frozen_backbone_and_head_export_as_one_keras_model(data, head, tmp_path) -> None:
    x, _ = data
    ext = TinyBlocks()
    expected = class_probabilities(head, ext.transform(x))
    model = classifier_model(ext, head, image_size=(16, 16))
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=2e-5)
    path = export_classifier(ext, tmp_path / "clf.keras", head=head, image_size=(16, 16))
    loaded = load_classifier(path)  # safe mode
    np.testing.assert_allclose(loaded.predict_proba(x), expected, atol=2e-5)
    assert loaded.classes_.tolist() == head.classes_.tolist()
    assert loaded.image_size == (16, 16)
    # any image size: resized to the head's size inside
    big = np.repeat(np.repeat(x[:4], 2, axis=1), 2, axis=2)
    assert loaded.predict_proba(big).shape == (4, 3)


def test_dense_head_and_an_input_size_backbone(data, tmp_path) -> None:
    x, y = data
    ext = TinyBlocks(input_size=24)
    dense = DenseHead(hidden_units=(8,), epochs=2, random_state=0).fit(ext.transform(x), y)
    path = export_classifier(ext, tmp_path / "d.keras", head=dense)  # size from input_size
    assert load_classifier(path).image_size == (24, 24)


def test_fine_tuned_classifier_exports_to_every_format(data, head, tmp_path) -> None:
    x, y = data
    ft = FineTuner(extractor=TinyBlocks(), head=head, epochs=1, batch_size=16,
                   random_state=0, checkpoint_dir=None).fit(x, y)
    expected = ft.predict_proba(x)
    keras_file = ft.export(tmp_path / "ft.keras")
    np.testing.assert_allclose(load_classifier(keras_file).predict_proba(x), expected,
                               atol=2e-5)
    saved = ft.export(tmp_path / "ft_saved", format="saved_model")
    served = load_classifier(saved)
    np.testing.assert_allclose(served.predict_proba(x), expected, atol=2e-5)
    assert served.classes_.tolist() == ["blue", "green", "red"]
    import tensorflow as tf

    names = tf.saved_model.load(str(saved)).signatures["class_names"]()["class_names"]
    assert [n.decode() for n in names.numpy()] == ["blue", "green", "red"]
    tflite = ft.export(tmp_path / "ft.tflite", format="tflite")
    interpreter = tf.lite.Interpreter(model_path=str(tflite))
    runner = interpreter.get_signature_runner("serve")
    out = runner(images=x[:4])["probabilities"]
    np.testing.assert_allclose(out, expected[:4], atol=1e-4)
    assert (tmp_path / "ft.json").is_file()


def test_export_refuses_bad_input(data, head, tmp_path) -> None:
    with pytest.raises(exc.InvalidInputError, match="`format` must be one of"):
        export_classifier(TinyBlocks(), tmp_path / "x.keras", head=head, format="onnx",
                          image_size=(16, 16))
    with pytest.raises(exc.InvalidInputError, match="must end in '.keras'"):
        export_classifier(TinyBlocks(), tmp_path / "x.h5", head=head, image_size=(16, 16))
    with pytest.raises(exc.InvalidInputError, match="`image_size` is needed"):
        export_classifier(TinyBlocks(), tmp_path / "x.keras", head=head)
    wide = SklearnHead().fit(np.random.default_rng(0).normal(size=(9, 5)), np.arange(9) % 3)
    with pytest.raises(exc.InvalidInputError, match="fitted on 5 features"):
        export_classifier(TinyBlocks(), tmp_path / "x.keras", head=wide, image_size=(16, 16))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(exc.InvalidInputError, match="junk.keras"):
        load_classifier(tmp_path / "junk.keras")
