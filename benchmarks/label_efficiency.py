"""CIFAR-10 test accuracy against labelled images per class: transfer vs from scratch.

For each count of labelled training images per class (a balanced subset drawn with a
seed; several seeds for the small counts), four ways to a classifier:

- ``frozen + logreg``: logistic regression on frozen EfficientNet-Lite0 ImageNet
  features (extracted once for all training images, through the FeatureCache);
- ``frozen + dense``: a one-hidden-layer DenseHead on the same features;
- ``fine-tuned``: FineTuner from the logreg head, top ``--blocks`` blocks trained on
  the cached activations of the subset's images and their mirror images
  (``activation_cache``; ``--ft-on-images`` trains on the images instead), at least
  ``--ft-epochs`` epochs and about 200 steps, at most ``--ft-minutes`` each run;
- ``CifarCNN``: ``CifarCNN(preset="fast")`` trained from scratch on the subset's
  images (epochs scaled so every run makes at least ``--cnn-steps`` steps, at most
  ``--cnn-minutes``).

Prints the table (mean, min and max over seeds; seconds per run) next to the
machine's measured float32 / bfloat16 matmul GFLOP/s and CPU flags, and plots it with
``transferkit.plots.plot_label_efficiency``.

    python benchmarks/label_efficiency.py --data ../shared/data/cifar10-jpg.tar.gz \
        --counts 10 25 100 500 5000 --seeds 3 --plot docs/images/label_efficiency.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _machine import machine_line  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from transferkit import (  # noqa: E402
    DenseHead,
    EfficientNetLite0Extractor,
    FeatureCache,
    FineTuner,
    SklearnHead,
)
from transferkit.datasets import balanced_subset, load_cifar10  # noqa: E402
from transferkit.extractors import CifarCNN  # noqa: E402

METHODS = ("frozen + logreg", "frozen + dense", "fine-tuned", "CifarCNN")


def subset(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` images of every class, drawn with ``seed``, sorted."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(keep))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_data = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
    p.add_argument("--data", default=str(default_data))
    p.add_argument("--counts", type=int, nargs="+", default=[10, 25, 100, 500, 5000])
    p.add_argument("--seeds", type=int, default=3, help="seeds for counts up to 100")
    p.add_argument("--test-size", type=int, default=10000)
    p.add_argument("--size", type=int, default=128, help="Lite0 input size")
    p.add_argument("--cache", default="label_efficiency.h5")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--blocks", default="2", help="fine-tune: blocks trained, or 'all'")
    p.add_argument("--ft-epochs", type=int, default=10)
    p.add_argument("--ft-lr", type=float, default=0.01)
    p.add_argument("--ft-lr-scale", type=float, default=1.0)
    p.add_argument("--ft-on-images", action="store_true",
                   help="fine-tune on the images (flip + translate) instead of cached "
                        "activations (flip views)")
    p.add_argument("--activation-cache", default="label_efficiency_activations.h5")
    p.add_argument("--ft-minutes", type=float, default=20.0)
    p.add_argument("--cnn-steps", type=int, default=400)
    p.add_argument("--cnn-minutes", type=float, default=20.0)
    p.add_argument("--plot", help="PNG of the table")
    p.add_argument("--json", help="write the rows as JSON here")
    args = p.parse_args()

    print("transferkit label-efficiency benchmark, CIFAR-10")
    print(machine_line(), flush=True)
    (x_train, y_train), (x_test, y_test) = load_cifar10(args.data)
    x_test, y_test = balanced_subset(x_test, y_test, args.test_size)
    ext = EfficientNetLite0Extractor(input_size=args.size)
    cache = FeatureCache(args.cache)
    need_features = {"frozen + logreg", "frozen + dense", "fine-tuned"} & set(args.methods)
    if need_features:
        t = time.perf_counter()
        f_train, f_test = cache.extract(ext, x_train), cache.extract(ext, x_test)
        print(f"Lite0 @{args.size}px features: {len(x_train)} train + {len(x_test)} test "
              f"in {time.perf_counter() - t:.0f} s (cached in {args.cache})", flush=True)
    blocks = args.blocks if args.blocks == "all" else int(args.blocks)
    rows: list[dict] = []
    print(f"{'per class':>9} {'seed':>4} {'method':<16} {'accuracy':>8} {'seconds':>8}",
          flush=True)
    for count in args.counts:
        for seed in range(args.seeds if count <= 100 else 1):
            idx = subset(y_train, count, seed)
            xs, ys = x_train[idx], y_train[idx]
            logreg = None
            for method in args.methods:
                t = time.perf_counter()
                if method == "frozen + logreg":
                    logreg = SklearnHead(LogisticRegression(max_iter=1000, C=0.1))
                    acc = logreg.fit(f_train[idx], ys).score(f_test, y_test)
                elif method == "frozen + dense":
                    dense = DenseHead(hidden_units=(512,), epochs=60, patience=8,
                                      validation_split=0.1 if count >= 25 else 0.0,
                                      random_state=seed)
                    acc = dense.fit(f_train[idx], ys).score(f_test, y_test)
                elif method == "fine-tuned":
                    if logreg is None:
                        logreg = SklearnHead(LogisticRegression(max_iter=1000, C=0.1)).fit(
                            f_train[idx], ys)
                    steps = max(1, len(xs) // 64)
                    epochs = max(args.ft_epochs, min(60, -(-200 // steps)))
                    where = {} if args.ft_on_images else {
                        "activation_cache": args.activation_cache, "augment": ("flip",)}
                    ft = FineTuner(extractor=ext, head=logreg, trainable_blocks=blocks,
                                   epochs=epochs, max_minutes=args.ft_minutes,
                                   learning_rate=args.ft_lr,
                                   backbone_lr_scale=args.ft_lr_scale,
                                   random_state=seed, checkpoint_dir=None, **where)
                    acc = ft.fit(xs, ys).score(x_test, y_test)
                else:
                    steps = max(1, len(xs) // 500)
                    cnn = CifarCNN(preset="fast", epochs=min(200, max(10, -(-args.cnn_steps
                                                                        // steps))),
                                   batch_size=min(500, max(32, len(xs) // 4)),
                                   max_minutes=args.cnn_minutes, random_state=seed)
                    acc = cnn.fit(xs, ys).score(x_test, y_test)
                seconds = time.perf_counter() - t
                rows.append({"method": method, "per_class": count, "seed": seed,
                             "accuracy": float(acc), "seconds": seconds})
                print(f"{count:>9} {seed:>4} {method:<16} {acc:>8.4f} {seconds:>8.0f}",
                      flush=True)
    print("\nsummary: mean accuracy (min-max over seeds)")
    print(f"{'per class':>9} " + " ".join(f"{m:>22}" for m in args.methods))
    for count in args.counts:
        cells = []
        for m in args.methods:
            accs = [r["accuracy"] for r in rows if r["method"] == m and r["per_class"] == count]
            cells.append(f"{np.mean(accs):.4f} ({min(accs):.3f}-{max(accs):.3f})")
        print(f"{count:>9} " + " ".join(f"{c:>22}" for c in cells))
    print(machine_line(), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.plot:
        from transferkit.plots import plot_label_efficiency

        plot_label_efficiency(rows, args.plot, title="CIFAR-10: accuracy vs labelled images")
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
