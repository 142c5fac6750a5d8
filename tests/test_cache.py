"""FeatureCache: hits, misses, invalidation, resume, metadata, lazy reads and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import (
    Interrupt,
    assert_features_close,
    count_calls,
    interrupt_after,
    make_images,
)
from sklearn.base import clone

from transferkit import FeatureCache, VGG16Extractor
from transferkit import exceptions as exc
from transferkit.cache import FORMAT_VERSION, LazyFeatures


@pytest.fixture(scope="module")
def vgg() -> VGG16Extractor:
    return VGG16Extractor(weights=None, batch_size=8, layer="block3_pool")


@pytest.fixture
def cache(tmp_path) -> FeatureCache:
    return FeatureCache(tmp_path / "features.h5")


def test_miss_then_hit_never_runs_the_backbone_again(cache, vgg, images) -> None:
    x = make_images(20, seed=1)
    ext = clone(vgg)
    calls = count_calls(ext)
    first = cache.extract(ext, x)
    assert calls == [0]
    np.testing.assert_array_equal(first, vgg.transform(x))
    second = cache.extract(ext, x)
    assert calls == [0]  # read from disk
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32 and first.shape == (20, 256)


@pytest.mark.kernels
def test_each_setting_or_data_change_is_a_new_entry(cache, vgg) -> None:
    x = make_images(12, seed=2)
    changed_pixel = x.copy()
    changed_pixel[5, 3, 3, 0] ^= 1
    variants = [
        (vgg, x),
        (clone(vgg).set_params(pooling="max"), x),
        (clone(vgg).set_params(layer="block2_pool"), x),
        (clone(vgg).set_params(seed=1), x),
        (clone(vgg).set_params(input_size=40), x),
        (clone(vgg).set_params(input_size=40, resize_method="nearest"), x),
        (vgg, changed_pixel),
        (vgg, x[::-1]),
        (vgg, x.astype(np.float32)),
    ]
    keys = [cache.key(e, imgs) for e, imgs in variants]
    assert len(set(keys)) == len(variants)
    results = [cache.extract(e, imgs) for e, imgs in variants]
    assert len(cache.entries()) == len(variants)
    np.testing.assert_array_equal(results[0], vgg.transform(x))
    assert not np.array_equal(results[0], results[1])
    # Reversed images are other batches: equal to float32 tolerance, not bit for bit.
    assert_features_close(results[7], results[0][::-1])


def test_batch_size_does_not_change_the_key(cache, vgg, images) -> None:
    assert cache.key(vgg, images) == cache.key(clone(vgg).set_params(batch_size=3), images)


@pytest.mark.kernels
def test_interrupted_extraction_resumes_and_equals_uninterrupted(tmp_path, vgg) -> None:
    x = make_images(30, seed=3)
    reference = FeatureCache(tmp_path / "ref.h5").extract(vgg, x)
    cache = FeatureCache(tmp_path / "resume.h5")
    for error in (Interrupt, KeyboardInterrupt):
        ext = interrupt_after(clone(vgg), 1, error)
        with pytest.raises(error):
            cache.extract(ext, x)
    (partial,) = cache.entries(include_incomplete=True)
    assert not partial.complete and partial.n_done == 16  # each run kept one batch of 8
    assert cache.entries() == []
    with pytest.raises(exc.CacheError, match="incomplete.*resume"):
        cache.load(partial.key)
    ext = clone(vgg)
    calls = count_calls(ext)
    out = cache.extract(ext, x)
    assert calls == [16]  # resumed after the last complete batch
    np.testing.assert_array_equal(out, reference)


def test_resume_keeps_the_original_batch_size(tmp_path, vgg) -> None:
    x = make_images(20, seed=4)
    cache = FeatureCache(tmp_path / "c.h5")
    with pytest.raises(Interrupt):
        cache.extract(interrupt_after(clone(vgg), 1), x, batch_size=5)
    ext = clone(vgg).set_params(batch_size=7)
    calls = count_calls(ext)
    cache.extract(ext, x)
    assert calls == [5]
    assert cache.info(cache.key(vgg, x)).n_done == 20


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from transferkit import FeatureCache, VGG16Extractor
    x = np.random.default_rng(3).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    ext = VGG16Extractor(weights=None, batch_size=8, layer="block3_pool")
    original = VGG16Extractor.iter_features
    def iter_features(self, *a, **k):
        for offset, feats in original(self, *a, **k):
            if offset == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)
            yield offset, feats
    ext.iter_features = iter_features.__get__(ext)
    FeatureCache(sys.argv[1]).extract(ext, x)
    """
)


def test_killed_process_leaves_a_readable_file_that_resumes(tmp_path, vgg) -> None:
    path = tmp_path / "killed.h5"
    script = tmp_path / "kill.py"
    script.write_text(_KILL_SCRIPT)
    x = np.random.default_rng(3).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for kill_at in (16, 32):  # killed twice, the second time after resuming
        proc = subprocess.run(
            [sys.executable, str(script), str(path), str(kill_at)], env=env, capture_output=True
        )
        assert proc.returncode == -9, proc.stderr.decode()[-2000:]
        cache = FeatureCache(path)
        (entry,) = cache.entries(include_incomplete=True)
        # Batches before `kill_at` were computed; the writer thread may not have flushed
        # the last one or two when the process died: they are recomputed on resume.
        assert kill_at - 16 <= entry.n_done <= kill_at and entry.n_done % 8 == 0
        assert not entry.complete
    out = FeatureCache(path).extract(vgg, x)
    np.testing.assert_array_equal(out, vgg.transform(x))


