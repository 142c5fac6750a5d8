"""CifarCNN presets, augmentation, standardisation, schedules and the time budget.

The basics (fit/predict/save/load, errors, as an extractor) are in test_extractors.py;
tiny networks and data keep these fast.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_learnable

from transferkit import exceptions as exc
from transferkit.extractors import CifarCNN
from transferkit.extractors.cifar_cnn import PRESETS

TINY_FAST = dict(preset="fast", conv_filters=(8, 16, 16), batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def data():
    return make_learnable(256, seed=31), make_learnable(96, seed=32)


@pytest.fixture(scope="module")
def fast_model(data):
    (x, y), _ = data
    return CifarCNN(**TINY_FAST, epochs=4).fit(x, y)


def test_presets_resolve_and_explicit_values_override() -> None:
    talk = CifarCNN().resolved_params()
    assert talk["conv_filters"] == (64, 64) and talk["kernel_size"] == 5
    assert talk["dense_units"] == (256, 128) and talk["optimizer"] == "adam"
    assert talk["batch_size"] == 64 and talk["augment"] == ()
    fast = CifarCNN(preset="fast", epochs=3).resolved_params()
    assert fast["conv_filters"] == (64, 256, 256) and fast["epochs"] == 3
    assert fast["schedule"] == "one_cycle" and fast["tta"] and fast["label_smoothing"] == 0.2
    assert set(PRESETS) == {"talk", "fast"}
    assert CifarCNN(preset="fast").get_params()["epochs"] is None  # sklearn params stay as given


def test_fast_preset_learns_with_batch_norm_augmentation_and_tta(fast_model, data) -> None:
    _, (xt, yt) = data
    names = [layer.name for layer in fast_model.model_.layers]
    assert "alternating_flip" in names and any("translation" in n for n in names)
    assert "block3b_bn" in names and "features" in names
    assert fast_model.score(xt, yt) > 0.6  # chance: 1/3
    assert fast_model.transform(xt).shape == (96, 16)  # global max pool of the last block
    model = fast_model.model_

    def mirrored(x):
        return (np.asarray(model(x.astype("float32"), training=False))
                + np.asarray(model(x[:, :, ::-1].astype("float32"), training=False))) / 2

    # Half the weight on the image and its mirror, half on the 1-pixel shifts (trained
    # with translations) and their mirrors.
    padded = np.pad(xt, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    shifted = (mirrored(padded[:, :-2, :-2]) + mirrored(padded[:, 2:, 2:])) / 2
    expected = 0.5 * mirrored(xt) + 0.5 * shifted
    np.testing.assert_allclose(fast_model.predict_proba(xt), expected, atol=1e-6)
    flips_only = CifarCNN(**{**TINY_FAST, "augment": ("flip",)}, epochs=1).fit(xt, yt)
    np.testing.assert_allclose(
        flips_only.predict_proba(xt),
        (np.asarray(flips_only.model_(xt.astype("float32"), training=False))
         + np.asarray(flips_only.model_(xt[:, :, ::-1].astype("float32"), training=False))) / 2,
        atol=1e-6)
    # augmentation is off at inference: predictions are deterministic
    np.testing.assert_array_equal(fast_model.predict_proba(xt), fast_model.predict_proba(xt))


def test_dataset_standardisation_is_learned_in_fit(fast_model, data) -> None:
    (x, _), _ = data
    mean = x.reshape(-1, 3).astype(np.float64).mean(axis=0)
    std = x.reshape(-1, 3).astype(np.float64).std(axis=0)
    np.testing.assert_allclose(fast_model.mean_, mean, rtol=1e-4)
    np.testing.assert_allclose(fast_model.std_, std, rtol=1e-3)
    assert fast_model.model_.get_layer("standardize").__class__.__name__ == "Normalization"


def test_one_cycle_schedule_warms_up_and_decays_to_zero() -> None:
    from transferkit.extractors.cifar_cnn import OneCycle

    sched = OneCycle(peak=0.4, total_steps=100)
    lrs = np.array([float(sched(step)) for step in range(100)])
    assert lrs.argmax() in (19, 20) and abs(lrs.max() - 0.4) < 1e-6
    assert lrs[0] < 0.05 and lrs[-1] < 0.01
    assert np.all(np.diff(lrs[25:]) < 0)


def test_fast_preset_save_load_predicts_identically(fast_model, data, tmp_path) -> None:
    _, (xt, _) = data
    loaded = CifarCNN.load(fast_model.save(tmp_path / "fast.keras"))
    np.testing.assert_array_equal(loaded.predict_proba(xt), fast_model.predict_proba(xt))
    assert loaded.fingerprint == fast_model.fingerprint and loaded.preset == "fast"


def test_seeded_fast_fits_are_identical(data) -> None:
    (x, y), (xt, _) = data
    params = dict(TINY_FAST, epochs=1)
    a = CifarCNN(**params).fit(x[:96], y[:96])
    b = CifarCNN(**params).fit(x[:96], y[:96])
    np.testing.assert_array_equal(a.predict_proba(xt), b.predict_proba(xt))


def test_time_budget_chooses_epochs_to_end_within_it(data) -> None:
    (x, y), _ = data
    x, y = np.concatenate([x] * 2), np.concatenate([y] * 2)
    # A budget of several one-epoch fits on this machine, whatever its speed (the
    # planning logic itself is tested on a fake clock below).
    one = CifarCNN(**TINY_FAST, epochs=1).fit(x, y).fit_seconds_
    budget = max(8.0, 4 * one)
    cnn = CifarCNN(**TINY_FAST, epochs=500, max_minutes=budget / 60).fit(x, y)
    assert 1 <= cnn.epochs_planned_ < 500
    assert cnn.fit_seconds_ < budget
    steps = -(-len(x) // 32)
    assert cnn.schedule_steps_ == cnn.epochs_planned_ * steps


def _simulate_fit(monkeypatch, *, budget_s, steps, epochs, batch_s, trace_s=0.0, setup_s=0.0,
                  schedule=True):
    """Drive the time budget as Keras' fit loop does, on a fake clock.

    ``batch_s(epoch, batch)`` is the seconds one batch takes; the first batch also traces
    (``trace_s``), and ``setup_s`` passes before it (importing, building). Returns the
    budget, the plan after each epoch, the seconds used, and the schedule's final length.
    """
    from types import SimpleNamespace

    from transferkit.extractors import _time_budget
    from transferkit.extractors._training import OneCycle

    clock = [0.0]
    monkeypatch.setattr(_time_budget, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    sched = OneCycle(peak=1.0, total_steps=steps * epochs) if schedule else None
    budget = _time_budget.TimeBudget(budget_s, 0.0, steps=steps, epochs=epochs, schedule=sched)
    model = SimpleNamespace(stop_training=False)
    clock[0] = setup_s
    plans = []
    for epoch in range(epochs):
        for batch in range(steps):
            budget._batch_begin(batch)
            clock[0] += batch_s(epoch, batch) + (trace_s if epoch == batch == 0 else 0.0)
            budget._batch_end(batch, model)
            if model.stop_training:
                break
        budget._epoch_end(epoch, model)
        plans.append(budget.epochs)
        if model.stop_training:
            break
    length = int(float(sched.total_steps.numpy())) if schedule else None
    return budget, plans, clock[0], length


def test_time_budget_counts_tracing_once_on_a_slow_host(monkeypatch) -> None:
    # A slow host: 5 s to import and build, 20 s to trace, then 0.5 s per batch.
    budget, plans, used, length = _simulate_fit(
        monkeypatch, budget_s=120.0, steps=10, epochs=100, batch_s=lambda e, b: 0.5,
        trace_s=20.0, setup_s=5.0)
    # 114 s planned: 30 s for the first epoch (setup + trace), then 5 s per epoch.
    assert len(plans) == plans[-1] >= 16 and used <= 0.95 * 120.0
    assert max(plans) - min(plans) <= 1  # a steady machine gets a steady plan
    assert length == plans[-1] * 10  # the whole schedule ran, ending at its last step
    assert not budget.cut_short
    # Before, the first epoch's 30 s were taken as every epoch's: the plan fell to 3
    # epochs, and with a 2-minute trace on a 3-minute budget to a single epoch.
    _, plans, used, _ = _simulate_fit(
        monkeypatch, budget_s=180.0, steps=10, epochs=100, batch_s=lambda e, b: 0.5,
        trace_s=120.0)
    assert len(plans) >= 9 and used <= 0.95 * 180.0
    # Tracing alone longer than the budget: training stops after that first batch.
    budget, plans, used, _ = _simulate_fit(
        monkeypatch, budget_s=60.0, steps=10, epochs=100, batch_s=lambda e, b: 0.5,
        trace_s=70.0)
    assert budget.cut_short and len(plans) == 1 and used == 70.5


def test_time_budget_without_epochs_is_not_capped_by_the_preset(data, monkeypatch) -> None:
    from transferkit.extractors import cifar_cnn

    (x, y), _ = data
    monkeypatch.setattr(cifar_cnn, "_MAX_BUDGET_EPOCHS", 13)  # the preset says 10
    # Whatever the machine's speed, a budget of 10 minutes fits 13 epochs of 64 images.
    cnn = CifarCNN(**TINY_FAST, max_minutes=10).fit(x[:64], y[:64])
    assert cnn.epochs_planned_ == cnn.n_iter_ == 13
    capped = CifarCNN(**TINY_FAST, epochs=2, max_minutes=10).fit(x[:64], y[:64])
    assert capped.n_iter_ == 2  # an explicit `epochs` is the most the budget may use


def test_time_budget_stops_mid_epoch_only_as_a_last_resort(monkeypatch) -> None:
    # Planned at 1 s per batch; in epoch 10 the machine becomes 20 times slower, so that
    # epoch alone would take 200 s: training stops when the next batch would overrun.
    budget, plans, used, _ = _simulate_fit(
        monkeypatch, budget_s=200.0, steps=10, epochs=100,
        batch_s=lambda e, b: 1.0 if e < 10 else 20.0, trace_s=2.0)
    assert budget.cut_short and 180.0 <= used <= 200.0
    assert plans[0] >= 15 and len(plans) == 11
    # A slow-down between epochs is met by a shorter plan instead: no cut.
    budget, plans, used, length = _simulate_fit(
        monkeypatch, budget_s=200.0, steps=10, epochs=100,
        batch_s=lambda e, b: 1.0 if e < 3 else 4.0, trace_s=2.0)
    assert not budget.cut_short and used <= 190.0 and length == 10 * len(plans)


def test_time_budget_warns_when_cut_short(data, monkeypatch) -> None:
    from transferkit.extractors._time_budget import TimeBudget

    (x, y), _ = data

    def slows_down(self, batch, model):  # as if every batch ended past the budget
        self.cut_short = self._decided
        if self.cut_short:
            model.stop_training = True
        else:
            original(self, batch, model)

    original = TimeBudget._batch_end
    monkeypatch.setattr(TimeBudget, "_batch_end", slows_down)
    with pytest.warns(UserWarning, match=r"stopped training in epoch \d of \d.*max_minutes=5"):
        CifarCNN(**TINY_FAST, epochs=3, max_minutes=5).fit(x[:64], y[:64])


def test_time_budget_halves_the_fast_preset_when_too_few_epochs_fit(data, monkeypatch) -> None:
    from transferkit.extractors import cifar_cnn

    (x, y), (xt, yt) = data
    monkeypatch.setattr(cifar_cnn, "_MIN_EPOCHS_FULL_WIDTH", 10**6)  # never enough epochs
    cnn = CifarCNN(preset="fast", batch_size=64, epochs=10**6, max_minutes=0.2,
                   random_state=0).fit(x[:128], y[:128])
    assert cnn.conv_filters_ == (32, 128, 128)
    assert cnn.model_.get_layer("block3b").filters == 128
    assert cnn.describe()["architecture"]["conv_filters"] == [32, 128, 128]
    assert cnn.n_iter_ == cnn.epochs_planned_ >= 1
    assert cnn.transform(xt[:4]).shape == (4, 128)
    # Widths given explicitly are never changed.
    mine = CifarCNN(**TINY_FAST, epochs=10**6, max_minutes=0.1).fit(x[:64], y[:64])
    assert mine.conv_filters_ == (8, 16, 16)


def test_time_budget_replans_longer_or_shorter_as_the_machine_changes_speed(
        monkeypatch) -> None:
    # Epochs of 10 batches at 2, 0.5, 3.5, then 2 s per batch: 20, 5, 35, 20 s.
    speeds = [2.0, 0.5, 3.5] + [2.0] * 100
    budget, plans, used, length = _simulate_fit(
        monkeypatch, budget_s=100.0, steps=10, epochs=50, batch_s=lambda e, b: speeds[e])
    # Planned at 2 s per batch (21.6 s per epoch with overhead): 4 epochs. After the fast
    # epoch (a 12.5 s mean), 70 s left fit 5 more: 7. After the slow one (35 s, slower
    # than the mean), 1 more: 4. Then 20 s per epoch with 20 s left: none.
    assert plans == [4, 7, 4, 4]
    assert length == 40 and used <= 95.0 and not budget.cut_short


def test_patch_whitening_kernel_whitens_2x2_patches() -> None:
    from transferkit.extractors._training import patch_whitening_kernel

    rng = np.random.default_rng(0)
    mix = np.array([[1.0, 0.8, 0.2], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    images = (rng.normal(size=(64, 9, 9, 3)) @ mix).astype(np.float32)  # correlated channels
    kernel = patch_whitening_kernel(images, eps=1e-9)
    assert kernel.shape == (2, 2, 3, 24)
    patches = np.stack([images[:, dy:dy + 8, dx:dx + 8] for dy in (0, 1) for dx in (0, 1)],
                       axis=3).reshape(-1, 12)
    out = (patches - patches.mean(0)) @ kernel.reshape(12, 24)[:, :12]
    np.testing.assert_allclose(np.cov(out, rowvar=False), np.eye(12), atol=1e-3)
    np.testing.assert_array_equal(kernel[..., 12:], -kernel[..., :12])


def test_fast_convolutions_start_as_identity_maps() -> None:
    from transferkit.extractors._layers import DiracUniform

    kernel = np.asarray(DiracUniform(seed=3)((3, 3, 4, 6)))
    for i in range(4):  # the first min(in, out) filters copy channel i through
        expected = np.zeros((3, 3, 4))
        expected[1, 1, i] = 1.0
        np.testing.assert_array_equal(kernel[..., i], expected)
    rest = kernel[..., 4:]
    assert 0 < np.abs(rest).max() <= 1 / np.sqrt(3 * 3 * 4) and rest.std() > 0.05
    np.testing.assert_array_equal(np.asarray(DiracUniform(seed=3)((3, 3, 4, 6))), kernel)
    wide = np.asarray(DiracUniform(seed=3)((3, 3, 8, 2)))  # fewer outputs than inputs
    assert wide[1, 1, 1, 1] == 1.0 and np.count_nonzero(wide) == 2
    with pytest.raises(ValueError, match="4-D"):
        DiracUniform()((3, 4))
    untrained = CifarCNN(**TINY_FAST, epochs=1)._build_model(
        (12, 12, 3), 3, np.zeros((4, 12, 12, 3), np.uint8))
    block = untrained.get_layer("block2b").get_weights()[0]  # 16 -> 16 channels
    np.testing.assert_array_equal(block[1, 1], np.eye(16))


def test_alternating_flip_mirrors_every_other_epoch_in_training_only(data, monkeypatch) -> None:
    from transferkit.extractors._layers import AlternatingFlip

    images = np.arange(2 * 3 * 4 * 3, dtype="float32").reshape(2, 3, 4, 3)
    layer = AlternatingFlip()
    np.testing.assert_array_equal(np.asarray(layer(images, training=True)), images)
    layer.mirrored.assign(1.0)
    np.testing.assert_array_equal(np.asarray(layer(images, training=True)), images[:, :, ::-1])
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)

    (x, y), _ = data
    before = x.copy()
    seen = []  # the side each epoch trains on
    from transferkit.extractors import cifar_cnn

    original = cifar_cnn.alternating_flip_callback

    def spy(layer):
        callback = original(layer)
        begin = callback.on_epoch_begin

        def on_epoch_begin(epoch, logs=None):
            begin(epoch, logs)
            seen.append(float(layer.mirrored.numpy()))

        callback.on_epoch_begin = on_epoch_begin
        return callback

    monkeypatch.setattr(cifar_cnn, "alternating_flip_callback", spy)
    cnn = CifarCNN(**TINY_FAST, epochs=3).fit(x[:64], y[:64])
    assert seen == [0.0, 1.0, 0.0]
    np.testing.assert_array_equal(x, before)  # the caller's images are not mirrored in place
    assert cnn.model_.get_layer("alternating_flip").trainable_weights == []


def test_lookahead_pulls_weights_towards_their_running_average() -> None:
    import keras

    from transferkit.extractors._training import lookahead_callback

    inputs = keras.Input((2,))
    x = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")(inputs)
    model = keras.Model(inputs, keras.layers.BatchNormalization()(x))
    kernel = model.layers[1].kernel
    callback = lookahead_callback(2, lambda: 8.0, start_epoch=1, every=2, decay=0.5, power=1)
    callback.set_model(model)
    callback.on_train_begin()
    assert len(callback.variables) == 5  # kernel, gamma, beta + moving mean and variance
    for step, w in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], start=1):
        kernel.assign([[w], [w]])  # "training" moves the kernel to w
        callback.on_train_batch_end(step - 1)
        if step == 4:  # the first averaging step (after epoch 1): the average starts at w
            np.testing.assert_allclose(np.asarray(kernel), [[4.0], [4.0]])
    # step 6: rho = 0.5**2 * (6/8) = 0.1875 -> a = 0.1875 * 4 + 0.8125 * 6
    np.testing.assert_allclose(np.asarray(kernel), [[0.1875 * 4 + 0.8125 * 6]] * 2, rtol=1e-6)
    kernel.assign([[9.0], [9.0]])
    callback.on_epoch_end(2)  # the epoch ends on the average, not on the last step
    np.testing.assert_allclose(np.asarray(kernel), [[0.1875 * 4 + 0.8125 * 6]] * 2, rtol=1e-6)


def test_fit_with_lookahead_and_boolean_switches_are_checked(data) -> None:
    (x, y), (xt, yt) = data
    cnn = CifarCNN(**TINY_FAST, epochs=5, lookahead=True).fit(x, y)
    assert cnn.resolved_params()["lookahead"] is True and cnn.n_iter_ == 5
    assert cnn.score(xt, yt) > 0.6
    for name in ("lookahead", "tta"):
        with pytest.raises(exc.InvalidTypeError, match=f"`{name}` must be True or False"):
            CifarCNN(**TINY_FAST, epochs=1, **{name: "yes"}).fit(x[:20], y[:20])


def test_talk_augmentations_and_validation_data_with_early_stopping(data) -> None:
    (x, y), (xt, yt) = data
    cnn = CifarCNN(
        conv_filters=(4,), dense_units=(8,), augment=("flip", "zoom", "brightness"), epochs=8,
        early_stopping=True, patience=1, random_state=0,
    ).fit(x, y, validation_data=(xt, yt))
    assert "val_accuracy" in cnn.history_
    names = [layer.name for layer in cnn.model_.layers]
    assert any("zoom" in n for n in names) and any("brightness" in n for n in names)


@pytest.mark.parametrize(
    ("params", "fit_kwargs", "match"),
    [
        ({"preset": "huge"}, {}, r"`preset` must be one of \['talk', 'fast'\]"),
        ({"augment": ("flip", "rotate")}, {}, r"`augment` must be a tuple of names"),
        ({"optimizer": "rmsprop"}, {}, r"`optimizer` must be one of"),
        ({"label_smoothing": 1.5}, {}, r"`label_smoothing` must be a number"),
        ({"max_minutes": 0}, {}, r"`max_minutes` must be a positive number"),
        ({"standardize": "zscore"}, {}, r"`standardize` must be one of"),
        ({}, {"validation_data": "nope"}, r"`validation_data` must be a pair"),
        ({}, {"validation_data": (np.zeros((2, 32, 32, 3), np.uint8), [7, 7])},
         r"`validation_data\[1\]`.*unseen classes"),
    ],
)
def test_bad_settings_are_named(data, params, fit_kwargs, match) -> None:
    (x, y), _ = data
    with pytest.raises(exc.InvalidInputError, match=match):
        CifarCNN(conv_filters=(4,), dense_units=(4,), epochs=1, **params).fit(
            x[:20], y[:20], **fit_kwargs)


def test_trunk_features_go_through_the_cache(fast_model, data, tmp_path) -> None:
    from transferkit import FeatureCache

    _, (xt, _) = data
    cache = FeatureCache(tmp_path / "cnn.h5")
    np.testing.assert_array_equal(cache.extract(fast_model, xt), fast_model.transform(xt))
    (entry,) = cache.entries()
    assert entry.extractor == "cifar_cnn"
    assert entry.extractor_config["weights"]["trained_hash"] == fast_model.weights_hash_


def test_fit_takes_a_labelled_pipeline_with_its_class_names(data) -> None:
    """fit(ds): the images and labels of a tf.data pipeline; classes_ are its class names."""
    from transferkit.datasets import from_keras_data

    tf = pytest.importorskip("tensorflow")
    (x, y), _ = data
    x, y = x[:64], y[:64]
    ds = from_keras_data(tf.data.Dataset.from_tensor_slices((x, y)).batch(16),
                         class_names=["red", "green", "blue"])
    model = CifarCNN(**TINY_FAST, epochs=1).fit(ds)
    assert list(model.classes_) == ["blue", "green", "red"]
    reference = CifarCNN(**TINY_FAST, epochs=1).fit(x, np.asarray(["red", "green", "blue"])[y])
    np.testing.assert_allclose(model.predict_proba(ds), reference.predict_proba(x), atol=1e-5)
