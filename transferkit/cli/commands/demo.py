"""``transferkit demo``: the talk's transfer-learning flow end to end, offline if need be."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

from .._common import EXIT_OK, ProgressExtractor, echo, fit_with_progress, progress_mode
from .._options import (
    add_command,
    check_extraction_memory,
    name_text,
    options_checked,
    output_path,
    path_text,
    positive_int,
    weights_file,
)

__all__ = ["add_parser", "run"]

#: Input side of the demo's EfficientNet-Lite0 fallback: 128 px is the knee of the
#: accuracy-vs-cost curve in benchmarks/transfer_cifar10.py.
_DEMO_LITE0_SIZE = 128


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` command to ``subparsers``."""
    p = add_command(
        subparsers, parents,
        "demo", "run the talk's transfer-learning flow end to end (works offline)",
        "CIFAR-10 -> frozen backbone -> HDF5 feature cache -> logistic regression and a "
        "dense head. Offline, it uses the bundled CIFAR-10 sample and, without ImageNet "
        "weights, a CifarCNN trained on the spot.",
        "  transferkit demo\n  transferkit demo --data cifar-10-python.tar.gz --plots "
        "demo_plots/\n  transferkit demo --weights none --input-size 32 --train-size 500",
    )
    p.add_argument("--data", type=path_text, metavar="PATH",
                   help="CIFAR-10 location (archive, batches folder or JPEG tree)")
    p.add_argument("--weights", type=name_text, default="imagenet", metavar="W",
                   help="VGG-16 weights: 'imagenet', 'none' (random) or a weights file")
    p.add_argument("--input-size", type=positive_int, default=64, metavar="N",
                   help="VGG-16 input side")
    p.add_argument("--train-size", type=positive_int, default=5000, metavar="N",
                   help="training images")
    p.add_argument("--test-size", type=positive_int, default=1000, metavar="N",
                   help="test images")
    p.add_argument("--batch-size", type=positive_int, default=64, metavar="N",
                   help="images per forward pass")
    p.add_argument("--cnn-epochs", type=positive_int, default=8, metavar="N",
                   help="CifarCNN epochs if it is used")
    p.add_argument("--cache", type=path_text,
                   default=os.path.join("transferkit_demo", "features.h5"),
                   metavar="FILE", help="feature cache file")
    p.add_argument("--plots", type=path_text, metavar="DIR",
                   help="also save plots there: confusion matrix, predictions grid (and the "
                        "CNN's training curves when it is trained)")
    p.set_defaults(func=run, needs_tf=True)