def test_metadata_labels_and_class_names(cache, vgg) -> None:
    x = make_images(10, seed=5)
    y = np.arange(10) % 3
    cache.extract(vgg, x, labels=y, class_names=["a", "b", "c"])
    (entry,) = cache.entries()
    assert entry.extractor == "vgg16"
    assert entry.extractor_config["layer"] == "block3_pool"
    assert entry.extractor_config["weights"] == {"random_seed": 0}
    assert entry.extractor_fingerprint == vgg.fingerprint
    assert entry.shape == (10, 256) and entry.complete and entry.n_done == 10
    assert entry.class_names == ["a", "b", "c"] and entry.has_labels
    assert {"transferkit", "tensorflow", "keras", "h5py", "numpy"} <= set(entry.versions)
    assert entry.nbytes >= 10 * 256 * 4
    np.testing.assert_array_equal(cache.labels(entry.key), y)
    assert entry.key in cache and len(cache) == 1 and list(cache) == [entry.key]
    # string labels, replaced on a later call without re-extracting
    names = np.array(["a", "b", "c"])[y]
    cache.extract(vgg, x, labels=names)
    np.testing.assert_array_equal(cache.labels(entry.key), names)
    with h5py.File(cache.path) as f:
        assert json.loads(f["entries"][entry.key].attrs["extractor_config"])["pooling"] == "avg"


def test_lazy_reads_rows_on_demand(cache, vgg) -> None:
    x = make_images(16, seed=6)
    full = cache.extract(vgg, x)
    lazy = cache.extract(vgg, x, lazy=True)
    assert isinstance(lazy, LazyFeatures)
    assert lazy.shape == (16, 256) and len(lazy) == 16
    np.testing.assert_array_equal(lazy[3:7], full[3:7])
    np.testing.assert_array_equal(np.asarray(lazy), full)
    np.testing.assert_array_equal(np.concatenate(list(lazy.iter_batches(5))), full)


def test_accepts_lazy_h5py_images(tmp_path, vgg) -> None:
    x = make_images(12, seed=7)
    with h5py.File(tmp_path / "images.h5", "w") as f:
        f["x"] = x
    with h5py.File(tmp_path / "images.h5", "r") as f:
        out = FeatureCache(tmp_path / "c.h5").extract(vgg, f["x"])
    np.testing.assert_array_equal(out, vgg.transform(x))


def test_delete_entry_keeps_the_others(cache, vgg) -> None:
    a, b = make_images(4, seed=8), make_images(4, seed=9)
    fa = cache.extract(vgg, a)
    cache.extract(vgg, b)
    cache.delete(cache.key(vgg, b))
    assert [e.key for e in cache.entries()] == [cache.key(vgg, a)]
    np.testing.assert_array_equal(cache.load(cache.key(vgg, a)), fa)


# ---------------------------------------------------------------------------- errors
def test_not_hdf5_file_is_refused_and_left_untouched(tmp_path, vgg, images) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("my precious notes")
    with pytest.raises(exc.CacheCorruptedError, match=r"notes\.h5.*not an HDF5"):
        FeatureCache(path).extract(vgg, images)
    assert path.read_text() == "my precious notes"


def test_foreign_hdf5_file_is_refused(tmp_path, vgg, images) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(exc.CacheCorruptedError, match="not a transferkit feature cache"):
        FeatureCache(path).extract(vgg, images)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["data"][()], np.arange(3))


def test_newer_format_is_refused(tmp_path, vgg, images) -> None:
    path = tmp_path / "new.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "transferkit.FeatureCache"
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(exc.CacheCorruptedError, match="newer transferkit.*Upgrade"):
        FeatureCache(path).entries()


