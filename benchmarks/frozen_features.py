"""Do several layers or avg+max pooling make better frozen features? CIFAR-10, Lite0.

Frozen EfficientNet-Lite0 ImageNet features of a balanced CIFAR-10 subset (5,000 train,
2,000 test images by default, resized to 96x96 inside the model), one configuration of
``layer`` and ``pooling`` at a time, each through the :class:`~transferkit.FeatureCache`
(so a rerun only fits the heads); for each, the test accuracy of logistic regression,
``SklearnHead(LogisticRegression(max_iter=1000, C=0.1))`` (which standardises the
features first, so layers and poolings of different scales weigh alike). Prints a table:
accuracy, feature width, extraction seconds (train + test, as the cache recorded them),
fit seconds, under a header with the machine's measured matmul GFLOP/s and CPU flags.

    python benchmarks/frozen_features.py --data ../shared/data/cifar10-jpg.tar.gz
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from transferkit import EfficientNetLite0Extractor, FeatureCache, SklearnHead  # noqa: E402
from transferkit.datasets import balanced_subset, load_cifar10  # noqa: E402

#: (layer, pooling) configurations, the baseline first.
CONFIGS: tuple[tuple[str | tuple[str, ...], str], ...] = (
    ("top", "avg"),
    ("top", "avgmax"),
    (("block6", "top"), "avg"),
    (("block6", "top"), "avgmax"),
    (("block5", "block6", "top"), "avg"),
)


def fit_score(head_model: object, f_train: object, y_train: object, f_test: object,
              y_test: object) -> tuple[float, float, bool]:
    """(test accuracy, fit seconds, converged) of ``SklearnHead(head_model)``."""
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        head = SklearnHead(head_model).fit(f_train, y_train)
    seconds = time.perf_counter() - t
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return float(head.score(f_test, y_test)), seconds, converged


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_data = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
    p.add_argument("--data", default=str(default_data))
    p.add_argument("--train", type=int, default=5000, help="training images (balanced)")
    p.add_argument("--test", type=int, default=2000, help="test images (balanced)")
    p.add_argument("--size", type=int, default=96, help="Lite0 input size")
    p.add_argument("--cache", default="/tmp/frozen_features/features.h5")
    p.add_argument("--json", help="write the rows as JSON here")
    args = p.parse_args()

    print("transferkit frozen-features benchmark: EfficientNet-Lite0 (ImageNet) on CIFAR-10")
    print(machine_line(), flush=True)
    t = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = load_cifar10(args.data)
    x_train, y_train = balanced_subset(x_train, y_train, args.train)
    x_test, y_test = balanced_subset(x_test, y_test, args.test)
    print(f"data: {len(x_train)} train + {len(x_test)} test images, {x_train.shape[1]}x"
          f"{x_train.shape[2]}, resized to {args.size}x{args.size} in the model "
          f"(loaded in {time.perf_counter() - t:.0f} s)", flush=True)
    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache(args.cache)

    rows: list[dict] = []
    header = (f"{'layer':<22} {'pooling':<7} {'width':>6} {'extract s':>9} {'fit s':>6} "
              f"{'accuracy':>8}")
    print(header)
    print("-" * len(header), flush=True)
    for layer, pooling in CONFIGS:
        ext = EfficientNetLite0Extractor(weights="imagenet", layer=layer, pooling=pooling,
                                         input_size=args.size)
        f_train, f_test = cache.extract(ext, x_train), cache.extract(ext, x_test)
        extract_s = sum(cache.info(cache.key(ext, x)).extract_seconds
                        for x in (x_train, x_test))
        acc, fit_s, ok = fit_score(LogisticRegression(max_iter=1000, C=0.1),
                                   f_train, y_train, f_test, y_test)
        row = {"layer": layer if isinstance(layer, str) else list(layer), "pooling": pooling,
               "width": int(f_train.shape[1]), "extract_seconds": extract_s,
               "accuracy": acc, "fit_seconds": fit_s, "converged": ok}
        name = layer if isinstance(layer, str) else "+".join(layer)
        line = (f"{name:<22} {pooling:<7} {row['width']:>6} {extract_s:>9.1f} {fit_s:>6.0f} "
                f"{acc:>8.4f}{'' if ok else '*'}")
        rows.append(row)
        print(line, flush=True)
    print("accuracy: SklearnHead(LogisticRegression(max_iter=1000, C=0.1)), standardised "
          "features; * did not converge in 1000 iterations")
    base = rows[0]["accuracy"]
    for row in rows[1:]:
        print(f"  {row['layer']} {row['pooling']}: {100 * (row['accuracy'] - base):+.2f} "
              "points over the baseline")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