def run(args: argparse.Namespace) -> int:
    """Run ``transferkit demo``; returns the exit code."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from ... import (
        CifarCNN,
        DenseHead,
        EfficientNetLite0Extractor,
        FeatureCache,
        SklearnHead,
        VGG16Extractor,
    )
    from ...datasets import CIFAR10_CLASSES, balanced_subset, load_cifar10_or_sample
    from ...exceptions import WeightsNotFoundError

    mode = progress_mode(args)
    weights_file(args)
    output_path("--cache", args.cache, probe=False)
    plots = output_path("--plots", args.plots, folder=True)
    weights = None if args.weights == "none" else args.weights
    extractor: Any = VGG16Extractor(
        weights=weights, pooling="avg", input_size=args.input_size, batch_size=args.batch_size
    )
    with options_checked(["input_size", "batch_size"]):
        extractor.check_params()
    check_extraction_memory(extractor, (32, 32), batch=args.batch_size, option="--input-size")
    t_start = time.perf_counter()
    echo("transferkit demo: ImageNet features + a quick classifier on CIFAR-10")
    (x_train, y_train), (x_test, y_test), source = load_cifar10_or_sample(args.data)
    x_train, y_train = balanced_subset(x_train, y_train, args.train_size)
    x_test, y_test = balanced_subset(x_test, y_test, args.test_size)
    echo(f"  data: {source}: {len(x_train)} train / {len(x_test)} test images, 32x32 RGB")

    try:
        dim = extractor.output_dim()
        echo(
            f"  extractor: VGG-16 (weights={args.weights}), {args.input_size}x{args.input_size} "
            f"input, global average pooling -> {dim} features"
        )
    except WeightsNotFoundError as exc:
        echo(f"  VGG-16's ImageNet weights are missing: {exc}")
        extractor = None
        if args.weights == "imagenet":
            lite = EfficientNetLite0Extractor(
                input_size=_DEMO_LITE0_SIZE, batch_size=args.batch_size
            )
            try:
                dim = lite.output_dim()
                extractor = lite
                echo(
                    "  Using what is available instead: EfficientNet-Lite0 with real ImageNet "
                    f"weights (from the transferkit[lite0] extra), {_DEMO_LITE0_SIZE}x"
                    f"{_DEMO_LITE0_SIZE} input, global average pooling -> {dim} features"
                )
            except WeightsNotFoundError as lite_exc:
                echo(f"  EfficientNet-Lite0's ImageNet weights are missing too: {lite_exc}")
        if extractor is None:
            echo(
                "  Falling back to what is available: the talk's CNN trained here on the "
                f"training images ({args.cnn_epochs} epochs); its penultimate layer is the "
                "extractor."
            )
            extractor = CifarCNN(epochs=args.cnn_epochs, random_state=0, verbose=0)
            fit_s = fit_with_progress(extractor, x_train, y_train, mode=mode, desc="CifarCNN")
            echo(
                f"  CifarCNN trained in {fit_s:.1f} s; its own test accuracy: "
                f"{extractor.score(x_test, y_test):.3f}"
            )
            if plots is not None:
                from ...plots import plot_training_curves

                echo(f"  plot: {plot_training_curves(extractor, plots / 'cnn_curves.png')}")

    cache = FeatureCache(args.cache)
    names = list(CIFAR10_CLASSES)
    wrapped = ProgressExtractor(extractor, desc="extracting", mode=mode)
    t = time.perf_counter()
    f_train = cache.extract(wrapped, x_train, labels=y_train, class_names=names)
    f_test = cache.extract(wrapped, x_test, labels=y_test, class_names=names)
    t_extract = time.perf_counter() - t
    t = time.perf_counter()
    cache.extract(extractor, x_train)
    cache.extract(extractor, x_test)
    t_hit = time.perf_counter() - t
    echo(
        f"  features: {f_train.shape[1]}-d, extracted/read in {t_extract:.1f} s "
        f"({(len(x_train) + len(x_test)) / max(t_extract, 1e-9):.0f} images/s); "
        f"read again from the cache in {t_hit:.2f} s ({cache.path})"
    )

    heads = [
        ("logistic regression", SklearnHead(LogisticRegression(max_iter=2000))),
        (
            "dense head (256, dropout 0.5)",
            DenseHead(hidden_units=(256,), dropout=0.5, epochs=30, random_state=0),
        ),
    ]
    echo("  heads trained on the cached features:")
    best: tuple[float, str, Any] | None = None
    for name, head in heads:
        fit_s = fit_with_progress(head, f_train, y_train, mode=mode, desc="dense head")
        acc = head.score(f_test, y_test)
        echo(f"    {name:<32} test accuracy {acc:.3f}   fit {fit_s:5.1f} s")
        if best is None or acc > best[0]:
            best = (acc, name, head)
    chance = 1.0 / len(np.unique(y_train))
    if plots is not None and best is not None:
        from ...plots import plot_confusion_matrix, plot_predictions_grid

        _, name, head = best
        cm_path = plot_confusion_matrix(y_test, head.predict(f_test), names,
                                        plots / "confusion.png", normalize="true",
                                        title=f"{name}: confusion matrix (CIFAR-10 test)")
        grid_path = plot_predictions_grid(x_test[:16], head.predict_proba(f_test[:16]), names,
                                          plots / "predictions.png", top_k=3,
                                          true_labels=y_test[:16])
        echo(f"  plots: {cm_path}, {grid_path}")
    echo(f"  (chance: {chance:.3f}; total {time.perf_counter() - t_start:.0f} s)")
    return EXIT_OK
