"""Tests for transferkit.datasets.keras_data and .sources: tf.data and PyDataset as sources."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import NumpyExtractor, make_images

from transferkit import FeatureCache
from transferkit.datasets import KerasDataSource, as_image_source, from_keras_data
from transferkit.exceptions import InvalidInputError, InvalidTypeError

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


@pytest.fixture
def xy() -> tuple[np.ndarray, np.ndarray]:
    return make_images(22, size=8, seed=3), np.arange(22) % 4


class Batches(keras.utils.PyDataset):
    """A PyDataset over arrays, batches of ``bs``; ``shuffled`` reorders on every read."""

    def __init__(self, x, y=None, bs=5, shuffled=False, **kw):
        super().__init__(**kw)
        self.x, self.y, self.bs, self.shuffled, self.reads = x, y, bs, shuffled, 0

    def __len__(self):
        return -(-len(self.x) // self.bs)

    def __getitem__(self, i):
        x = self.x
        if self.shuffled:
            self.reads += 1
            x = np.roll(x, self.reads, axis=0)
        sl = slice(i * self.bs, (i + 1) * self.bs)
        return x[sl] if self.y is None else (x[sl], self.y[sl])


# ------------------------------------------------------------------------------ elements
@pytest.mark.parametrize("batched", [None, 4, 7])
def test_tf_pairs_batched_or_not_give_the_images_labels_and_batches(xy, batched) -> None:
    x, y = xy
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.batch(batched) if batched else ds
    src = from_keras_data(ds)
    assert src.shape == x.shape and src.dtype == np.uint8 and len(src) == 22
    np.testing.assert_array_equal(src.labels, y)
    assert src.class_names is None
    batches = list(src.iter_batches(6, start=3))
    assert [len(b) for b in batches] == [6, 6, 6, 1]
    np.testing.assert_array_equal(np.concatenate(batches), x[3:])
    np.testing.assert_array_equal(np.asarray(src), x)
    np.testing.assert_array_equal(src[5], x[5])
    np.testing.assert_array_equal(src[-1], x[-1])
    np.testing.assert_array_equal(src[4:9], x[4:9])


def test_the_fingerprint_covers_content_order_and_labels_not_batching(xy) -> None:
    x, y = xy
    fp = from_keras_data(tf.data.Dataset.from_tensor_slices((x, y))).fingerprint()
    assert fp == from_keras_data(tf.data.Dataset.from_tensor_slices((x, y)).batch(5)).fingerprint()
    assert fp == from_keras_data(Batches(x, y, bs=3)).fingerprint()
    x2 = x.copy()
    x2[7, 1, 2, 0] ^= 1
    others = [
        tf.data.Dataset.from_tensor_slices((x2, y)),  # one pixel
        tf.data.Dataset.from_tensor_slices((x[::-1].copy(), y[::-1].copy())),  # order
        tf.data.Dataset.from_tensor_slices((x, (y + 1) % 4)),  # labels
        tf.data.Dataset.from_tensor_slices(x),  # no labels
        tf.data.Dataset.from_tensor_slices((x[:-1], y[:-1])),  # one image fewer
    ]
    fps = {from_keras_data(d).fingerprint() for d in others}
    assert fp not in fps and len(fps) == len(others)


def test_dict_elements_one_hot_binary_and_string_labels() -> None:
    x = make_images(6, size=8)
    src = from_keras_data(
        tf.data.Dataset.from_tensor_slices({"image": x, "label": [2, 0, 1, 2, 0, 1]}))
    np.testing.assert_array_equal(src.labels, [2, 0, 1, 2, 0, 1])
    onehot = np.eye(3, dtype="float32")[[2, 0, 1, 2, 0, 1]]
    src = from_keras_data(tf.data.Dataset.from_tensor_slices((x, onehot)).batch(4))
    np.testing.assert_array_equal(src.labels, [2, 0, 1, 2, 0, 1])
    binary = np.asarray([[1.0], [0.0], [1.0], [1.0], [0.0], [0.0]], dtype="float32")
    src = from_keras_data(tf.data.Dataset.from_tensor_slices((x, binary)).batch(4))
    np.testing.assert_array_equal(src.labels, [1, 0, 1, 1, 0, 0])
    names = ["dog", "cat", "dog", "emu", "cat", "cat"]
    src = from_keras_data(tf.data.Dataset.from_tensor_slices((x, names)))
    assert src.class_names == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(src.labels, [1, 0, 1, 2, 0, 0])
    src = from_keras_data(tf.data.Dataset.from_tensor_slices((x, names)),
                          class_names=["emu", "dog", "cat"])
    np.testing.assert_array_equal(src.labels, [1, 2, 1, 0, 2, 2])


def test_image_dataset_from_directory_keeps_float_pixels_and_class_names(tmp_path) -> None:
    from PIL import Image

    x = make_images(6, size=8, seed=5)
    for i, name in enumerate(["zebra", "ant", "zebra", "ant", "ant", "zebra"]):
        (tmp_path / name).mkdir(exist_ok=True)
        Image.fromarray(x[i]).save(tmp_path / name / f"{i}.png")
    ds = keras.utils.image_dataset_from_directory(
        tmp_path, image_size=(8, 8), batch_size=4, shuffle=False)
    src = as_image_source(ds)
    assert isinstance(src, KerasDataSource)
    assert src.class_names == ["ant", "zebra"] and src.dtype == np.float32
    assert src.shape == (6, 8, 8, 3)
    np.testing.assert_array_equal(np.bincount(src.labels), [3, 3])
    cache = FeatureCache(tmp_path / "f.h5")
    ext = NumpyExtractor(batch_size=4)
    feats = cache.extract(ext, ds)
    key = cache.key(ext, ds)
    np.testing.assert_array_equal(cache.labels(key), src.labels)
    assert cache.info(key).class_names == ["ant", "zebra"]
    np.testing.assert_allclose(feats, ext.transform(np.asarray(src)), rtol=1e-6)


# ------------------------------------------------------------------------------ the cache
def test_cache_extract_of_a_tf_dataset_equals_the_array_and_hits_the_second_time(
        tmp_path, xy) -> None:
    x, y = xy
    cache = FeatureCache(tmp_path / "f.h5")
    ext = NumpyExtractor(batch_size=4)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)
    feats = cache.extract(ext, ds)
    np.testing.assert_array_equal(feats, ext.transform(x))
    key = cache.key(ext, ds)
    assert cache.info(key).complete
    np.testing.assert_array_equal(cache.labels(key), y)
    # the same content as a PyDataset is the same entry: served, not extracted again
    np.testing.assert_array_equal(cache.extract(ext, Batches(x, y)), feats)
    assert cache.key(ext, Batches(x, y)) == key
    assert [e.key for e in cache.entries(include_incomplete=True)] == [key]


def test_transform_iter_features_and_views_accept_pipelines(tmp_path, xy) -> None:
    from transferkit.views import extract_views

    x, y = xy
    ext = NumpyExtractor(batch_size=4)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    np.testing.assert_array_equal(ext.transform(ds), ext.transform(x))
    got = np.concatenate([f for _, f in ext.iter_features(Batches(x, y, bs=6))])
    np.testing.assert_array_equal(got, ext.transform(x))
    views = extract_views(FeatureCache(tmp_path / "v.h5"), ext, ds, ("identity", "hflip"))
    np.testing.assert_array_equal(views[1], ext.transform(x[:, :, ::-1]))


def test_a_resumed_extraction_reads_the_pipeline_again_and_matches(
        tmp_path, xy, monkeypatch) -> None:
    """An extraction stopped after two batches; the same call completes it, equal to the array's."""
    x, y = xy
    cache = FeatureCache(tmp_path / "f.h5")
    ext = NumpyExtractor(batch_size=4)
    build = NumpyExtractor._build_forward

    class Stop(Exception):
        pass

    def failing_build(self, image_size):
        inner, seen = build(self, image_size), [0]

        def forward(batch):
            seen[0] += 1
            if seen[0] == 3:
                raise Stop
            return inner(batch)

        return forward

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    monkeypatch.setattr(NumpyExtractor, "_build_forward", failing_build)
    with pytest.raises(Stop):
        cache.extract(NumpyExtractor(batch_size=4), ds)
    monkeypatch.setattr(NumpyExtractor, "_build_forward", build)
    key = cache.key(ext, ds)
    assert 0 < cache.info(key).n_done < len(x)
    np.testing.assert_array_equal(cache.extract(ext, ds), ext.transform(x))
    np.testing.assert_array_equal(cache.labels(key), y)


