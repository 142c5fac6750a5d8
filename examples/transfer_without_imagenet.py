"""Transfer learning without ImageNet: pretrain on 5 CIFAR-10 classes, transfer to the other 5.

A CifarCNN is trained on airplane/automobile/bird/cat/deer. Its trunk then extracts
features of dog/frog/horse/ship/truck images, and heads are trained on a few labels per
class (50, 100, 500 by default). The same network trained from scratch on those few
labels is the baseline.

    python examples/transfer_without_imagenet.py --data ../shared/data/cifar10-jpg
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from transferkit import CifarCNN, DenseHead, FeatureCache, SklearnHead  # noqa: E402
from transferkit.datasets import CIFAR10_CLASSES, balanced_subset, load_cifar10_or_sample  # noqa: E402,E501


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="CIFAR-10 location; default: local copies or the bundled sample")
    p.add_argument("--preset", default="fast", help="CifarCNN preset (default fast)")
    p.add_argument("--pretrain-minutes", type=float, default=5.0)
    p.add_argument("--scratch-epochs", type=int, default=30)
    p.add_argument("--labels-per-class", type=int, nargs="+", default=[50, 100, 500])
    p.add_argument("--cache", default="transfer_without_imagenet.h5")
    args = p.parse_args()
    (x_train, y_train), (x_test, y_test), source = load_cifar10_or_sample(args.data)
    print(f"data: {source}")
    src, tgt = np.arange(5), np.arange(5, 10)
    in_src, in_tgt = np.isin(y_train, src), np.isin(y_train, tgt)
    test_tgt = np.isin(y_test, tgt)

    t = time.perf_counter()
    base = CifarCNN(preset=args.preset, max_minutes=args.pretrain_minutes, random_state=0)
    base.fit(x_train[in_src], y_train[in_src])
    print(f"pretrained on {in_src.sum()} images of {[CIFAR10_CLASSES[c] for c in src]} in "
          f"{time.perf_counter() - t:.0f} s ({base.n_iter_} epochs)")

    cache = FeatureCache(args.cache)
    f_tgt = cache.extract(base, x_train[in_tgt])
    f_test = cache.extract(base, x_test[test_tgt])
    y_tgt, yt = y_train[in_tgt], y_test[test_tgt]
    print(f"transfer to {[CIFAR10_CLASSES[c] for c in tgt]}: {len(yt)} test images\n")
    print(f"{'labels/class':>12}{'logreg on trunk':>17}{'dense on trunk':>16}"
          f"{'from scratch':>14}")
    idx = np.arange(len(y_tgt))
    for k in args.labels_per_class:
        keep, _ = balanced_subset(idx, y_tgt, 5 * k)
        logreg = SklearnHead(LogisticRegression(max_iter=2000)).fit(f_tgt[keep], y_tgt[keep])
        dense = DenseHead(hidden_units=(256,), epochs=100, patience=10,
                          random_state=0).fit(f_tgt[keep], y_tgt[keep])
        # The same recipe from scratch; the learning rate scales with the smaller batch.
        bs = min(64, 5 * k)
        lr = CifarCNN(preset=args.preset).resolved_params()["learning_rate"]
        batch = CifarCNN(preset=args.preset).resolved_params()["batch_size"]
        scratch = CifarCNN(preset=args.preset, epochs=args.scratch_epochs, batch_size=bs,
                           learning_rate=lr * bs / batch, random_state=0)
        scratch.fit(x_train[in_tgt][keep], y_tgt[keep])
        print(f"{k:>12}{logreg.score(f_test, yt):>17.4f}{dense.score(f_test, yt):>16.4f}"
              f"{scratch.score(x_test[test_tgt], yt):>14.4f}", flush=True)


if __name__ == "__main__":
    main()
