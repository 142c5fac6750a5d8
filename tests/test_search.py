"""transferkit.search: nearest neighbours and near-duplicates over a cache entry's features."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
import warnings

import numpy as np
import pytest
from conftest import NumpyExtractor, interrupt_after, make_images
from sklearn.neighbors import NearestNeighbors

import transferkit.search._index as index_module
from transferkit.cache import FeatureCache, LazyFeatures
from transferkit.exceptions import (
    InvalidInputError,
    InvalidTypeError,
    MissingDependencyError,
    NotFittedError,
)
from transferkit.search import (
    DEFAULT_DUPLICATE_THRESHOLD,
    DuplicateReport,
    EntryIndex,
    SimilarityIndex,
    find_duplicates,
    index_entry,
)

try:
    import faiss  # noqa: F401

    HAS_FAISS = True
except ImportError:
    HAS_FAISS = False

needs_faiss = pytest.mark.skipif(not HAS_FAISS, reason="faiss is not installed")


def extractor(**kw):
    kw.setdefault("grid", 4)  # 48 features: distinct random images are far apart
    return NumpyExtractor(**kw)


@pytest.fixture
def cache(tmp_path):
    return FeatureCache(tmp_path / "f.h5")


def entry_key(cache, images, **kw):
    ext = extractor(**kw)
    cache.extract(ext, images)
    return cache.key(ext, images)


def index_files(cache):
    folder = cache.path.parent / f"{cache.path.name}.index"
    return sorted(folder.iterdir()) if folder.is_dir() else []


# ---------------------------------------------------------------------- SimilarityIndex
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("center", [False, True])
def test_exact_kneighbors_equals_sklearn_brute_force(metric, center) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 10)) + 0.5
    Q = rng.normal(size=(15, 10)) + 0.5
    index = SimilarityIndex(metric=metric, center=center, backend="exact").fit(X)
    shift = X.mean(axis=0) if center and metric == "cosine" else 0.0
    nn = NearestNeighbors(metric=metric, algorithm="brute").fit(X - shift)

    dist, idx = index.kneighbors(Q, n_neighbors=6)
    d_ref, i_ref = nn.kneighbors(Q - shift, n_neighbors=6)
    np.testing.assert_array_equal(idx, i_ref)
    np.testing.assert_allclose(dist, d_ref, atol=2e-6)
    assert dist.dtype == np.float32 and idx.dtype == np.int64

    dist, idx = index.kneighbors(None, n_neighbors=6)  # each row excluding itself
    d_ref, i_ref = nn.kneighbors(None, n_neighbors=6)
    np.testing.assert_array_equal(idx, i_ref)
    np.testing.assert_allclose(dist, d_ref, atol=2e-6)
    assert not (idx == np.arange(len(X))[:, None]).any()
    assert index.backend_ == "exact" and index.n_samples_fit_ == 120
    assert index.n_features_in_ == 10
    np.testing.assert_array_equal(index.kneighbors(Q, 3, return_distance=False), idx_q3 := (
        nn.kneighbors(Q - shift, 3, return_distance=False)))
    assert idx_q3.shape == (15, 3)


def test_centring_changes_cosine_neighbours_of_positive_features() -> None:
    rng = np.random.default_rng(2)
    X = np.abs(rng.normal(size=(80, 12))) + 3.0  # all positive, like ReLU features
    raw = SimilarityIndex(center=False).fit(X)
    centred = SimilarityIndex(center=True).fit(X)
    np.testing.assert_allclose(centred.mean_, X.mean(axis=0))
    np.testing.assert_array_equal(raw.mean_, np.zeros(12))
    s_raw = raw.similarity(raw.kneighbors(n_neighbors=79)[0])
    s_centred = centred.similarity(centred.kneighbors(n_neighbors=79)[0])
    assert s_raw.min() > 0.9  # raw similarities crowd near 1
    assert s_centred.min() < 0.0  # centring spreads them


def test_exact_search_in_small_blocks_equals_one_block(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(90, 8))
    whole = SimilarityIndex(backend="exact").fit(X).kneighbors(n_neighbors=5)
    monkeypatch.setattr(index_module, "BLOCK_ELEMENTS", 200)  # 2 query rows per block
    monkeypatch.setattr(index_module, "READ_ROWS", 7)
    blocked = SimilarityIndex(backend="exact").fit(X).kneighbors(n_neighbors=5)
    np.testing.assert_array_equal(blocked[1], whole[1])
    np.testing.assert_allclose(blocked[0], whole[0], atol=1e-6)


def test_fit_reads_lazy_features(cache, monkeypatch) -> None:
    images = make_images(30, seed=4)
    key = entry_key(cache, images)
    lazy = cache.load(key, lazy=True)
    assert isinstance(lazy, LazyFeatures)
    reads = []
    original = LazyFeatures.__getitem__
    monkeypatch.setattr(LazyFeatures, "__getitem__",
                        lambda self, i: reads.append(i) or original(self, i))
    monkeypatch.setattr(index_module, "READ_ROWS", 8)
    from_lazy = SimilarityIndex().fit(lazy).kneighbors(n_neighbors=4)
    assert len(reads) == 4  # 30 rows, 8 at a time
    from_array = SimilarityIndex().fit(np.asarray(cache.load(key))).kneighbors(n_neighbors=4)
    np.testing.assert_array_equal(from_lazy[1], from_array[1])


def test_similarity_is_one_minus_cosine_distance_and_refused_for_euclidean() -> None:
    X = np.random.default_rng(5).normal(size=(20, 4))
    index = SimilarityIndex(center=False).fit(X)
    dist, idx = index.kneighbors(X[:3], 2)
    expected = X[:3] @ X[idx[:, 0]].T / np.outer(np.linalg.norm(X[:3], axis=1),
                                                  np.linalg.norm(X[idx[:, 0]], axis=1))
    np.testing.assert_allclose(index.similarity(dist)[:, 0], np.diag(expected), atol=1e-6)
    np.testing.assert_allclose(index.similarity(dist)[:, 0], 1.0, atol=1e-6)  # X[:3] itself
    with pytest.raises(InvalidInputError, match="metric='cosine'"):
        SimilarityIndex(metric="euclidean").fit(X).similarity(dist)


def test_zero_vectors_have_similarity_zero() -> None:
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    index = SimilarityIndex(center=False, backend="exact").fit(X)
    d, i = index.kneighbors(np.array([[0.0, 0.0]]), 3)
    np.testing.assert_allclose(d, 1.0)


def test_get_params_are_the_keyword_only_constructor_arguments() -> None:
    index = SimilarityIndex(metric="euclidean", center=False, backend="exact")
    assert index.get_params() == {"metric": "euclidean", "center": False, "backend": "exact"}
    assert not hasattr(index, "mean_")
    with pytest.raises(TypeError):
        SimilarityIndex("cosine")  # keyword-only


def test_unfitted_index_refuses_queries() -> None:
    with pytest.raises(NotFittedError, match="not fitted yet.*kneighbors"):
        SimilarityIndex().kneighbors(np.zeros((1, 3)))
    with pytest.raises(NotFittedError):
        SimilarityIndex().transform(np.zeros((1, 3)))


@needs_faiss
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_faiss_finds_the_same_top1_as_exact_on_separated_data(metric) -> None:
    rng = np.random.default_rng(6)
    centres = rng.normal(size=(60, 16)) * 10
    X = np.repeat(centres, 2, axis=0)  # twins: 2c and 2c + 1, apart from other clusters
    X[1::2] += rng.normal(scale=0.5, size=centres.shape)
    Q = centres + rng.normal(scale=0.01, size=centres.shape)  # nearest: row 2c
    exact = SimilarityIndex(metric=metric, backend="exact").fit(X)
    approx = SimilarityIndex(metric=metric, backend="faiss").fit(X)
    assert approx.backend_ == "faiss" and approx.vectors_ is None
    for queries in (Q, None):
        d_e, i_e = exact.kneighbors(queries, 1)
        d_a, i_a = approx.kneighbors(queries, 1)
        np.testing.assert_array_equal(i_a, i_e)
        np.testing.assert_allclose(d_a, d_e, atol=1e-4)
    # excluding self, each row's nearest is its twin
    twins = np.arange(120) ^ 1
    np.testing.assert_array_equal(approx.kneighbors(None, 1)[1][:, 0], twins)


@needs_faiss
def test_auto_uses_faiss_above_the_exact_limit(monkeypatch) -> None:
    X = np.random.default_rng(7).normal(size=(50, 4))
    assert SimilarityIndex().fit(X).backend_ == "exact"
    monkeypatch.setattr(index_module, "EXACT_LIMIT", 10)
    assert SimilarityIndex().fit(X).backend_ == "faiss"


def test_missing_faiss_is_named_with_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    X = np.random.default_rng(8).normal(size=(50, 4))
    with pytest.raises(MissingDependencyError, match=r'pip install "transferkit\[search\]"'):
        SimilarityIndex(backend="faiss").fit(X)
    monkeypatch.setattr(index_module, "EXACT_LIMIT", 10)
    assert SimilarityIndex(backend="auto").fit(X).backend_ == "exact"  # falls back


# ---------------------------------------------------------------------- index_entry
def test_index_entry_saves_then_loads_without_rebuilding(cache) -> None:
    images = make_images(25, seed=9)
    key = entry_key(cache, images)
    built = index_entry(cache, key)
    assert isinstance(built, EntryIndex) and built.source == "built"
    files = index_files(cache)
    assert [f.suffix for f in files] == [".json", ".npy"]
    assert all(f.name.startswith(key + "-") for f in files)
    sidecar = json.loads(files[0].read_text())
    entry = cache.info(key)
    assert sidecar["key"] == key and (sidecar["n"], sidecar["d"]) == (25, 48)
    assert sidecar["data_fingerprint"] == entry.data_fingerprint
    assert sidecar["extractor_fingerprint"] == entry.extractor_fingerprint
    assert (sidecar["created"], sidecar["completed"]) == (entry.created, entry.completed)
    assert sidecar["params"] == {"metric": "cosine", "center": False, "backend": "exact"}
    inode = files[1].stat().st_ino

    loaded = index_entry(str(cache.path), key)  # a path works too
    assert loaded.source == "loaded"
    assert files[1].stat().st_ino == inode
    assert isinstance(loaded.index.vectors_, np.memmap)
    np.testing.assert_allclose(loaded.index.mean_, built.index.mean_)
    for a, b in zip(loaded.query_rows(np.arange(25), 3), built.query_rows(np.arange(25), 3),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.entry == entry and loaded.key == key


def test_other_parameters_get_other_files(cache) -> None:
    key = entry_key(cache, make_images(12, seed=10))
    index_entry(cache, key)
    index_entry(cache, key, center=True)
    index_entry(cache, key, metric="euclidean", backend="exact")
    assert len(index_files(cache)) == 6
    assert index_entry(cache, key, center=True).source == "loaded"


def test_save_false_writes_nothing(cache) -> None:
    key = entry_key(cache, make_images(12, seed=11))
    assert index_entry(cache, key, save=False).source == "built"
    assert index_files(cache) == []


def test_entry_deleted_and_extracted_again_is_reindexed(cache, monkeypatch) -> None:
    images = make_images(14, seed=12)
    key = entry_key(cache, images)
    index_entry(cache, key)
    cache.delete(key)
    import transferkit.cache._core as core
    import transferkit.cache._writer as writer

    monkeypatch.setattr(core, "now", lambda: "2001-01-01T00:00:00+00:00")
    monkeypatch.setattr(writer, "now", lambda: "2001-01-01T00:00:01+00:00")
    assert entry_key(cache, images) == key
    again = index_entry(cache, key)
    assert again.source == "built"
    sidecar = json.loads(next(f for f in index_files(cache) if f.suffix == ".json").read_text())
    assert sidecar["created"] == "2001-01-01T00:00:00+00:00"
    assert index_entry(cache, key).source == "loaded"


@pytest.mark.parametrize("field,value", [("n", 99), ("d", 3), ("created", "yesterday"),
                                         ("data_fingerprint", "other"),
                                         ("extractor_fingerprint", "other"),
                                         ("format_version", 0)])
def test_a_sidecar_that_does_not_match_the_entry_is_rebuilt(cache, field, value) -> None:
    key = entry_key(cache, make_images(12, seed=13))
    index_entry(cache, key)
    sidecar = next(f for f in index_files(cache) if f.suffix == ".json")
    meta = json.loads(sidecar.read_text())
    meta[field] = value
    sidecar.write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stale, not damaged: no warning
        assert index_entry(cache, key).source == "built"
    assert json.loads(sidecar.read_text())[field] != value
    assert index_entry(cache, key).source == "loaded"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "sidecar"])
def test_a_corrupt_index_is_rebuilt_with_a_warning(cache, damage) -> None:
    key = entry_key(cache, make_images(12, seed=14))
    reference = index_entry(cache, key).query_rows([0, 1], 3)
    sidecar, npy = index_files(cache)
    if damage == "garbage":
        npy.write_bytes(b"not an npy file at all" * 40)
    elif damage == "truncated":
        npy.write_bytes(npy.read_bytes()[:-10])
    else:
        sidecar.write_text("{ not json")
    with pytest.warns(UserWarning, match="damaged.*rebuilt"):
        rebuilt = index_entry(cache, key)
    assert rebuilt.source == "built"
    for a, b in zip(rebuilt.query_rows([0, 1], 3), reference, strict=True):
        np.testing.assert_array_equal(a, b)
    assert index_entry(cache, key).source == "loaded"


def test_a_wrong_shape_npy_with_a_matching_size_is_rebuilt(cache) -> None:
    key = entry_key(cache, make_images(12, seed=15))
    index_entry(cache, key)
    sidecar, npy = index_files(cache)
    np.save(npy, np.zeros((48, 12), dtype=np.float32))
    meta = json.loads(sidecar.read_text())
    meta["nbytes"] = npy.stat().st_size
    sidecar.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="shape"):
        assert index_entry(cache, key).source == "built"


@needs_faiss
def test_faiss_index_is_saved_loaded_and_rebuilt_when_corrupt(cache) -> None:
    key = entry_key(cache, make_images(30, seed=16))
    built = index_entry(cache, key, backend="faiss")
    assert [f.suffix for f in index_files(cache)] == [".faiss", ".json"]
    loaded = index_entry(cache, key, backend="faiss")
    assert loaded.source == "loaded" and loaded.index.backend_ == "faiss"
    for a, b in zip(loaded.query_rows(np.arange(30), 2), built.query_rows(np.arange(30), 2),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    path = index_files(cache)[0]
    path.write_bytes(b"\0" * path.stat().st_size)
    with pytest.warns(UserWarning, match="damaged"):
        assert index_entry(cache, key, backend="faiss").source == "built"


# ---------------------------------------------------------------------- EntryIndex queries
def test_query_rows_excludes_each_row_itself(cache) -> None:
    images = make_images(20, seed=17)
    images[7] = images[3]  # an exact copy is still found: only the row itself is excluded
    key = entry_key(cache, images)
    entry = index_entry(cache, key)
    dist, idx = entry.query_rows([3, 7, 0], k=4)
    assert idx[0, 0] == 7 and idx[1, 0] == 3
    np.testing.assert_allclose(dist[:2, 0], 0.0, atol=1e-6)
    assert 0 not in idx[2]
    all_d, all_i = entry.index.kneighbors(n_neighbors=4)
    np.testing.assert_array_equal(idx, all_i[[3, 7, 0]])
    d_one, i_one = entry.query_rows(5, k=2)
    assert i_one.shape == (1, 2)


def test_query_images_go_through_the_cache_and_equal_query_features(cache) -> None:
    ext = extractor()
    key = entry_key(cache, make_images(20, seed=18))
    entry = index_entry(cache, key)
    new = make_images(5, seed=19)
    dist, idx = entry.query_images(ext, new, k=3)
    d_ref, i_ref = entry.query_features(ext.transform(new), k=3)
    np.testing.assert_array_equal(idx, i_ref)
    np.testing.assert_allclose(dist, d_ref, atol=1e-6)
    assert cache.key(ext, new) in cache  # the query images' features were cached


def test_query_images_refuse_another_extractor(cache) -> None:
    key = entry_key(cache, make_images(20, seed=20))
    entry = index_entry(cache, key)
    other = extractor(grid=2)
    with pytest.raises(InvalidInputError, match="`extractor`") as err:
        entry.query_images(other, make_images(3, seed=21))
    message = str(err.value)
    assert "NumpyExtractor" in message
    assert other.fingerprint[:12] in message and entry.entry.extractor_fingerprint[:12] in message
    assert cache.key(other, make_images(3, seed=21)) not in cache  # refused before extracting


def test_labels_and_class_names_come_with_the_entry(cache) -> None:
    images = make_images(10, seed=22)
    ext = extractor()
    cache.extract(ext, images, labels=np.arange(10) % 2, class_names=["cat", "dog"])
    entry = index_entry(cache, cache.key(ext, images))
    np.testing.assert_array_equal(entry.labels, np.arange(10) % 2)
    assert entry.class_names == ["cat", "dog"]
    unlabelled = index_entry(cache, entry_key(cache, make_images(10, seed=23)))
    assert unlabelled.labels is None and unlabelled.class_names is None


# ---------------------------------------------------------------------- find_duplicates
def planted_sets(seed: int = 24):
    """Set A; set B with exact copies and noisy copies of some of A, then distinct images."""
    rng = np.random.default_rng(seed)
    a = make_images(40, seed=seed)
    b = make_images(30, seed=seed + 1)
    b[0:5] = a[3:8]
    noisy = a[10:15].astype(np.int16) + rng.integers(-4, 5, size=a[10:15].shape)
    b[5:10] = np.clip(noisy, 0, 255).astype(np.uint8)
    planted = {(q, m) for q, m in zip(range(10), [3, 4, 5, 6, 7, 10, 11, 12, 13, 14],
                                      strict=True)}
    return a, b, planted


def test_find_duplicates_between_entries_finds_exact_and_near_copies(cache) -> None:
    """(Centred: the toy extractor's grid means are all positive and alike when raw.)"""
    a, b, planted = planted_sets()
    train = index_entry(cache, entry_key(cache, a), center=True)
    test = index_entry(cache, entry_key(cache, b), center=True)
    assert find_duplicates(train, against=test).threshold == DEFAULT_DUPLICATE_THRESHOLD
    report = find_duplicates(train, against=test, threshold=0.9)  # (the toy features' scale)
    assert isinstance(report, DuplicateReport)
    assert report.threshold == 0.9
    assert set(zip(report.query_rows.tolist(), report.match_rows.tolist(),
                   strict=True)) == planted
    assert len(report) == 10 and report.n_queries_with_match == 10
    assert (report.query_key, report.match_key) == (test.key, train.key)
    assert np.all(np.diff(report.similarities) <= 0)
    np.testing.assert_allclose(report.similarities[:5], 1.0, atol=1e-5)  # the exact copies
    assert report.similarities.dtype == np.float32
    # the distinct images are far below the threshold
    everything = find_duplicates(train, against=test, threshold=-1.0)
    others = [s for q, m, s in zip(everything.query_rows, everything.match_rows,
                                   everything.similarities, strict=True)
              if (q, m) not in planted]
    assert len(everything) == 30 * 40 and max(others) < 0.7
    assert "10 pairs" in repr(report)


def test_find_duplicates_centres_both_sides_with_the_index_mean(cache) -> None:
    a, b, _ = planted_sets()
    train = index_entry(cache, entry_key(cache, a))
    test = index_entry(cache, entry_key(cache, b))
    report = find_duplicates(train, against=test, threshold=-1.0)
    fa = np.asarray(cache.load(train.key), dtype=np.float64) - train.index.mean_
    fb = np.asarray(cache.load(test.key), dtype=np.float64) - train.index.mean_
    sims = (fb / np.linalg.norm(fb, axis=1)[:, None]) @ (fa / np.linalg.norm(fa, axis=1)[:, None]).T
    np.testing.assert_allclose(report.similarities,
                               sims[report.query_rows, report.match_rows], atol=1e-5)


def test_find_duplicates_within_an_entry_reports_each_pair_once(cache, monkeypatch) -> None:
    a = make_images(30, seed=25)
    a[20] = a[2]
    a[25] = a[2]
    a[21] = np.clip(a[5].astype(np.int16) + 3, 0, 255).astype(np.uint8)
    monkeypatch.setattr(index_module, "BLOCK_ELEMENTS", 90)  # 3 query rows per block
    index = index_entry(cache, entry_key(cache, a), center=True)
    report = find_duplicates(index, threshold=0.9)
    pairs = sorted(zip(report.query_rows.tolist(), report.match_rows.tolist(), strict=True))
    assert pairs == [(2, 20), (2, 25), (5, 21), (20, 25)]
    assert report.query_key == report.match_key == index.key
    assert report.n_queries_with_match == 3
    assert (find_duplicates(index, against=index, threshold=0.9).query_rows.tolist()
            == report.query_rows.tolist())
    everything = find_duplicates(index, threshold=-1.0)
    assert len(everything) == 30 * 29 // 2
    assert np.all(everything.query_rows < everything.match_rows)


def test_max_pairs_keeps_the_most_similar(cache, monkeypatch) -> None:
    a = make_images(30, seed=26)
    monkeypatch.setattr(index_module, "BLOCK_ELEMENTS", 60)  # prune between blocks too
    index = index_entry(cache, entry_key(cache, a), center=True)
    everything = find_duplicates(index, threshold=-1.0)
    top = find_duplicates(index, threshold=-1.0, max_pairs=7)
    assert len(top) == 7
    np.testing.assert_array_equal(top.similarities, everything.similarities[:7])
    np.testing.assert_array_equal(top.query_rows, everything.query_rows[:7])


def test_duplicates_csv_has_keys_rows_similarities_and_labels(cache, tmp_path) -> None:
    a, b, planted = planted_sets()
    ext = extractor()
    cache.extract(ext, a, labels=np.arange(40) % 3, class_names=["cat", "dog", "emu"])
    cache.extract(ext, b)  # no labels
    train = index_entry(cache, cache.key(ext, a), center=True)
    test = index_entry(cache, cache.key(ext, b), center=True)
    report = find_duplicates(train, against=test)
    path = report.to_csv(tmp_path / "out" / "dups.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["query_key", "query_row", "match_key", "match_row", "similarity",
                             "query_label", "match_label"]
    assert len(rows) == 10
    assert {(int(r["query_row"]), int(r["match_row"])) for r in rows} == planted
    names = ["cat", "dog", "emu"]
    for r in rows:
        assert r["query_key"] == test.key and r["match_key"] == train.key
        assert r["query_label"] == "" and r["match_label"] == names[int(r["match_row"]) % 3]
        assert float(r["similarity"]) >= 0.9
    plain = find_duplicates(test, against=train).to_csv(tmp_path / "plain.csv")
    header = plain.read_text().splitlines()[0]
    assert header == "query_key,query_row,match_key,match_row,similarity,query_label,match_label"
    unlabelled = index_entry(cache, entry_key(cache, make_images(8, seed=27)), center=True)
    bare = find_duplicates(unlabelled).to_csv(tmp_path / "bare.csv")
    assert bare.read_text().splitlines() == [
        "query_key,query_row,match_key,match_row,similarity"]


def test_find_duplicates_refuses_an_entry_from_another_extractor(cache) -> None:
    images = make_images(12, seed=28)
    index = index_entry(cache, entry_key(cache, images))
    other = index_entry(cache, entry_key(cache, images, grid=2))
    with pytest.raises(InvalidInputError, match="`against`") as err:
        find_duplicates(index, against=other)
    assert other.entry.extractor_fingerprint[:12] in str(err.value)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw,name", [({"metric": "manhattan"}, "metric"),
                                     ({"backend": "annoy"}, "backend"),
                                     ({"center": "yes"}, "center")])
