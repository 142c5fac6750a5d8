"""Augmented views through the cache, and heads trained/evaluated on several views."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import NumpyExtractor, make_images, make_learnable

from transferkit import FeatureCache, SklearnHead, VGG16Extractor
from transferkit import exceptions as exc
from transferkit.views import (
    ViewExtractor,
    apply_view,
    extract_views,
    predict_proba_views,
    score_views,
    stack_views,
    with_view,
)


def test_apply_view_flips_and_shifts_without_touching_the_input() -> None:
    x = make_images(2, size=16)
    before = x.copy()
    np.testing.assert_array_equal(apply_view(x, "hflip"), x[:, :, ::-1])
    np.testing.assert_array_equal(apply_view(x, "identity"), x)
    right = apply_view(x, "shift_right")  # content moves right by 16 // 8 = 2 pixels
    np.testing.assert_array_equal(right[:, :, 2:], x[:, :, :-2])
    down = apply_view(x, "shift_down")
    np.testing.assert_array_equal(down[:, 2:], x[:, :-2])
    both = apply_view(x, "hflip+shift_left")
    np.testing.assert_array_equal(both, apply_view(apply_view(x, "hflip"), "shift_left"))
    np.testing.assert_array_equal(x, before)
    assert right.shape == x.shape and right.dtype == x.dtype


def test_each_view_is_its_own_cache_entry(tmp_path) -> None:
    ext, x = NumpyExtractor(grid=4), make_images(10, size=16, seed=1)
    cache = FeatureCache(tmp_path / "v.h5")
    feats = extract_views(cache, ext, x, ("identity", "hflip", "shift_up"))
    assert feats.shape == (3, 10, 48)
    np.testing.assert_array_equal(feats[0], ext.transform(x))
    np.testing.assert_array_equal(feats[1], ext.transform(x[:, :, ::-1]))
    assert len(cache.entries()) == 3
    assert with_view(ext, "identity") is ext  # the plain entry is shared
    assert {e.extractor_config.get("view") for e in cache.entries()} == {None, "hflip", "shift_up"}
    again = extract_views(cache, ext, x, ("identity", "hflip", "shift_up"))
    np.testing.assert_array_equal(again, feats)
    assert len(cache.entries()) == 3


def test_view_extractor_with_a_tensorflow_backbone_and_resume(tmp_path) -> None:
    vgg = VGG16Extractor(weights=None, layer="block2_pool", batch_size=4)
    x = make_images(10, seed=2)
    flipped = with_view(vgg, "hflip")
    assert isinstance(flipped, ViewExtractor) and flipped.fingerprint != vgg.fingerprint
    np.testing.assert_allclose(flipped.transform(x), vgg.transform(x[:, :, ::-1]), atol=1e-5)
    tail = np.concatenate([f for _, f in flipped.iter_features(x, start=4)])
    np.testing.assert_allclose(tail, vgg.transform(x[4:, :, ::-1]), atol=1e-5)


def test_heads_on_views_and_test_time_averaging(tmp_path) -> None:
    ext = NumpyExtractor(grid=2)
    (x, y), (xt, yt) = make_learnable(120, size=16, seed=3), make_learnable(60, size=16, seed=4)
    cache = FeatureCache(tmp_path / "v.h5")
    views = ("identity", "hflip")
    X, Y = stack_views(extract_views(cache, ext, x, views), y)
    assert X.shape == (240, 12) and np.array_equal(Y[:120], Y[120:])
    head = SklearnHead().fit(X, Y)
    ft = extract_views(cache, ext, xt, views)
    proba = predict_proba_views(head, ft)
    np.testing.assert_allclose(
        proba, (head.predict_proba(ft[0]) + head.predict_proba(ft[1])) / 2, atol=1e-12
    )
    assert score_views(head, ft, yt) > 0.9


def test_view_errors() -> None:
    ext = NumpyExtractor()
    with pytest.raises(exc.InvalidInputError, match=r"`view` must be one of.*'rotate'"):
        with_view(ext, "hflip+rotate")
    with pytest.raises(exc.InvalidTypeError, match="`view` must be a view name"):
        with_view(ext, 3)
    with pytest.raises(exc.InvalidTypeError, match="`extractor` must be a transferkit"):
        ViewExtractor("vgg16", "hflip").transform(make_images(1))
    with pytest.raises(exc.InvalidInputError, match=r"`views` must be a non-empty"):
        extract_views(None, ext, make_images(1), "hflip")
    with pytest.raises(exc.InvalidInputError, match=r"`features` must have shape \(n_views"):
        stack_views(np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(exc.InvalidInputError, match=r"`y` must have one label per image"):
        stack_views(np.zeros((2, 3, 4)), np.zeros(5))


def test_views_of_a_trained_cifar_cnn_use_its_preset_batch_size(tmp_path) -> None:
    from transferkit import CifarCNN

    x, y = make_learnable(40, size=16, seed=3)
    cnn = CifarCNN(preset="fast", conv_filters=(4, 8), epochs=1, random_state=0).fit(x, y)
    assert cnn.batch_size is None  # the preset's (500) applies
    assert with_view(cnn, "hflip").batch_size == 500
    feats = extract_views(FeatureCache(tmp_path / "c.h5"), cnn, x)
    assert feats.shape == (2, 40, 8)
    np.testing.assert_allclose(feats[1], cnn.transform(x[:, :, ::-1]), atol=1e-5)
