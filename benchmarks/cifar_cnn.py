"""CifarCNN presets on CIFAR-10: test accuracy against training wall time, side by side.

    python benchmarks/cifar_cnn.py --data ../shared/data/cifar10-jpg --runs talk fast:5 fast:30

Each run is ``preset`` or ``preset:minutes`` (a time budget: the schedule adapts so
training ends within it). Runs happen one after another in this process, on the full
training set (or ``--train-size``), and are scored on the full test set, with and
without the preset's flip test-time augmentation (TTA).

For each run, the trained trunk's features of the training and test images (and their
mirror images) also go through a :class:`~transferkit.FeatureCache`, and a logistic
regression head is fitted on them: the "head on trunk" column shows how close a head
trained on the cached features comes to the network's own accuracy.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from sklearn.linear_model import LogisticRegression  # noqa: E402

from transferkit import FeatureCache, SklearnHead  # noqa: E402
from transferkit.datasets import balanced_subset, load_cifar10  # noqa: E402
from transferkit.extractors import CifarCNN  # noqa: E402
from transferkit.views import extract_views, score_views, stack_views  # noqa: E402


def head_on_trunk(cnn: CifarCNN, x_train, y_train, x_test, y_test) -> tuple[float, float]:
    """Logistic regression on the cached trunk features (image + mirror): (accuracy, s)."""
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        cache = FeatureCache(os.path.join(d, "trunk.h5"))
        f_train = extract_views(cache, cnn, x_train)
        f_test = extract_views(cache, cnn, x_test)
    head = SklearnHead(LogisticRegression(C=0.1, max_iter=300))
    head.fit(*stack_views(f_train, y_train))
    return score_views(head, f_test, y_test), time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="CIFAR-10 location (see transferkit.datasets.load_cifar10)")
    p.add_argument("--runs", nargs="+", default=["talk", "fast:5", "fast:30"])
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--no-head", action="store_true", help="skip the head-on-trunk check")
    p.add_argument("--seed", type=int, default=0, help="random_state of every run")
    p.add_argument("--verbose", type=int, default=2)
    args = p.parse_args()
    (x_train, y_train), (x_test, y_test) = load_cifar10(args.data)
    x_train, y_train = balanced_subset(x_train, y_train, args.train_size)
    print(f"CIFAR-10: {len(x_train)} train / {len(x_test)} test images, "
          f"{os.cpu_count()} CPU cores", flush=True)
    rows = []
    for run in args.runs:
        preset, _, minutes = run.partition(":")
        cnn = CifarCNN(preset=preset, max_minutes=float(minutes) if minutes else None,
                       random_state=args.seed, verbose=args.verbose)
        t = time.perf_counter()
        cnn.fit(x_train, y_train)
        train_s = time.perf_counter() - t
        acc = cnn.score(x_test, y_test)
        tta = bool(cnn.resolved_params()["tta"])
        acc_plain = cnn.set_params(tta=False).score(x_test, y_test) if tta else acc
        cnn.set_params(tta=None)
        head_acc, head_s = (float("nan"), 0.0) if args.no_head else head_on_trunk(
            cnn, x_train, y_train, x_test, y_test)
        widths = "/".join(str(w) for w in getattr(cnn, "conv_filters_", ()))
        rows.append((run, widths, cnn.n_iter_, train_s, acc, acc_plain, head_acc))
        print(f"{run}: {cnn.n_iter_} epochs in {train_s / 60:.1f} min -> test accuracy "
              f"{acc:.4f} (without TTA {acc_plain:.4f}); logistic regression on the cached "
              f"trunk features {head_acc:.4f} ({head_s:.0f} s)", flush=True)
    print(f"\n{'run':<9}{'widths':>12}{'epochs':>7}{'minutes':>9}{'test acc':>10}"
          f"{'no TTA':>8}{'head on trunk':>15}")
    for run, widths, epochs, seconds, acc, plain, head in rows:
        print(f"{run:<9}{widths:>12}{epochs:>7}{seconds / 60:>9.1f}{acc:>10.4f}{plain:>8.4f}"
              f"{head:>15.4f}")


if __name__ == "__main__":
    main()