def test_bad_parameters_are_named(cache, kw, name) -> None:
    X = np.random.default_rng(29).normal(size=(10, 3))
    with pytest.raises((InvalidInputError, InvalidTypeError), match=f"`{name}`.*received"):
        SimilarityIndex(**kw).fit(X)
    key = entry_key(cache, make_images(8, seed=29))
    with pytest.raises((InvalidInputError, InvalidTypeError), match=f"`{name}`.*received"):
        index_entry(cache, key, **kw)


@pytest.mark.parametrize("k", [0, -1, 11])
def test_bad_n_neighbors(k) -> None:
    index = SimilarityIndex().fit(np.random.default_rng(30).normal(size=(10, 3)))
    with pytest.raises(InvalidInputError, match=f"`n_neighbors`.*received {k}"):
        index.kneighbors(np.zeros((1, 3)), k)


def test_n_neighbors_excluding_self_is_at_most_n_minus_one() -> None:
    index = SimilarityIndex().fit(np.random.default_rng(31).normal(size=(10, 3)))
    assert index.kneighbors(n_neighbors=9)[1].shape == (10, 9)
    assert index.kneighbors(np.zeros((1, 3)), 10)[1].shape == (1, 10)
    with pytest.raises(InvalidInputError, match="`n_neighbors` must be at most 9.*received 10"):
        index.kneighbors(None, 10)
    with pytest.raises(InvalidTypeError, match="`n_neighbors`"):
        index.kneighbors(None, 2.5)


