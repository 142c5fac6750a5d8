"""The ``transferkit`` command line.

``transferkit demo`` runs the talk's transfer-learning flow end to end, offline if
need be: CIFAR-10 (or the bundled sample), a frozen backbone (ImageNet VGG-16, or a
CifarCNN trained on the spot when ImageNet weights are unavailable), the HDF5 feature
cache, then a logistic-regression head and a dense head.

Exit codes: 0 success, 1 a transferkit error (message printed, no traceback unless
``--verbose``), 2 bad command-line usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "build_parser"]


def _print(*args: Any) -> None:
    print(*args, flush=True)


def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from . import CifarCNN, DenseHead, FeatureCache, SklearnHead, VGG16Extractor
    from .datasets import CIFAR10_CLASSES, balanced_subset, load_cifar10_or_sample
    from .exceptions import WeightsNotFoundError

    t_start = time.perf_counter()
    _print("transferkit demo: ImageNet features + a quick classifier on CIFAR-10")
    (x_train, y_train), (x_test, y_test), source = load_cifar10_or_sample(args.data)
    x_train, y_train = balanced_subset(x_train, y_train, args.train_size)
    x_test, y_test = balanced_subset(x_test, y_test, args.test_size)
    _print(f"  data: {source}: {len(x_train)} train / {len(x_test)} test images, 32x32 RGB")

    weights = None if args.weights == "none" else args.weights
    extractor: Any = VGG16Extractor(
        weights=weights, pooling="avg", input_size=args.input_size, batch_size=args.batch_size
    )
    try:
        dim = extractor.output_dim()
        _print(
            f"  extractor: VGG-16 (weights={args.weights}), {args.input_size}x{args.input_size} "
            f"input, global average pooling -> {dim} features"
        )
    except WeightsNotFoundError as exc:
        _print(f"  ImageNet weights are missing: {exc}")
        _print(
            "  Falling back to what is available: the talk's CNN trained here on the training "
            f"images ({args.cnn_epochs} epochs); its penultimate layer is the extractor."
        )
        t = time.perf_counter()
        extractor = CifarCNN(epochs=args.cnn_epochs, random_state=0, verbose=0)
        extractor.fit(x_train, y_train)
        _print(
            f"  CifarCNN trained in {time.perf_counter() - t:.1f} s; its own test accuracy: "
            f"{extractor.score(x_test, y_test):.3f}"
        )

    cache = FeatureCache(args.cache)
    t = time.perf_counter()
    f_train = cache.extract(extractor, x_train, labels=y_train, class_names=list(CIFAR10_CLASSES))
    f_test = cache.extract(extractor, x_test, labels=y_test, class_names=list(CIFAR10_CLASSES))
    t_extract = time.perf_counter() - t
    t = time.perf_counter()
    cache.extract(extractor, x_train)
    cache.extract(extractor, x_test)
    t_hit = time.perf_counter() - t
    _print(
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
    _print("  heads trained on the cached features:")
    for name, head in heads:
        t = time.perf_counter()
        head.fit(f_train, y_train)
        fit_s = time.perf_counter() - t
        acc = head.score(f_test, y_test)
        _print(f"    {name:<32} test accuracy {acc:.3f}   fit {fit_s:5.1f} s")
    chance = 1.0 / len(np.unique(y_train))
    _print(f"  (chance: {chance:.3f}; total {time.perf_counter() - t_start:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``transferkit`` command."""
    parser = argparse.ArgumentParser(
        prog="transferkit",
        description="Image feature extraction and transfer learning on TensorFlow/Keras.",
    )
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="run the talk's transfer-learning flow end to end (works offline)",
        description=(
            "CIFAR-10 -> frozen backbone -> HDF5 feature cache -> logistic regression and a "
            "dense head. Offline, it uses the bundled CIFAR-10 sample and, without ImageNet "
            "weights, a CifarCNN trained on the spot."
        ),
    )
    demo.add_argument("--data", help="CIFAR-10 location (archive, batches folder or JPEG tree)")
    demo.add_argument(
        "--weights", default="imagenet",
        help="VGG-16 weights: 'imagenet' (default), 'none' (random) or a weights file",
    )
    demo.add_argument("--input-size", type=int, default=64, help="VGG-16 input side (default 64)")
    demo.add_argument("--train-size", type=int, default=5000, help="training images (default 5000)")
    demo.add_argument("--test-size", type=int, default=1000, help="test images (default 1000)")
    demo.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    demo.add_argument("--cnn-epochs", type=int, default=8, help="CifarCNN epochs if it is used")
    demo.add_argument(
        "--cache", default=os.path.join("transferkit_demo", "features.h5"),
        help="feature cache file (default transferkit_demo/features.h5)",
    )
    demo.set_defaults(func=_demo)
    return parser


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up notices (oneDNN, CUDA probing) hidden.

    TensorFlow prints them before its logging is configured, so no environment
    variable silences them; the CLI hides stderr during the import instead.
    """
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no usable stderr
        return
    try:
        with open(os.devnull, "w") as devnull:
            sys.stderr.flush()
            os.dup2(devnull.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            except ImportError:  # pragma: no cover - reported properly when first used
                pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``transferkit`` command; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        _import_tensorflow_quietly()
    from .exceptions import TransferkitError

    try:
        return int(args.func(args))
    except TransferkitError as exc:
        if args.verbose:
            raise
        print(f"transferkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("transferkit: interrupted (cached work is kept; run again to resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

