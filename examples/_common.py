"""Command-line options shared by the example scripts (not part of the library)."""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every example takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--data",
        help="CIFAR-10: official archive, cifar-10-batches-py/, or a JPEG tree "
        "(e.g. ../shared/data/cifar10-jpg); default: local copies, Keras' download, "
        "then the bundled sample",
    )
    p.add_argument("--train-size", type=int, default=5000, help="training images (default 5000)")
    p.add_argument("--test-size", type=int, default=1000, help="test images (default 1000)")
    p.add_argument(
        "--weights", default="imagenet",
        help="VGG-16 weights: 'imagenet', 'none' (random, for offline runs) or a weights file",
    )
    p.add_argument("--input-size", type=int, default=64, help="VGG-16 input side (default 64)")
    p.add_argument("--cache", default="examples_features.h5", help="feature cache file")
    return p


def load_data(args: argparse.Namespace):
    """CIFAR-10 from ``--data`` (or the usual places), cut to the requested sizes."""
    from transferkit.datasets import balanced_subset, load_cifar10_or_sample

    (x_train, y_train), (x_test, y_test), source = load_cifar10_or_sample(args.data)
    x_train, y_train = balanced_subset(x_train, y_train, args.train_size)
    x_test, y_test = balanced_subset(x_test, y_test, args.test_size)
    print(f"data: {source}: {len(x_train)} train / {len(x_test)} test images")
    return (x_train, y_train), (x_test, y_test)


def weights(args: argparse.Namespace):
    """``--weights`` as VGG16Extractor expects it."""
    return None if args.weights.lower() == "none" else args.weights
