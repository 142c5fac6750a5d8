"""CifarCNN, DenseHead and FineTuner on a tf.distribute.Strategy (transferkit/_strategy.py).

Several replicas need logical devices, which TensorFlow only accepts before it has
initialised its devices: the MirroredStrategy scenario (2 logical CPUs) and the
MultiWorkerMirroredStrategy cluster (2 local worker processes) run in fresh processes
(tests/strategy_scenario.py) and report JSON. The rest runs in-process on one-replica
strategies (the default strategy, OneDeviceStrategy), which exercise the same code paths:
scope, batch arithmetic, clone, pickling and saving.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_learnable
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from transferkit import _strategy
from transferkit.exceptions import InvalidInputError, InvalidTypeError
from transferkit.extractors import CifarCNN
from transferkit.heads import DenseHead, load_head

SCENARIO = Path(__file__).with_name("strategy_scenario.py")
TINY_CNN = dict(preset="fast", conv_filters=(8, 16), epochs=1, batch_size=16, random_state=0)
TINY_HEAD = dict(hidden_units=(8,), epochs=2, batch_size=16, learning_rate=0.01, random_state=0)


def _run_scenario(mode: str, *, env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(SCENARIO), mode], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _result(proc: subprocess.Popen, timeout: float) -> dict:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"scenario timed out after {timeout} s:\n{err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    return x, np.argmax(x[:, :3], axis=1)


@pytest.fixture(scope="module")
def one_device():
    import tensorflow as tf

    return tf.distribute.OneDeviceStrategy("/cpu:0")


# ----------------------------------------------------------------- several replicas


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus() -> None:
    r = _result(_run_scenario("mirrored"), timeout=300)
    assert r["logical_cpus"] == 2 and r["replicas"] == 2
    # CifarCNN: batch_size=16 per replica -> 32 per step; 199 images -> 198 (even split)
    assert r["cnn_global_batch"] == 32
    assert r["cnn_steps_per_epoch"] == 7  # ceil(198 / 32)
    assert r["cnn_schedule_steps"] == 14  # the one-cycle schedule counts global steps
    assert r["cnn_n_iter"] == 2 and r["cnn_history_keys"] == ["accuracy", "loss"]
    assert r["cnn_accuracy"] > 0.6  # chance: 1/3
    assert r["cnn_feature_shape"] == [60, 16]
    for key in ("cnn_saveload_proba_equal", "cnn_saveload_features_equal",
                "cnn_pickle_proba_equal", "cnn_loaded_strategy_is_none",
                "cnn_pickle_strategy_is_none", "cnn_clone_keeps_strategy",
                "cnn_still_has_strategy"):
        assert r[key] is True, key
    # Same seed, same global batch: MirroredStrategy averages the replicas' gradients,
    # so without batch norm, dropout or augmentation a step is the single-device step.
    assert r["talk_loss_rel_diff"] < 1e-4, (r["talk_loss_strategy"], r["talk_loss_single"])
    # DenseHead: same global batch and seeds, but not the same data order: a model built
    # in a strategy scope makes Keras draw one batch from a fresh iterator before
    # training (to build its metrics), which advances the tf.data shuffle's seed, so
    # epoch k sees the permutation a single-device run uses in epoch k + 1. The loss
    # trajectories are then close, not equal; the strategy run is still repeatable.
    assert r["head_global_batch"] == 32
    assert r["head_loss_rel_diff"] < 0.15, (r["head_loss_strategy"], r["head_loss_single"])
    assert r["head_loss_strategy"][-1] < 0.6 * r["head_loss_strategy"][0]
    assert r["head_repeatable"] is True
    assert r["head_accuracy"] > 0.7 and r["head_single_accuracy"] > 0.7  # chance: ~1/3
    assert r["head_n_iter"] == 5
    assert r["head_history_keys"] == ["accuracy", "loss", "val_accuracy", "val_loss"]
    for key in ("head_saveload_proba_equal", "head_pickle_proba_equal",
                "head_loaded_strategy_is_none", "head_clone_keeps_strategy"):
        assert r[key] is True, key
    # FineTuner: the CNN's trunk and its cached head, trained together on 2 replicas.
    assert r["ft_n_iter"] == 2 and r["ft_blocks"] == ["block2"]
    assert r["ft_loss_finite"] is True and r["ft_clone_keeps_strategy"] is True
    assert r["ft_accuracy"] > 0.6


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_on_two_local_workers() -> None:
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = [
        _run_scenario("worker", env={"TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]
    results = [_result(p, timeout=180) for p in procs]
    for r in results:
        assert r["replicas"] == 2 and r["spans_workers"] is True
    if any("error" in r for r in results):
        # Keras 3.15 / TensorFlow 2.21 cannot `fit` across workers (its symbolic build
        # reduces the first batch, and its step reduces scalar losses, with calls that
        # MultiWorkerMirroredStrategy refuses: keras-team/keras#20585). transferkit
        # passes the strategy through and explains the failure in a note.
        for r in results:
            assert any("keras-team/keras/issues/20585" in n for n in r["notes"]), r
        first_line = results[0]["error"].split("(")[0].strip()
        pytest.xfail(f"Keras cannot fit across workers here ({first_line})")
    assert results[0]["global_batch"] == 32
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-5)
    assert results[0]["weights_sum"] == pytest.approx(results[1]["weights_sum"], rel=1e-5)


# ----------------------------------------------------------------- argument checks


@pytest.mark.parametrize("bad", ["mirrored", 2, object()])
def test_strategy_must_be_a_strategy_instance(bad, features) -> None:
    x, y = features
    with pytest.raises(InvalidTypeError, match=r"`strategy` must be None or a tf\.distribute"):
        DenseHead(**TINY_HEAD, strategy=bad).fit(x, y)
    images, labels = make_learnable(8, size=16)
    with pytest.raises(InvalidTypeError, match="`strategy`.*received") as info:
        CifarCNN(**TINY_CNN, strategy=bad).fit(images, labels)
    assert repr(bad)[:20] in str(info.value)
    if isinstance(bad, str):
        assert "MirroredStrategy()" in str(info.value)  # says what to pass instead


def test_check_strategy_accepts_none_and_strategies(one_device) -> None:
    import tensorflow as tf

    default = tf.distribute.get_strategy()
    assert _strategy.check_strategy(None) is None
    assert _strategy.check_strategy(default) is default
    assert _strategy.check_strategy(one_device) is one_device
    assert _strategy.num_replicas(None) == 1 and _strategy.num_replicas(one_device) == 1
    assert not _strategy.spans_workers(None) and not _strategy.spans_workers(one_device)
    with _strategy.strategy_scope(None):
        assert not tf.distribute.has_strategy()
    with _strategy.strategy_scope(one_device):
        assert tf.distribute.get_strategy() is one_device


def test_even_sample_count() -> None:
    assert _strategy.even_sample_count(199, 1) == 199
    assert _strategy.even_sample_count(199, 2) == 198
    assert _strategy.even_sample_count(37, 8) == 32
    assert _strategy.even_sample_count(3, 4) == 0
    with pytest.raises(InvalidInputError, match=r"`X` must hold at least .* \(4\).*received 3"):
        _strategy.even_sample_count(3, 4, name="X")


def test_strategy_helpers_do_not_import_tensorflow() -> None:
    code = (
        "import sys, transferkit, transferkit._strategy as s, transferkit.heads, "
        "transferkit.extractors\n"
        "assert s.check_strategy(None) is None and s.num_replicas(None) == 1\n"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------- clone, pickle, save


@pytest.mark.parametrize("which", ["default", "one_device"])
def test_dense_head_clone_params_pickle_and_save_with_a_strategy(
    which, features, one_device, tmp_path
) -> None:
    import tensorflow as tf

    strategy = tf.distribute.get_strategy() if which == "default" else one_device
    x, y = features
    head = DenseHead(**TINY_HEAD, strategy=strategy)
    assert head.get_params()["strategy"] is strategy
    twin = clone(head)  # scikit-learn would deep-copy it: the default strategy refuses
    assert twin.strategy is strategy and twin is not head
    assert twin.get_params()["hidden_units"] == (8,)
    assert "strategy" in repr(head)
    head.fit(x, y)
    assert head.strategy is strategy and head.global_batch_size_ == 16
    proba = head.predict_proba(x)
    unpickled = pickle.loads(pickle.dumps(head))
    assert unpickled.strategy is None  # devices do not pickle: dropped, documented
    np.testing.assert_array_equal(unpickled.predict_proba(x), proba)
    assert head.strategy is strategy  # pickling did not touch the original
    head.save(tmp_path / "head.tkhead")
    meta = json.loads(zipfile.ZipFile(tmp_path / "head.tkhead").read("meta.json"))
    assert "strategy" not in meta["params"]
    loaded = load_head(tmp_path / "head.tkhead")
    assert loaded.strategy is None
    np.testing.assert_array_equal(loaded.predict_proba(x), proba)
    assert clone(head).strategy is strategy  # a fitted one too


def test_cifar_cnn_clone_pickle_and_save_with_a_strategy(one_device, tmp_path) -> None:
    x, y = make_learnable(40, size=16, seed=3)
    cnn = CifarCNN(**TINY_CNN, strategy=one_device)
    assert clone(cnn).strategy is one_device
    cnn.fit(x, y)
    assert cnn.global_batch_size_ == 16 and cnn.steps_per_epoch_ == 3
    proba = cnn.predict_proba(x)
    feats = cnn.transform(x)
    unpickled = pickle.loads(pickle.dumps(cnn))
    assert unpickled.strategy is None and cnn.strategy is one_device
    np.testing.assert_array_equal(unpickled.predict_proba(x), proba)
    cnn.save(tmp_path / "cnn.keras")
    loaded = CifarCNN.load(tmp_path / "cnn.keras")
    assert loaded.strategy is None
    np.testing.assert_array_equal(loaded.predict_proba(x), proba)
    np.testing.assert_array_equal(loaded.transform(x), feats)
    assert cnn.fingerprint == loaded.fingerprint  # the strategy does not change features


def test_grid_search_shares_the_strategy(features, one_device) -> None:
    x, y = features
    search = GridSearchCV(
        DenseHead(**TINY_HEAD, validation_split=0.0, early_stopping=False,
                  strategy=one_device),
        {"hidden_units": [(4,), (8,)]}, cv=2,
    ).fit(x, y)
    assert search.best_estimator_.strategy is one_device


# ----------------------------------------------------------------- same math, one replica


def test_one_device_strategy_trains_like_no_strategy(one_device) -> None:
    # One replica, no batch norm, dropout or augmentation: identical training.
    x, y = make_learnable(48, size=16, seed=4)
    talk = dict(preset="talk", conv_filters=(4, 8), dense_units=(8,), dropout=0.0,
                augment=(), epochs=2, batch_size=16, random_state=0)
    plain = CifarCNN(**talk).fit(x, y)
    scoped = CifarCNN(**talk, strategy=one_device).fit(x, y)
    np.testing.assert_allclose(scoped.history_["loss"], plain.history_["loss"], rtol=1e-5)
    np.testing.assert_allclose(scoped.predict_proba(x), plain.predict_proba(x), atol=1e-5)


def test_strategy_none_keeps_the_old_batching(features) -> None:
    x, y = features
    head = DenseHead(**TINY_HEAD, validation_split=0.0).fit(x[:119], y[:119])
    assert head.strategy is None and head.global_batch_size_ == 16
    assert "strategy" not in repr(head)  # a default: not shown
    images, labels = make_learnable(37, size=16, seed=5)
    cnn = CifarCNN(**TINY_CNN).fit(images, labels)
    assert cnn.global_batch_size_ == 16
    assert cnn.steps_per_epoch_ == 3  # all 37 images: nothing left out without a strategy
    assert cnn.schedule_steps_ == 3