def test_second_writer_is_refused(tmp_path, vgg, images) -> None:
    from transferkit.cache._locks import writer_lock

    cache = FeatureCache(tmp_path / "locked.h5")
    with writer_lock(cache.path), pytest.raises(exc.CacheLockedError, match="Another process"):
        cache.extract(vgg, images)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels": np.arange(5)}, exc.InvalidInputError, r"one label per image: expected 24"),
        ({"labels": np.full(24, 0.5)}, exc.InvalidInputError, "integers or strings.*continuous"),
        ({"labels": np.full((24, 3), 1 / 3)}, exc.InvalidInputError, r"not one-hot.*argmax"),
        ({"class_names": "abc"}, exc.InvalidTypeError, "`class_names` must be a list"),
        ({"batch_size": -1}, exc.InvalidInputError, "`batch_size`"),
    ],
)
def test_bad_arguments(cache, vgg, images, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        cache.extract(vgg, images, **kwargs)
    assert not cache.path.exists() or cache.entries() == []


def test_bad_extractor_images_and_keys(cache, vgg) -> None:
    with pytest.raises(exc.InvalidTypeError, match="`extractor` must be a transferkit extractor"):
        cache.extract("vgg16", make_images(2))
    with pytest.raises(exc.InvalidInputError, match="4 dimensions"):
        cache.extract(vgg, np.zeros((2, 32, 32)))
    cache.extract(vgg, make_images(2))
    with pytest.raises(exc.InvalidInputError, match="No entry 'nope'.*entries"):
        cache.load("nope")
    with pytest.raises(exc.InvalidInputError, match="`compression`"):
        FeatureCache(cache.path, compression="zstd")
    with pytest.raises(exc.InvalidTypeError, match="`path` must be a file path"):
        FeatureCache(3)


def test_creates_missing_folders(tmp_path, vgg, images) -> None:
    cache = FeatureCache(tmp_path / "a" / "b" / "features.h5")
    assert cache.extract(vgg, images[:2]).shape == (2, 256)
    assert cache.path.is_file()


def test_missing_file_reads_as_empty(tmp_path) -> None:
    cache = FeatureCache(tmp_path / "sub" / "none.h5")
    assert cache.entries() == [] and len(cache) == 0 and "k" not in cache
    assert not Path(cache.path).exists()


# ---------------------------------------------------------------------------- staleness
def _save_vgg_weights(vgg: VGG16Extractor, path: Path, bump: float = 0.0) -> str:
    vgg.transform(make_images(1))
    model = next(iter(vgg._forward_cache.values())).python_function.base
    weights = model.get_weights()
    weights[0] = weights[0] + bump  # the first conv kernel
    model.set_weights(weights)
    model.save_weights(path)
    if bump:
        weights[0] = weights[0] - bump
        model.set_weights(weights)
    return str(path)


def _one_pixel(x):
    x = x.copy()
    x[3, 5, 7, 1] ^= 1
    return x


def _numpy_ext(**kw):
    from conftest import NumpyExtractor

    return NumpyExtractor(**kw)


STALENESS_CASES = {
    # name: (baseline extractor factory, changed extractor factory, image transform)
    "layer": ("vgg", lambda v, p: clone(v).set_params(layer="block2_pool"), None),
    "pooling": ("vgg", lambda v, p: clone(v).set_params(pooling="max"), None),
    "input_size": ("vgg", lambda v, p: clone(v).set_params(input_size=48), None),
    "resize_method": (
        "vgg_resized", lambda v, p: clone(v).set_params(resize_method="nearest"), None
    ),
    "weights_file_content": (
        "vgg_file", lambda v, p: clone(v).set_params(
            weights=_save_vgg_weights(v, p / "w2.weights.h5", bump=1e-3)), None,
    ),
    "random_weights_seed": ("vgg", lambda v, p: clone(v).set_params(seed=7), None),
    "preprocessing": ("numpy", lambda v, p: _numpy_ext(preprocessing="center"), None),
    "dtype": ("numpy", lambda v, p: _numpy_ext(dtype="float16"), None),
    "one_pixel": ("numpy", None, _one_pixel),
    "image_order": ("numpy", None, lambda x: x[::-1]),
    "image_dtype": ("numpy", None, lambda x: x.astype(np.float32)),
}


@pytest.mark.parametrize("case", sorted(STALENESS_CASES))
def test_no_fingerprint_input_change_reuses_an_old_entry(case, tmp_path, vgg) -> None:
    base_kind, change_extractor, change_images = STALENESS_CASES[case]
    base = {
        "vgg": lambda: clone(vgg),
        "vgg_resized": lambda: clone(vgg).set_params(input_size=40),
        "vgg_file": lambda: VGG16Extractor(
            weights=_save_vgg_weights(vgg, tmp_path / "w1.weights.h5"), batch_size=8,
            layer="block3_pool",
        ),
        "numpy": lambda: _numpy_ext(),
    }[base_kind]()
    x = make_images(12, seed=21)
    cache = FeatureCache(tmp_path / "stale.h5")
    old = cache.extract(base, x)
    other = change_extractor(base, tmp_path) if change_extractor else clone(base)
    x2 = change_images(x) if change_images else x
    calls = count_calls(other)
    new = cache.extract(other, x2)
    assert calls == [0], "the backbone must run again: a changed input is a new entry"
    assert cache.key(other, x2) != cache.key(base, x)
    assert len(cache.entries()) == 2
    np.testing.assert_array_equal(new, other.transform(x2))
    if case not in ("image_dtype",):
        assert not np.array_equal(new, old)


def test_feature_version_change_invalidates(tmp_path, monkeypatch) -> None:
    import transferkit.extractors._base as base_module

    ext, x = _numpy_ext(), make_images(6, seed=22)
    cache = FeatureCache(tmp_path / "v.h5")
    cache.extract(ext, x)
    old_key = cache.key(ext, x)
    monkeypatch.setattr(base_module, "FEATURE_VERSION", "999")
    calls = count_calls(ext)
    cache.extract(ext, x)
    assert calls == [0] and cache.key(ext, x) != old_key
