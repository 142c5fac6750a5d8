"""The talk's transfer-learning flow: frozen VGG-16 features -> HDF5 cache -> heads.

    python examples/vgg16_transfer_cifar10.py --data ../shared/data/cifar10-jpg \
        --train-size 5000 --test-size 1000 --weights imagenet

Offline without ImageNet weights, ``--weights none`` runs the same flow on a randomly
initialised (seeded) VGG-16: the pipeline works, the accuracy is not ImageNet's.
"""

from __future__ import annotations

import time

from _common import load_data, parser, weights
from sklearn.linear_model import LogisticRegression

from transferkit import DenseHead, FeatureCache, SklearnHead, VGG16Extractor


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    (x_train, y_train), (x_test, y_test) = load_data(args)
    vgg = VGG16Extractor(weights=weights(args), pooling="avg", input_size=args.input_size)
    cache = FeatureCache(args.cache)

    t = time.perf_counter()
    f_train = cache.extract(vgg, x_train, labels=y_train, verbose=1)
    f_test = cache.extract(vgg, x_test, labels=y_test, verbose=1)
    t_extract = time.perf_counter() - t
    t = time.perf_counter()
    cache.extract(vgg, x_train)
    t_hit = time.perf_counter() - t
    print(f"VGG-16 ({args.weights}, {args.input_size}px, avg pool): {f_train.shape[1]}-d "
          f"features; extraction {t_extract:.1f} s "
          f"({(len(f_train) + len(f_test)) / t_extract:.0f} images/s; a cache hit is "
          f"instant), re-read of the training features {t_hit:.3f} s")

    for name, head in [
        ("logistic regression", SklearnHead(LogisticRegression(max_iter=2000))),
        ("dense head (256, dropout 0.5)",
         DenseHead(hidden_units=(256,), dropout=0.5, epochs=30, random_state=0)),
    ]:
        t = time.perf_counter()
        head.fit(f_train, y_train)
        fit_s = time.perf_counter() - t
        print(f"{name:<30} test accuracy {head.score(f_test, y_test):.4f}   fit {fit_s:.1f} s")


if __name__ == "__main__":
    main()
