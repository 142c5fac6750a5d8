"""FineTuner: warm start, which layers train, resume after a kill, the fine-tuned extractor."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from _tiny_blocks import TinyBlocks
from conftest import NumpyExtractor, make_learnable
from sklearn.linear_model import LogisticRegression

from transferkit import DenseHead, FeatureCache, FineTunedExtractor, FineTuner, SklearnHead
from transferkit import exceptions as exc
from transferkit.heads import class_probabilities, save_head

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_learnable(96, size=16, seed=3)


@pytest.fixture(scope="module")
def fitted_head(data) -> SklearnHead:
    x, y = data
    return SklearnHead(LogisticRegression(max_iter=500)).fit(TinyBlocks().transform(x), y)


def _tuner(head, **kw) -> FineTuner:
    params = dict(extractor=TinyBlocks(), head=head, epochs=2, batch_size=16, random_state=0,
                  checkpoint_dir=None)
    params.update(kw)
    return FineTuner(**params)


def test_warm_start_reproduces_the_heads_predictions(data, fitted_head) -> None:
    x, y = data
    ft = _tuner(fitted_head, learning_rate=1e-12, epochs=1).fit(x, y)
    expected = class_probabilities(fitted_head, TinyBlocks().transform(x))
    np.testing.assert_allclose(ft.predict_proba(x), expected, atol=2e-5)
    np.testing.assert_array_equal(ft.classes_, fitted_head.classes_)


def test_dense_head_warm_start_too(data) -> None:
    x, y = data
    head = DenseHead(hidden_units=(8,), epochs=3, random_state=0).fit(TinyBlocks().transform(x), y)
    ft = _tuner(head, learning_rate=1e-12, epochs=1).fit(x, y)
    expected = class_probabilities(head, TinyBlocks().transform(x))
    np.testing.assert_allclose(ft.predict_proba(x), expected, atol=2e-5)


def test_only_the_top_blocks_train_and_batchnorm_statistics_stay(data, fitted_head) -> None:
    x, y = data
    start = TinyBlocks().feature_model((16, 16))
    ft = _tuner(fitted_head, trainable_blocks=1, learning_rate=0.05).fit(x, y)
    assert ft.blocks_trained_ == ["block2"]
    tuned = ft.backbone_
    for name in ("block1_conv", "block1_bn"):
        for a, b in zip(start.get_layer(name).get_weights(),
                        tuned.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    k0, k1 = start.get_layer("block2_conv").get_weights()[0], tuned.get_layer(
        "block2_conv").get_weights()[0]
    assert not np.allclose(k0, k1)
    bn0, bn1 = start.get_layer("block2_bn"), tuned.get_layer("block2_bn")
    np.testing.assert_array_equal(bn0.moving_mean.numpy(), bn1.moving_mean.numpy())
    # asked for: statistics follow the data
    ft2 = _tuner(fitted_head, trainable_blocks="all", train_batchnorm=True).fit(x, y)
    assert ft2.blocks_trained_ == ["block1", "block2"]
    assert not np.allclose(bn0.moving_mean.numpy(),
                           ft2.backbone_.get_layer("block2_bn").moving_mean.numpy())


def test_backbone_learning_rate_is_scaled() -> None:
    import tensorflow as tf

    from transferkit.fine_tune._model import GradientScale

    x = tf.constant([[1.0, 2.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(GradientScale(0.25)(x) * 3.0)
    np.testing.assert_allclose(tape.gradient(out, x).numpy(), [[0.75, 0.75]])


def test_fine_tuning_learns_and_is_seeded(data, fitted_head) -> None:
    x, y = data
    a = _tuner(fitted_head, epochs=3, learning_rate=0.05, trainable_blocks="all").fit(x, y)
    b = _tuner(fitted_head, epochs=3, learning_rate=0.05, trainable_blocks="all").fit(x, y)
    assert a.history_["loss"][-1] < a.history_["loss"][0]
    assert a.n_iter_ == 3 and a.score(x, y) >= 0.5
    np.testing.assert_allclose(a.predict_proba(x), b.predict_proba(x), atol=1e-6)


def test_fine_tuned_backbone_is_a_new_extractor(data, fitted_head, tmp_path) -> None:
    x, y = data
    ft = _tuner(fitted_head, learning_rate=0.05, trainable_blocks="all").fit(x, y)
    ext = ft.extractor_
    assert isinstance(ext, FineTunedExtractor)
    assert ext.fingerprint != TinyBlocks().fingerprint
    assert ext.describe()["base"] == TinyBlocks().describe()
    cache = FeatureCache(tmp_path / "c.h5")
    frozen = cache.extract(TinyBlocks(), x)
    tuned = cache.extract(ext, x)
    assert len(cache.entries()) == 2
    assert not np.allclose(frozen, tuned)
    np.testing.assert_allclose(tuned, ext.transform(x), rtol=1e-5, atol=1e-6)
    # heads refit on it as on frozen features
    assert SklearnHead().fit(tuned, y).score(tuned, y) >= 0.5
    path = ext.save(tmp_path / "tuned.keras")
    again = FineTunedExtractor.load(path)
    assert again.fingerprint == ext.fingerprint
    np.testing.assert_allclose(again.transform(x), tuned, rtol=1e-5, atol=1e-6)


_RUNNER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from _tiny_blocks import TinyBlocks
    from conftest import make_learnable
    from sklearn.linear_model import LogisticRegression
    from transferkit import FineTuner, SklearnHead
    x, y = make_learnable(96, size=16, seed=3)
    head = SklearnHead(LogisticRegression(max_iter=500)).fit(TinyBlocks().transform(x), y)
    ft = FineTuner(extractor=TinyBlocks(), head=head, epochs=int(sys.argv[2]), batch_size=16,
                   random_state=0, checkpoint_dir=sys.argv[1], learning_rate=0.05)
    print("ready", flush=True)
    ft.fit(x, y)
    print("done", flush=True)
    """
)


