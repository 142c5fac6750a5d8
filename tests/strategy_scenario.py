"""Training on a tf.distribute strategy, run in a fresh process by tests/test_strategy.py.

Logical devices can only be configured before TensorFlow initialises its devices, which
a pytest process that ran other tests has already done; so the scenarios run here, and
print their results as one JSON line (the last line of stdout) for the test to check.

    python tests/strategy_scenario.py mirrored   # 2 logical CPUs, MirroredStrategy
    python tests/strategy_scenario.py worker     # one worker of a MultiWorkerMirroredStrategy
                                                 # cluster described by TF_CONFIG

Not collected by pytest (no ``test_`` prefix). Tiny models and data: ~20 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402


def _learnable_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16x16 images whose class (0, 1, 2) decides which colour channel is bright."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = rng.normal(60, 25, size=(n, 16, 16, 3))
    for c in range(3):
        x[y == c, :, :, c] += 110
    return np.clip(x, 0, 255).astype(np.uint8), y


def _learnable_features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """8 features; the class is the largest of three noisy linear scores."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    scores = x[:, :3] + 0.3 * rng.normal(size=(n, 3))
    return x, np.argmax(scores, axis=1)


def _rel_diff(a: list[float], b: list[float]) -> float:
    a_, b_ = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a_ - b_) / np.maximum(np.abs(b_), 1e-12)))


