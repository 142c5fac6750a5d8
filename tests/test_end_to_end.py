"""Synthetic images -> extractor -> feature cache -> heads, as a user runs it."""

from __future__ import annotations

import numpy as np
from conftest import make_learnable
from sklearn.linear_model import LogisticRegression

from transferkit import DenseHead, FeatureCache, SklearnHead, VGG16Extractor, load_head


def test_images_to_cache_to_heads_beats_chance(tmp_path) -> None:
    (x_train, y_train), (x_test, y_test) = make_learnable(300, seed=10), make_learnable(
        150, seed=11
    )
    vgg = VGG16Extractor(weights=None, layer="block2_pool", pooling="avg", batch_size=32)
    cache = FeatureCache(tmp_path / "features.h5")
    f_train = cache.extract(vgg, x_train, labels=y_train, class_names=["red", "green", "blue"])
    f_test = cache.extract(vgg, x_test, labels=y_test)
    assert f_train.shape == (300, 128) and f_test.shape == (150, 128)

    logreg = SklearnHead(LogisticRegression(max_iter=2000)).fit(f_train, y_train)
    dense = DenseHead(hidden_units=(32,), epochs=20, random_state=0).fit(f_train, y_train)
    assert logreg.score(f_test, y_test) > 0.9  # chance is 1/3
    assert dense.score(f_test, y_test) > 0.9

    # A second session: everything comes back from disk, heads from their files.
    key = cache.key(vgg, x_train)
    again = FeatureCache(tmp_path / "features.h5")
    np.testing.assert_array_equal(again.load(key), f_train)
    np.testing.assert_array_equal(again.labels(key), y_train)
    assert again.info(key).class_names == ["red", "green", "blue"]
    dense.save(tmp_path / "dense.tkhead")
    restored = load_head(tmp_path / "dense.tkhead")
    np.testing.assert_array_equal(restored.predict(f_test), dense.predict(f_test))