def test_bad_k_for_entry_queries(cache) -> None:
    entry = index_entry(cache, entry_key(cache, make_images(8, seed=32)))
    with pytest.raises(InvalidInputError, match="`k` must be at most 7.*received 8"):
        entry.query_rows([0], k=8)
    with pytest.raises(InvalidInputError, match="`k` must be at most 8.*received 9"):
        entry.query_features(np.zeros((1, 48)), k=9)
    with pytest.raises(InvalidInputError, match="`k`.*received 0"):
        entry.query_images(extractor(), make_images(1, seed=33), k=0)
    assert entry.query_features(np.zeros((1, 48)), k=8)[1].shape == (1, 8)


def test_bad_features_width_and_values(cache) -> None:
    entry = index_entry(cache, entry_key(cache, make_images(8, seed=34)))
    with pytest.raises(InvalidInputError, match=r"`features` must have 48 features.*\(2, 12\)"):
        entry.query_features(np.zeros((2, 12)), k=2)
    with pytest.raises(InvalidInputError, match="`features` must be a 2-D array"):
        entry.query_features(np.zeros(48), k=2)
    bad = np.zeros((2, 48))
    bad[1, 3] = np.nan
    with pytest.raises(InvalidInputError, match="`features` contains NaN.*row 1"):
        entry.query_features(bad, k=2)
    with pytest.raises(InvalidInputError, match="`X` must have 48 features"):
        entry.index.kneighbors(np.zeros((2, 5)), 2)
    with pytest.raises(InvalidInputError, match="`X` must be a 2-D array"):
        SimilarityIndex().fit(np.zeros(5))
    with pytest.raises(InvalidTypeError, match="`X`"):
        SimilarityIndex().fit("features")