def mirrored() -> dict:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    from sklearn.base import clone

    from transferkit.extractors import CifarCNN
    from transferkit.heads import DenseHead, load_head

    out: dict = {"logical_cpus": len(tf.config.list_logical_devices("CPU"))}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out["replicas"] = strategy.num_replicas_in_sync
    tmp = Path(tempfile.mkdtemp(prefix="tk-strategy-"))

    # -- CifarCNN, "fast" preset: per-replica batch 16 -> global batch 32.
    x, y = _learnable_images(199, seed=1)  # odd: one image is left out (2 replicas)
    xt, yt = _learnable_images(60, seed=2)
    cnn = CifarCNN(preset="fast", conv_filters=(8, 16), epochs=2, batch_size=16,
                   random_state=0, strategy=strategy)
    t = time.perf_counter()
    cnn.fit(x, y)
    out["cnn_fit_s"] = time.perf_counter() - t
    out["cnn_global_batch"] = cnn.global_batch_size_
    out["cnn_steps_per_epoch"] = cnn.steps_per_epoch_
    out["cnn_schedule_steps"] = cnn.schedule_steps_
    out["cnn_n_iter"] = cnn.n_iter_
    out["cnn_history_keys"] = sorted(cnn.history_)
    out["cnn_accuracy"] = float(cnn.score(xt, yt))
    proba = cnn.predict_proba(xt)
    feats = cnn.transform(xt)
    out["cnn_feature_shape"] = list(feats.shape)
    cnn.save(tmp / "cnn.keras")
    loaded = CifarCNN.load(tmp / "cnn.keras")
    out["cnn_loaded_strategy_is_none"] = loaded.strategy is None
    out["cnn_saveload_proba_equal"] = bool(np.array_equal(loaded.predict_proba(xt), proba))
    out["cnn_saveload_features_equal"] = bool(np.array_equal(loaded.transform(xt), feats))
    unpickled = pickle.loads(pickle.dumps(cnn))
    out["cnn_pickle_strategy_is_none"] = unpickled.strategy is None
    out["cnn_pickle_proba_equal"] = bool(np.array_equal(unpickled.predict_proba(xt), proba))
    out["cnn_clone_keeps_strategy"] = clone(cnn).strategy is strategy
    out["cnn_still_has_strategy"] = cnn.strategy is strategy

    # -- Same math as one device on the global batch: the talk's architecture has no
    # batch norm and, without dropout and augmentation, no randomness inside a step, so
    # the loss trajectory must match a single-device run up to float rounding (200
    # images: every global batch, the last one of 8 included, splits evenly).
    talk = dict(preset="talk", conv_filters=(8, 16), dense_units=(32,), dropout=0.0,
                augment=(), epochs=3, random_state=0)
    x2, y2 = _learnable_images(200, seed=3)
    multi = CifarCNN(**talk, batch_size=16, strategy=strategy).fit(x2, y2)
    single = CifarCNN(**talk, batch_size=32).fit(x2, y2)
    out["talk_loss_strategy"] = multi.history_["loss"]
    out["talk_loss_single"] = single.history_["loss"]
    out["talk_loss_rel_diff"] = _rel_diff(multi.history_["loss"], single.history_["loss"])

    # -- DenseHead: per-replica batch 16 -> global 32, no dropout.
    f, fy = _learnable_features(401, seed=4)  # 401 -> 361 train + 40 validation
    ft, fyt = _learnable_features(200, seed=5)
    dense = dict(hidden_units=(16,), dropout=0.0, epochs=5, learning_rate=0.01,
                 early_stopping=False, random_state=0)
    head = DenseHead(**dense, batch_size=16, strategy=strategy).fit(f, fy)
    again = DenseHead(**dense, batch_size=16, strategy=strategy).fit(f, fy)
    single_head = DenseHead(**dense, batch_size=32).fit(f, fy)
    out["head_global_batch"] = head.global_batch_size_
    out["head_accuracy"] = float(head.score(ft, fyt))
    out["head_single_accuracy"] = float(single_head.score(ft, fyt))
    out["head_n_iter"] = head.n_iter_
    out["head_history_keys"] = sorted(head.history_)
    out["head_loss_strategy"] = head.history_["loss"]
    out["head_loss_single"] = single_head.history_["loss"]
    out["head_loss_rel_diff"] = _rel_diff(head.history_["loss"], single_head.history_["loss"])
    out["head_repeatable"] = bool(
        head.history_ == again.history_
        and np.array_equal(head.predict_proba(ft), again.predict_proba(ft))
    )
    head.save(tmp / "head.tkhead")
    loaded_head = load_head(tmp / "head.tkhead")
    out["head_loaded_strategy_is_none"] = loaded_head.strategy is None
    out["head_saveload_proba_equal"] = bool(
        np.array_equal(loaded_head.predict_proba(ft), head.predict_proba(ft))
    )
    unpickled_head = pickle.loads(pickle.dumps(head))
    out["head_pickle_proba_equal"] = bool(
        np.array_equal(unpickled_head.predict_proba(ft), head.predict_proba(ft))
    )
    out["head_clone_keeps_strategy"] = clone(head).strategy is strategy

    # -- FineTuner: the CifarCNN's trunk and a head fitted on its features, on 2 replicas.
    from sklearn.linear_model import LogisticRegression

    from transferkit import FineTuner, SklearnHead

    cnn.set_params(strategy=None)
    trunk_head = SklearnHead(LogisticRegression(max_iter=300)).fit(cnn.transform(x), y)
    tuner = FineTuner(extractor=cnn, head=trunk_head, trainable_blocks=1, epochs=2,
                      batch_size=16, learning_rate=0.02, checkpoint_dir=None,
                      random_state=0, strategy=strategy).fit(x, y)
    out["ft_n_iter"] = tuner.n_iter_
    out["ft_blocks"] = tuner.blocks_trained_
    out["ft_loss_finite"] = bool(np.all(np.isfinite(tuner.history_["loss"])))
    out["ft_accuracy"] = float(tuner.score(xt, yt))
    out["ft_clone_keeps_strategy"] = clone(tuner).strategy is strategy
    return out


def worker() -> dict:
    """One worker of a MultiWorkerMirroredStrategy cluster (TF_CONFIG set by the caller)."""
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # first, before other TF work
    from transferkit._strategy import spans_workers
    from transferkit.heads import DenseHead

    out: dict = {"replicas": strategy.num_replicas_in_sync,
                 "spans_workers": spans_workers(strategy)}
    f, fy = _learnable_features(200, seed=4)
    try:
        head = DenseHead(hidden_units=(8,), dropout=0.0, epochs=2, batch_size=16,
                         learning_rate=0.01, random_state=0, strategy=strategy).fit(f, fy)
    except Exception as exc:  # reported, not raised: the test decides
        out["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        out["notes"] = list(getattr(exc, "__notes__", []))
        return out
    out["global_batch"] = head.global_batch_size_
    out["loss"] = head.history_["loss"]
    out["weights_sum"] = float(sum(np.abs(w).sum() for w in head.model_.get_weights()))
    return out


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "mirrored"
    result = {"mirrored": mirrored, "worker": worker}[mode]()
    sys.stdout.flush()
    print(json.dumps(result), flush=True)
