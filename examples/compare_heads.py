"""Several heads on one feature cache: each fit's time next to the extraction's.

    python examples/compare_heads.py --data ../shared/data/cifar10-jpg --weights none
"""

from __future__ import annotations

import time

from _common import load_data, parser, weights
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC

from transferkit import DenseHead, FeatureCache, SklearnHead, VGG16Extractor


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    (x_train, y_train), (x_test, y_test) = load_data(args)
    vgg = VGG16Extractor(weights=weights(args), pooling="avg", input_size=args.input_size)
    cache = FeatureCache(args.cache)
    t = time.perf_counter()
    f_train = cache.extract(vgg, x_train)
    f_test = cache.extract(vgg, x_test)
    t_call = time.perf_counter() - t
    # The cache records how long the backbone ran, also when this call was a cache hit.
    t_extract = sum(cache.info(cache.key(vgg, x)).extract_seconds for x in (x_train, x_test))
    print(f"features {f_train.shape}: backbone time {t_extract:.1f} s "
          f"(this call: {t_call:.2f} s)")

    heads = {
        "logistic regression": SklearnHead(LogisticRegression(max_iter=2000)),
        "ridge": SklearnHead(RidgeClassifier()),
        "linear SVM": SklearnHead(LinearSVC(C=0.01)),
        "k-nearest neighbours (k=10)": SklearnHead(KNeighborsClassifier(10)),
        "random forest (200 trees)": SklearnHead(RandomForestClassifier(200, random_state=0)),
        "dense head (256, dropout 0.5)": DenseHead(hidden_units=(256,), random_state=0),
    }
    print(f"{'head':<32}{'accuracy':>10}{'fit s':>9}{'fit / extraction':>18}")
    for name, head in heads.items():
        t = time.perf_counter()
        head.fit(f_train, y_train)
        fit_s = time.perf_counter() - t
        acc = head.score(f_test, y_test)
        print(f"{name:<32}{acc:>10.4f}{fit_s:>9.2f}{fit_s / t_extract:>17.3f}x")


if __name__ == "__main__":
    main()
