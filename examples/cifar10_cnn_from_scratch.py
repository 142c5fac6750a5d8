"""The talk's CNN trained from scratch on CIFAR-10, then used as a feature extractor.

    python examples/cifar10_cnn_from_scratch.py --data ../shared/data/cifar10-jpg \
        --train-size 50000 --test-size 10000 --epochs 8
"""

from __future__ import annotations

import time

from _common import load_data, parser
from sklearn.linear_model import LogisticRegression

from transferkit import CifarCNN, FeatureCache, SklearnHead


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    p.add_argument("--save", help="save the trained model to this .keras file")
    args = p.parse_args()
    (x_train, y_train), (x_test, y_test) = load_data(args)

    cnn = CifarCNN(epochs=args.epochs, random_state=0, verbose=2)
    t = time.perf_counter()
    cnn.fit(x_train, y_train)
    train_s = time.perf_counter() - t
    print(f"CifarCNN (talk architecture): test accuracy {cnn.score(x_test, y_test):.4f}, "
          f"trained {args.epochs} epochs in {train_s:.1f} s")
    if args.save:
        print(f"saved to {cnn.save(args.save)}")

    # Its trunk is an extractor like any other: cache the penultimate features, fit a head.
    cache = FeatureCache(args.cache)
    t = time.perf_counter()
    f_train = cache.extract(cnn, x_train)
    f_test = cache.extract(cnn, x_test)
    t_extract = time.perf_counter() - t
    t = time.perf_counter()
    head = SklearnHead(LogisticRegression(max_iter=2000)).fit(f_train, y_train)
    print(f"logistic regression on its {f_train.shape[1]}-d features: test accuracy "
          f"{head.score(f_test, y_test):.4f} (extraction {t_extract:.1f} s, "
          f"fit {time.perf_counter() - t:.1f} s)")


if __name__ == "__main__":
    main()