def test_bad_images_get_the_extractors_own_errors(cache) -> None:
    entry = index_entry(cache, entry_key(cache, make_images(8, seed=35)))
    with pytest.raises(InvalidInputError, match="`images`.*3 \\(RGB\\) channels"):
        entry.query_images(extractor(), np.zeros((2, 32, 32, 1), np.uint8))
    with pytest.raises(InvalidInputError, match="`images`.*single image"):
        entry.query_images(extractor(), np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(InvalidTypeError, match="`extractor` must be a transferkit extractor"):
        entry.query_images(object(), make_images(1))


@pytest.mark.parametrize("rows,error,match", [
    ([0, 8], InvalidInputError, r"`rows` must hold row numbers in \[0, 7\]; received 8"),
    ([-1], InvalidInputError, "`rows`.*received -1"),
    ([], InvalidInputError, "`rows` is empty"),
    ([0.5], InvalidTypeError, "`rows` must be a row number"),
    ([[0, 1]], InvalidTypeError, "`rows`"),
])
def test_bad_rows(cache, rows, error, match) -> None:
    entry = index_entry(cache, entry_key(cache, make_images(8, seed=36)))
    with pytest.raises(error, match=match):
        entry.query_rows(rows, k=2)


def test_bad_keys_and_caches(cache, tmp_path, monkeypatch) -> None:
    with pytest.raises(InvalidInputError, match="`key` must name an entry.*'nope'"):
        index_entry(cache, "nope")  # the cache file does not even exist yet
    entry_key(cache, make_images(8, seed=37))
    with pytest.raises(InvalidInputError, match="`key` must name an entry.*'nope'"):
        index_entry(cache, "nope")
    with pytest.raises(InvalidTypeError, match="`key`"):
        index_entry(cache, 3)
    with pytest.raises(InvalidTypeError, match="`cache` must be a FeatureCache"):
        index_entry(42, "nope")

    ext = interrupt_after(extractor(batch_size=4), 1)
    images = make_images(12, seed=38)
    with pytest.raises(Exception, match="interrupted"):
        cache.extract(ext, images)
    partial = cache.key(extractor(), images)
    assert cache.info(partial).complete is False
    with pytest.raises(InvalidInputError, match="`key` must name a complete entry.*4 of 12"):
        index_entry(cache, partial)

    full = entry_key(cache, make_images(8, seed=39))
    empty = dataclasses.replace(cache.info(full), n_images=0)
    monkeypatch.setattr(FeatureCache, "info", lambda self, key: empty)
    with pytest.raises(InvalidInputError, match="`key` must name an entry with features"):
        index_entry(cache, full)


def test_bad_thresholds_and_indexes(cache) -> None:
    index = index_entry(cache, entry_key(cache, make_images(8, seed=40)))
    for bad in (1.5, -1.01, float("nan")):
        with pytest.raises(InvalidInputError, match=r"`threshold` must be a number in \[-1, 1\]"):
            find_duplicates(index, threshold=bad)
    with pytest.raises(InvalidTypeError, match="`threshold`"):
        find_duplicates(index, threshold="high")
    assert len(find_duplicates(index, threshold=1.0)) == 0
    with pytest.raises(InvalidInputError, match="`max_pairs`"):
        find_duplicates(index, max_pairs=0)
    with pytest.raises(InvalidTypeError, match="`index` must be an EntryIndex"):
        find_duplicates(index.index)
    with pytest.raises(InvalidTypeError, match="`against` must be an EntryIndex"):
        find_duplicates(index, against=np.zeros((2, 48)))
    euclid = index_entry(cache, index.key, metric="euclidean")
    with pytest.raises(InvalidInputError, match="`index` must be built with metric='cosine'"):
        find_duplicates(euclid)
    with pytest.raises(InvalidTypeError, match="`path`"):
        find_duplicates(index).to_csv(3)