# ------------------------------------------------------------------------------ bad input
def test_a_reshuffling_pipeline_is_refused_before_any_row_is_written(tmp_path, xy) -> None:
    x, y = xy
    cache = FeatureCache(tmp_path / "f.h5")
    ext = NumpyExtractor(batch_size=4)
    cache.extract(ext, x[:4])  # an existing entry, which must stay intact
    before = cache.load(cache.key(ext, x[:4])).copy()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(22, seed=None)
    with pytest.raises(InvalidInputError, match=r"`images`: .*different image at position "
                                                r"\d+ than on its first pass.*reshuffle"):
        cache.extract(ext, ds)
    for entry in cache.entries(include_incomplete=True):
        if entry.key != cache.key(ext, x[:4]):
            assert entry.n_done == 0
    np.testing.assert_array_equal(cache.load(cache.key(ext, x[:4])), before)
    with pytest.raises(InvalidInputError, match="different image"):
        list(from_keras_data(Batches(x, shuffled=True)).iter_batches(4))
    # a seeded shuffle that does not reshuffle is the same images every pass: accepted
    fixed = tf.data.Dataset.from_tensor_slices(x).shuffle(22, seed=1,
                                                          reshuffle_each_iteration=False)
    assert from_keras_data(fixed).fingerprint() == from_keras_data(fixed).fingerprint()
    assert len(np.concatenate(list(from_keras_data(fixed).iter_batches(8)))) == 22


