"""CifarCNN presets on CIFAR-10: test accuracy against training wall time, side by side.

    python benchmarks/cifar_cnn.py --data ../shared/data/cifar10-jpg --runs talk fast:5 fast:30

Each run is ``preset`` or ``preset:minutes`` (a time budget: the schedule adapts so
training ends within it). Runs happen one after another in this process, on the full
training set (or ``--train-size``), and are scored on the full test set.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from transferkit.datasets import balanced_subset, load_cifar10  # noqa: E402
from transferkit.extractors import CifarCNN  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="CIFAR-10 location (see transferkit.datasets.load_cifar10)")
    p.add_argument("--runs", nargs="+", default=["talk", "fast:5", "fast:30"])
    p.add_argument("--train-size", type=int, default=None)
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
                       random_state=0, verbose=args.verbose)
        t = time.perf_counter()
        cnn.fit(x_train, y_train)
        train_s = time.perf_counter() - t
        acc = cnn.score(x_test, y_test)
        rows.append((run, cnn.n_iter_, train_s, acc))
        print(f"{run}: {cnn.n_iter_} epochs in {train_s / 60:.1f} min -> test accuracy "
              f"{acc:.4f}", flush=True)
    print(f"\n{'run':<10}{'epochs':>8}{'minutes':>9}{'test acc':>10}")
    for run, epochs, seconds, acc in rows:
        print(f"{run:<10}{epochs:>8}{seconds / 60:>9.1f}{acc:>10.4f}")


if __name__ == "__main__":
    main()