def test_resumes_from_the_last_epoch_after_a_kill(tmp_path, data, fitted_head) -> None:
    x, y = data
    script = tmp_path / "run.py"
    script.write_text(_RUNNER.format(tests=str(TESTS)))
    folder = tmp_path / "ckpt"
    epochs = 40
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(epochs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if folder.is_dir() and any(folder.glob("fine-tune-*.npz")):  # not a temp file
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    assert len(list(folder.glob("fine-tune-*.npz"))) == 1
    # Another call (another seed) starts over and leaves the first run's checkpoint alone.
    with warnings.catch_warnings(record=True) as other:
        warnings.simplefilter("always")
        _tuner(fitted_head, checkpoint_dir=folder, random_state=1, epochs=1).fit(x, y)
    assert not [w for w in other if "resuming" in str(w.message)]
    assert len(list(folder.glob("fine-tune-*.npz"))) == 1
    # The same call resumes after the last completed epoch, and says so.
    same = _tuner(fitted_head, checkpoint_dir=folder, epochs=epochs, learning_rate=0.05)
    with pytest.warns(UserWarning, match="resuming from the checkpoint of epoch") as caught:
        same.fit(x, y)
    assert 1 <= same.resumed_from_epoch_ < epochs, [str(w.message) for w in caught]
    assert same.n_iter_ == epochs and len(same.history_["loss"]) == epochs
    assert list(folder.glob("fine-tune-*.npz")) == []  # a completed run removes it
    assert same.score(x, y) >= 0.5


def test_bad_input_is_refused_before_training(data, fitted_head, tmp_path) -> None:
    x, y = data
    with pytest.raises(exc.InvalidTypeError, match="`extractor` must be"):
        FineTuner(extractor="vgg16", head=fitted_head).fit(x, y)
    with pytest.raises(exc.InvalidInputError, match="cannot"):
        FineTuner(extractor=NumpyExtractor(), head=SklearnHead().fit(
            NumpyExtractor().transform(x), y), checkpoint_dir=None).fit(x, y)
    wide = SklearnHead().fit(np.random.default_rng(0).normal(size=(len(y), 5)), y)
    with pytest.raises(exc.InvalidInputError, match="fitted on 5 features"):
        _tuner(wide).fit(x, y)
    with pytest.raises(exc.InvalidInputError, match="`y`"):
        _tuner(fitted_head).fit(x, np.where(y == 0, 7, y))
    with pytest.raises(exc.InvalidInputError, match="not fitted"):
        _tuner(SklearnHead()).fit(x, y)
    for name, value in (("trainable_blocks", -1), ("trainable_blocks", 3),
                        ("backbone_lr_scale", 0.0), ("learning_rate", -1.0),
                        ("augment", ("rotate",)), ("max_minutes", 0),
                        ("label_smoothing", 1.0)):
        with pytest.raises(exc.InvalidInputError, match=f"`{name}`"):
            _tuner(fitted_head, **{name: value}).fit(x, y)
    # an extractor whose weights are unavailable: its own error, before any training
    with pytest.raises(exc.WeightsNotFoundError, match="TinyBlocks"):
        FineTuner(extractor=TinyBlocks(weights="imagenet"), head=fitted_head,
                  checkpoint_dir=None).fit(x, y)
    # a head file fitted on another extractor's features
    path = tmp_path / "other.tkhead"
    save_head(fitted_head, path, provenance={"extractor": {"fingerprint": "f" * 64}})
    with pytest.raises(exc.InvalidInputError, match="another extractor"):
        _tuner(str(path)).fit(x, y)


def test_a_budget_too_small_for_one_epoch_is_refused(tmp_path, fitted_head) -> None:
    x, y = make_learnable(2000, size=16, seed=3)
    ft = _tuner(fitted_head, max_minutes=0.001, batch_size=8, checkpoint_dir=tmp_path)
    with pytest.raises(exc.InvalidInputError, match="`max_minutes`.*too small for one epoch"):
        ft.fit(x, y)
    assert list(tmp_path.iterdir()) == []


def test_a_diverging_fine_tune_is_an_error_not_a_nan_model(data, fitted_head, tmp_path) -> None:
    x, y = data
    with pytest.raises(exc.TransferkitError, match="diverged.*lower `learning_rate`"):
        _tuner(fitted_head, learning_rate=1e6, trainable_blocks="all",
               checkpoint_dir=tmp_path).fit(x, y)
    assert list(tmp_path.glob("fine-tune-*.npz")) == []  # no NaN checkpoint either


def test_check_params_refuses_bad_settings_without_training(fitted_head) -> None:
    assert _tuner(fitted_head).check_params().head is fitted_head
    with pytest.raises(exc.InvalidInputError, match="`backbone_lr_scale`"):
        _tuner(fitted_head, backbone_lr_scale=2.0).check_params()
    with pytest.raises(exc.InvalidInputError, match="`head`"):
        _tuner(SklearnHead()).check_params()


def test_unfitted_use_is_refused() -> None:
    with pytest.raises(exc.NotFittedError, match="call `fit`"):
        FineTuner().predict(np.zeros((1, 16, 16, 3), np.uint8))


def _cifar_cnn(x, y):
    from transferkit import CifarCNN

    return CifarCNN(preset="fast", conv_filters=(8, 16, 16), epochs=1, batch_size=32,
                    max_minutes=None, random_state=0).fit(x, y)


@pytest.mark.parametrize("make", [
    pytest.param(lambda x, y: __import__("transferkit").EfficientNetLite0Extractor(
        weights=None, input_size=32), id="efficientnet_lite0"),
    pytest.param(lambda x, y: __import__("transferkit").VGG16Extractor(weights=None),
                 id="vgg16"),
    pytest.param(lambda x, y: __import__("transferkit").create_extractor(
        "mobilenet_v2", weights=None, input_size=32), id="mobilenet_v2"),
    pytest.param(_cifar_cnn, id="cifar_cnn"),
])
def test_every_kind_of_backbone_fine_tunes(make) -> None:
    x, y = make_learnable(32, size=32, seed=1)
    ext = make(x, y)
    head = SklearnHead(LogisticRegression(max_iter=300)).fit(ext.transform(x), y)
    ft = FineTuner(extractor=ext, head=head, trainable_blocks=1, epochs=1, batch_size=16,
                   learning_rate=1e-12, checkpoint_dir=None, random_state=0).fit(x, y)
    assert len(ft.blocks_trained_) == 1
    # the warm start, unchanged by a negligible step: the head's own predictions
    np.testing.assert_allclose(ft.predict_proba(x),
                               class_probabilities(head, ext.transform(x)), atol=1e-4)
    assert ft.extractor_.fingerprint != ext.fingerprint
    assert ft.extractor_.transform(x[:4]).shape == (4, ext.output_dim((32, 32)))


def test_partial_fine_tuning_from_cached_activations(data, fitted_head, tmp_path) -> None:
    x, y = data
    cache_path = tmp_path / "acts.h5"
    ft = _tuner(fitted_head, trainable_blocks=1, augment=("flip",), learning_rate=0.05,
                activation_cache=cache_path, epochs=3).fit(x, y)
    from transferkit import FeatureCache

    entries = FeatureCache(cache_path).entries()
    assert len(entries) == 2 and all(e.n_images == len(x) for e in entries)  # 2 views
    assert ft.blocks_trained_ == ["block2"] and ft.n_iter_ == 3
    assert ft.history_["loss"][-1] < ft.history_["loss"][0]
    start = TinyBlocks().feature_model((16, 16))
    # the bottom never changes; the top's trained weights are in the backbone
    np.testing.assert_array_equal(start.get_layer("block1_conv").get_weights()[0],
                                  ft.backbone_.get_layer("block1_conv").get_weights()[0])
    assert not np.allclose(start.get_layer("block2_conv").get_weights()[0],
                           ft.backbone_.get_layer("block2_conv").get_weights()[0])
    # predictions go through the whole network and match its features
    np.testing.assert_allclose(ft.extractor_.transform(x),
                               np.asarray(ft.backbone_(x.astype(np.float32))), atol=1e-5)
    assert ft.score(x, y) >= 0.5
    # the second run reuses the cached activations (no new entries)
    _tuner(fitted_head, trainable_blocks=1, augment=("flip",), activation_cache=cache_path,
           epochs=1).fit(x, y)
    assert len(FeatureCache(cache_path).entries()) == 2
    for bad in ({"trainable_blocks": "all"}, {"augment": ("flip", "translate")}):
        with pytest.raises(exc.InvalidInputError, match="activation_cache|augment"):
            _tuner(fitted_head, activation_cache=cache_path, **bad).fit(x, y)


def test_fit_takes_a_tf_dataset_with_its_labels(data, fitted_head) -> None:
    """A labelled tf.data pipeline stands for (X, y): the same fit as the arrays'."""
    tf = pytest.importorskip("tensorflow")
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    a = _tuner(fitted_head, epochs=1, learning_rate=0.05).fit(ds)
    b = _tuner(fitted_head, epochs=1, learning_rate=0.05).fit(x, y)
    np.testing.assert_allclose(a.predict_proba(ds), b.predict_proba(x), atol=1e-6)
    val = tf.data.Dataset.from_tensor_slices((x[:20], y[:20]))
    c = _tuner(fitted_head, epochs=1, learning_rate=0.05).fit(ds, validation_data=val)
    assert "val_accuracy" in c.history_
    with pytest.raises(exc.InvalidInputError, match="`y` is required: `X` carries no labels"):
        _tuner(fitted_head).fit(tf.data.Dataset.from_tensor_slices(x))