def test_bad_pipelines_get_errors_naming_the_argument(xy) -> None:
    x, y = xy
    ext = NumpyExtractor()
    with pytest.raises(InvalidInputError, match=r"`images` is an infinite tf.data.Dataset.*"
                                                r"repeat\(\)"):
        ext.transform(tf.data.Dataset.from_tensor_slices(x).repeat())
    with pytest.raises(InvalidInputError, match=r"`images`: .*shape \(height, width, 3\).*"
                                                r"received element shape \(8, 8\)"):
        ext.transform(tf.data.Dataset.from_tensor_slices(x[..., 0]))
    with pytest.raises(InvalidTypeError, match=r"`images`: .*uint8, or floats.*int32"):
        ext.transform(tf.data.Dataset.from_tensor_slices(x.astype("int32")))
    with pytest.raises(InvalidInputError, match=r"values in \[0, 255\].*received values in "
                                                r"\[0, 5\d\d\]"):
        ext.transform(tf.data.Dataset.from_tensor_slices(x.astype("float32") * 2.0))
    with pytest.raises(InvalidInputError, match="yields no images"):
        ext.transform(tf.data.Dataset.from_tensor_slices(x[:0]))
    with pytest.raises(InvalidInputError, match=r"dicts with keys \['img'\].*'image' key"):
        from_keras_data(tf.data.Dataset.from_tensor_slices({"img": x}))
    ragged = tf.data.Dataset.from_generator(
        lambda: iter([x[0], x[1, :4]]), output_signature=tf.TensorSpec((None, None, 3),
                                                                       tf.uint8))
    with pytest.raises(InvalidInputError, match=r"shape \(4, 8, 3\).*after \(8, 8, 3\).*resize"):
        ext.transform(ragged)
    with pytest.raises(InvalidInputError, match=r"`class_names` must list every label.*'emu'"):
        _ = from_keras_data(tf.data.Dataset.from_tensor_slices((x[:2], ["cat", "emu"])),
                            class_names=["cat"]).labels
    with pytest.raises(InvalidInputError, match=r"labels must be in 0..1.*from 0 to 3"):
        _ = from_keras_data(tf.data.Dataset.from_tensor_slices((x, y)),
                            class_names=["a", "b"]).labels
    with pytest.raises(InvalidTypeError, match=r"`dataset` must be a tf.data.Dataset or a "
                                               r"keras.utils.PyDataset; received"):
        from_keras_data(x)

    class Infinite(keras.utils.PyDataset):
        @property
        def num_batches(self):
            return None

        def __getitem__(self, i):
            return x[:2]

    with pytest.raises(InvalidInputError, match="PyDataset without a length"):
        ext.transform(Infinite())


def test_a_tf_dataset_cannot_be_pickled_but_a_py_dataset_can(xy) -> None:
    x, y = xy
    with pytest.raises(InvalidTypeError, match="cannot be sent to another process"):
        pickle.dumps(from_keras_data(tf.data.Dataset.from_tensor_slices(x)))
    src = pickle.loads(pickle.dumps(from_keras_data(Batches(x, y))))
    np.testing.assert_array_equal(np.asarray(src), x)


def test_sources_refuse_dataframes_and_paths_with_what_to_call(tmp_path) -> None:
    pd = pytest.importorskip("pandas")
    with pytest.raises(InvalidTypeError, match=r"`images` is a pandas DataFrame.*load_image_list"):
        NumpyExtractor().transform(pd.DataFrame({"path": ["a.png"]}))
    with pytest.raises(InvalidTypeError, match=r"`images` must be images, not a path.*"
                                               r"load_image_folder"):
        FeatureCache(tmp_path / "f.h5").extract(NumpyExtractor(), str(tmp_path))
    x = make_images(3, size=8)
    assert as_image_source(x) is x
