"""Tests for transferkit.heads (DenseHead, SklearnHead, load_head).

Everything runs on tiny synthetic feature sets (a few hundred samples, 32 features)
so the whole file stays well under two minutes on two CPU cores.

scikit-learn's estimator checks
-------------------------------
Both heads pass every check of ``parametrize_with_checks`` (scikit-learn 1.9), so
``_expected_failed_checks`` returns an empty dict for each of them. It is kept as the
single place to document a check that legitimately fails, with the reason, if a
future scikit-learn adds one. Notes on how the checks are satisfied:

* ``DenseHead`` is checked as ``DenseHead(epochs=5, hidden_units=(16,),
  learning_rate=0.01, batch_size=32)`` so that it runs fast and still learns the
  check's blobs (``check_classifiers_train`` asks for > 83 % accuracy); with the
  defaults' learning rate of 1e-3, five epochs are too few for that.
* ``check_fit_idempotent``, ``check_methods_subset_invariance`` and
  ``check_methods_sample_order_invariance`` pass because the checks set
  ``random_state=0`` and all DenseHead randomness comes from explicit per-op seeds.
* Two checks are *skipped* by scikit-learn itself in this environment, not by us:
  ``check_array_api_input`` (needs ``SCIPY_ARRAY_API=1``) and
  ``check_classifier_data_not_an_array`` (needs pandas).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import make_blobs, make_classification
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from transferkit import heads as heads_module
from transferkit.exceptions import (
    InvalidInputError,
    InvalidTypeError,
    NotFittedError,
    TransferkitError,
)
from transferkit.heads import DenseHead, SklearnHead, _format, load_head

N_FEATURES = 32


def _small_dense(**kwargs):
    """A DenseHead that trains in well under a second on the test data."""
    params = dict(hidden_units=(16,), epochs=10, learning_rate=0.01, batch_size=32, random_state=0)
    params.update(kwargs)
    return DenseHead(**params)


@pytest.fixture(scope="module")
def data():
    """Learnable 3-class problem: (X_train, y_train, X_test, y_test), float32 X."""
    X, y = make_classification(
        n_samples=400,
        n_features=N_FEATURES,
        n_informative=8,
        n_redundant=4,
        n_classes=3,
        n_clusters_per_class=1,
        class_sep=2.0,
        random_state=0,
    )
    X = X.astype(np.float32)
    return X[:300], y[:300], X[300:], y[300:]


@pytest.fixture(scope="module")
def binary_data():
    X, y = make_blobs(n_samples=200, n_features=16, centers=2, random_state=1)
    X = X.astype(np.float32)
    return X[:150], y[:150], X[150:], y[150:]


@pytest.fixture(scope="module")
def fitted_dense(data):
    X, y, _, _ = data
    return _small_dense().fit(X, y)


@pytest.fixture(scope="module")
def fitted_sklearn(data):
    X, y, _, _ = data
    return SklearnHead().fit(X, y)


# --------------------------------------------------------------------------- sklearn checks


def _expected_failed_checks(estimator):
    """Checks that legitimately fail, per estimator, as {check name: reason}.

    Empty: both heads pass every check (see the module docstring).
    """
    return {}


@parametrize_with_checks(
    [
        SklearnHead(),
        SklearnHead(LinearSVC(), standardize=False),  # no predict_proba: available_if
        DenseHead(epochs=5, hidden_units=(16,), learning_rate=0.01, batch_size=32),
    ],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- learning


def test_dense_head_learns(data):
    X, y, Xt, yt = data
    head = _small_dense(epochs=20).fit(X, y)
    assert head.score(Xt, yt) > 0.8  # chance is 1/3
    assert list(head.classes_) == [0, 1, 2]
    assert head.n_features_in_ == N_FEATURES
    assert 1 <= head.n_iter_ <= 20
    assert len(head.history_["loss"]) == head.n_iter_
    assert "val_loss" in head.history_
    assert head.mean_.shape == (N_FEATURES,) and head.scale_.shape == (N_FEATURES,)
    proba = head.predict_proba(Xt)
    assert proba.shape == (len(Xt), 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(head.predict(Xt), head.classes_[proba.argmax(axis=1)])


def test_dense_head_default_params_contract(data):
    X, y, Xt, yt = data
    head = DenseHead(hidden_units=(256,), dropout=0.5, epochs=30, random_state=0).fit(X, y)
    assert head.score(Xt, yt) > 0.8


def test_sklearn_head_learns(data):
    X, y, Xt, yt = data
    est = LogisticRegression(max_iter=2000)
    head = SklearnHead(est).fit(X, y)
    assert head.score(Xt, yt) > 0.8
    assert head.estimator_ is not est
    assert not hasattr(est, "coef_"), "the passed estimator must not be fitted"
    assert head.scaler_ is not None
    assert head.predict_proba(Xt).shape == (len(Xt), 3)
    assert head.decision_function(Xt).shape == (len(Xt), 3)
    assert head.predict_log_proba(Xt).shape == (len(Xt), 3)


def test_sklearn_head_without_predict_proba(data):
    X, y, Xt, _ = data
    head = SklearnHead(LinearSVC(), standardize=False)
    assert not hasattr(head, "predict_proba")
    head.fit(X, y)
    assert head.scaler_ is None
    assert not hasattr(head, "predict_proba")
    assert head.decision_function(Xt).shape == (len(Xt), 3)


@pytest.mark.parametrize("make_head", [_small_dense, SklearnHead], ids=["dense", "sklearn"])
def test_binary(binary_data, make_head):
    X, y, Xt, yt = binary_data
    head = make_head().fit(X, y)
    assert head.score(Xt, yt) > 0.9
    assert head.predict_proba(Xt).shape == (len(Xt), 2)


@pytest.mark.parametrize("make_head", [_small_dense, SklearnHead], ids=["dense", "sklearn"])
def test_string_labels(data, make_head):
    X, y, Xt, yt = data
    names = np.array(["cat", "dog", "fish"])
    head = make_head().fit(X, names[y])
    np.testing.assert_array_equal(head.classes_, names)
    pred = head.predict(Xt)
    assert pred.dtype.kind == "U"
    assert head.score(Xt, names[yt]) > 0.8


@pytest.mark.parametrize("make_head", [_small_dense, SklearnHead], ids=["dense", "sklearn"])
def test_one_hot_labels(data, make_head):
    X, y, Xt, _ = data
    one_hot = np.eye(3, dtype=np.float32)[y]
    head_oh = make_head().fit(X, one_hot)
    head_int = make_head().fit(X, y)
    np.testing.assert_array_equal(head_oh.classes_, np.arange(3))
    np.testing.assert_array_equal(head_oh.predict_proba(Xt), head_int.predict_proba(Xt))


def test_one_hot_with_absent_class(data):
    X, y, Xt, _ = data
    one_hot = np.eye(4, dtype=int)[y]  # class 3 never occurs
    head = SklearnHead().fit(X, one_hot)
    np.testing.assert_array_equal(head.classes_, np.arange(4))
    proba = head.predict_proba(Xt)
    assert proba.shape == (len(Xt), 4)
    assert np.all(proba[:, 3] == 0)
    assert np.all(np.isneginf(head.decision_function(Xt)[:, 3]))
    dense = _small_dense(epochs=2).fit(X, one_hot)
    assert dense.predict_proba(Xt).shape == (len(Xt), 4)


def test_hidden_units_variants(data):
    X, y, Xt, _ = data
    for units in [(), 8, (8, 4)]:
        head = _small_dense(hidden_units=units, epochs=2, dropout=0.0).fit(X, y)
        assert head.predict(Xt).shape == (len(Xt),)


def test_no_standardize_and_no_early_stopping(data):
    X, y, Xt, _ = data
    head = _small_dense(standardize=False, early_stopping=False, validation_split=0.0, epochs=3)
    head.fit(X, y)
    assert head.mean_ is None and head.scale_ is None
    assert head.n_iter_ == 3
    assert "val_loss" not in head.history_


def test_tiny_data_skips_validation():
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    y = np.array([0, 0, 1, 1, 2, 2])
    head = DenseHead(hidden_units=(4,), epochs=3, validation_split=0.1, random_state=0)
    head.fit(X, y)
    assert "val_loss" not in head.history_
    assert head.predict(X).shape == (6,)


def test_early_stopping_restores_and_stops(data):
    X, y, _, _ = data
    head = _small_dense(epochs=200, patience=1, learning_rate=0.05).fit(X, y)
    assert head.n_iter_ < 200


# --------------------------------------------------------------------------- determinism


def test_dense_head_deterministic(data):
    X, y, Xt, _ = data
    a = _small_dense(random_state=123).fit(X, y).predict_proba(Xt)
    b = _small_dense(random_state=123).fit(X, y).predict_proba(Xt)
    c = _small_dense(random_state=7).fit(X, y).predict_proba(Xt)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dense_head_leaves_global_numpy_state(data):
    X, y, _, _ = data
    # The legacy global RNG is what scikit-learn's random_state=None draws from.
    np.random.seed(42)  # noqa: NPY002
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    _small_dense(epochs=1, random_state=0).fit(X, y)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002


def test_predict_batch_independent(fitted_dense, data):
    _, _, Xt, _ = data
    full = fitted_dense.predict_proba(Xt)
    parts = np.vstack([fitted_dense.predict_proba(Xt[i : i + 7]) for i in range(0, len(Xt), 7)])
    np.testing.assert_allclose(full, parts, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- sklearn tooling


def test_pipeline_and_gridsearch_dense(data):
    X, y, Xt, yt = data
    pipe = Pipeline([("pca", PCA(n_components=16, random_state=0)), ("head", _small_dense())])
    grid = GridSearchCV(pipe, {"head__hidden_units": [(8,), (16,)]}, cv=2)
    grid.fit(X, y)
    assert grid.best_params_["head__hidden_units"] in [(8,), (16,)]
    assert grid.score(Xt, yt) > 0.8


def test_pipeline_and_gridsearch_sklearn(data):
    X, y, Xt, yt = data
    head = SklearnHead(LogisticRegression(max_iter=1000))
    pipe = Pipeline([("pca", PCA(n_components=16, random_state=0)), ("head", head)])
    grid = GridSearchCV(
        pipe, {"head__estimator__C": [0.1, 1.0], "head__standardize": [True, False]}, cv=2
    )
    grid.fit(X, y)
    assert grid.score(Xt, yt) > 0.8
    assert set(grid.best_params_) == {"head__estimator__C", "head__standardize"}


def test_init_stores_params_only():
    head = DenseHead(dropout=5.0, hidden_units="bad", learning_rate=-1)  # validated in fit
    assert head.get_params()["dropout"] == 5.0
    assert clone(head).get_params() == head.get_params()
    est = LogisticRegression(C=3.0)
    sk = SklearnHead(est, standardize=False)
    assert sk.estimator is est
    assert sk.get_params()["estimator__C"] == 3.0


# --------------------------------------------------------------------------- pickling


def test_pickle_dense(fitted_dense, data):
    _, _, Xt, _ = data
    restored = pickle.loads(pickle.dumps(fitted_dense))
    np.testing.assert_array_equal(restored.predict_proba(Xt), fitted_dense.predict_proba(Xt))
    assert restored.get_params() == fitted_dense.get_params()
    unfitted = pickle.loads(pickle.dumps(DenseHead(epochs=3)))
    assert unfitted.epochs == 3


def test_pickle_sklearn(fitted_sklearn, data):
    _, _, Xt, _ = data
    restored = pickle.loads(pickle.dumps(fitted_sklearn))
    np.testing.assert_array_equal(restored.predict_proba(Xt), fitted_sklearn.predict_proba(Xt))


# --------------------------------------------------------------------------- save / load


def test_save_load_dense(fitted_dense, data, tmp_path):
    _, _, Xt, _ = data
    path = tmp_path / "head.tkhead"
    fitted_dense.save(path)
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        meta = json.loads(zf.read("meta.json"))
    assert {"meta.json", "model.keras", "mean.npy", "scale.npy"} <= names
    assert meta["class"] == "DenseHead"
    assert meta["classes"]["values"] == [0, 1, 2]
    assert meta["classes"]["kind"] == "i"
    for loaded in (load_head(path), DenseHead.load(str(path))):
        assert isinstance(loaded, DenseHead)
        np.testing.assert_array_equal(loaded.predict_proba(Xt), fitted_dense.predict_proba(Xt))
        np.testing.assert_array_equal(loaded.classes_, fitted_dense.classes_)
        assert loaded.get_params() == fitted_dense.get_params()
        assert loaded.n_iter_ == fitted_dense.n_iter_
        assert loaded.history_ == fitted_dense.history_


def test_save_load_dense_string_labels_no_standardize(data, tmp_path):
    X, y, Xt, _ = data
    names = np.array(["a", "bb", "ccc"], dtype=object)
    head = _small_dense(standardize=False, epochs=2).fit(X, names[y])
    path = tmp_path / "any-extension.bin"
    head.save(path)
    loaded = load_head(path)
    assert loaded.mean_ is None
    assert loaded.classes_.dtype == head.classes_.dtype
    np.testing.assert_array_equal(loaded.predict(Xt), head.predict(Xt))


def test_save_load_sklearn_skops(fitted_sklearn, data, tmp_path):
    pytest.importorskip("skops")
    _, _, Xt, _ = data
    path = tmp_path / "head.tkhead"
    fitted_sklearn.save(str(path))
    with zipfile.ZipFile(path) as zf:
        assert {"meta.json", "estimator.skops", "scaler.skops"} <= set(zf.namelist())
        assert json.loads(zf.read("meta.json"))["serializer"] == "skops"
    for loaded in (load_head(path), SklearnHead.load(path)):
        assert isinstance(loaded, SklearnHead)
        assert loaded.estimator is None  # default estimator round-trips as None
        np.testing.assert_array_equal(loaded.predict_proba(Xt), fitted_sklearn.predict_proba(Xt))
        np.testing.assert_array_equal(loaded.predict(Xt), fitted_sklearn.predict(Xt))


def test_save_load_sklearn_auto_trusted_types(data, tmp_path):
    pytest.importorskip("skops")
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y, Xt, _ = data
    names = np.array(["x", "y", "z"])
    head = SklearnHead(HistGradientBoostingClassifier(max_iter=5, random_state=0))
    head.fit(X, names[y]).save(tmp_path / "hgb.tkhead")
    loaded = load_head(tmp_path / "hgb.tkhead")  # TreePredictor: auto-trusted sklearn class
    assert loaded.estimator.max_iter == 5
    np.testing.assert_array_equal(loaded.predict(Xt), head.predict(Xt))


class TinyCentroidClassifier(ClassifierMixin, BaseEstimator):
    """A classifier from outside scikit-learn, untrusted by skops by default."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.centroids_ = np.stack([X[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict(self, X):
        dist = ((X[:, None, :] - self.centroids_[None]) ** 2).sum(axis=-1)
        return self.classes_[dist.argmin(axis=1)]


def test_load_sklearn_untrusted_type(data, tmp_path):
    pytest.importorskip("skops")
    X, y, Xt, _ = data
    head = SklearnHead(TinyCentroidClassifier()).fit(X, y)
    path = tmp_path / "custom.tkhead"
    head.save(path)
    type_name = f"{TinyCentroidClassifier.__module__}.{TinyCentroidClassifier.__qualname__}"
    with pytest.raises(InvalidInputError, match=r"not trusted.*trusted=") as info:
        load_head(path)
    assert type_name in str(info.value)
    loaded = load_head(path, trusted=[type_name])
    np.testing.assert_array_equal(loaded.predict(Xt), head.predict(Xt))
    with pytest.raises(InvalidTypeError, match="`trusted`"):
        load_head(path, trusted=type_name)


def test_auto_trust_only_classes_of_sklearn_numpy_scipy():
    assert _format.is_auto_trusted("sklearn.linear_model.LogisticRegression")
    assert _format.is_auto_trusted("numpy.ndarray")
    assert not _format.is_auto_trusted("numpy.load")  # a function
    assert not _format.is_auto_trusted("numpy.f2py.__main__.main")
    assert not _format.is_auto_trusted("os.system")
    assert not _format.is_auto_trusted("sklearnx.Evil")


def test_save_load_sklearn_without_skops(fitted_sklearn, data, tmp_path, monkeypatch):
    _, _, Xt, _ = data
    monkeypatch.setattr(_format, "import_skops", lambda: None)
    path = tmp_path / "pickled.tkhead"
    fitted_sklearn.save(path)
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("meta.json"))["serializer"] == "pickle"
    with pytest.raises(InvalidInputError, match=r"arbitrary code.*allow_pickle=True.*skops"):
        load_head(path)
    loaded = load_head(path, allow_pickle=True)
    np.testing.assert_array_equal(loaded.predict_proba(Xt), fitted_sklearn.predict_proba(Xt))


def test_load_skops_file_without_skops(fitted_sklearn, tmp_path, monkeypatch):
    pytest.importorskip("skops")
    path = tmp_path / "head.tkhead"
    fitted_sklearn.save(path)
    monkeypatch.setattr(_format, "import_skops", lambda: None)
    with pytest.raises(InvalidInputError, match="pip install skops"):
        load_head(path)


@pytest.mark.parametrize("head", [DenseHead(), SklearnHead()], ids=["dense", "sklearn"])
def test_save_unfitted_raises(head, tmp_path):
    with pytest.raises(NotFittedError, match="not fitted"):
        head.save(tmp_path / "h.tkhead")
    assert not os.listdir(tmp_path)


def test_save_is_atomic(fitted_sklearn, fitted_dense, tmp_path, monkeypatch):
    path = tmp_path / "head.tkhead"
    fitted_sklearn.save(path)
    original = path.read_bytes()

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        fitted_dense.save(path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["head.tkhead"]  # no temp file left behind


def test_load_wrong_class(fitted_sklearn, tmp_path):
    path = tmp_path / "head.tkhead"
    fitted_sklearn.save(path)
    with pytest.raises(InvalidInputError, match=r"must hold a DenseHead.*'SklearnHead'"):
        DenseHead.load(path)


def _rewrite(path, out, replace):
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            data = replace.get(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)


def test_load_bad_files(fitted_dense, tmp_path):
    good = tmp_path / "good.tkhead"
    fitted_dense.save(good)
    meta = json.loads(zipfile.ZipFile(good).read("meta.json"))

    with pytest.raises(InvalidInputError, match=r"`path`.*no such file"):
        load_head(tmp_path / "missing.tkhead")

    not_zip = tmp_path / "notzip.tkhead"
    not_zip.write_text("hello")
    with pytest.raises(InvalidInputError, match="not a readable zip"):
        load_head(not_zip)

    truncated = tmp_path / "truncated.tkhead"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InvalidInputError, match="`path`"):
        load_head(truncated)

    no_meta = tmp_path / "nometa.tkhead"
    _rewrite(good, no_meta, {"meta.json": None})
    with pytest.raises(InvalidInputError, match="meta.json"):
        load_head(no_meta)

    bad_json = tmp_path / "badjson.tkhead"
    _rewrite(good, bad_json, {"meta.json": b"{not json"})
    with pytest.raises(InvalidInputError, match="valid JSON"):
        load_head(bad_json)

    newer = tmp_path / "newer.tkhead"
    _rewrite(good, newer, {"meta.json": json.dumps({**meta, "format_version": 99})})
    with pytest.raises(InvalidInputError, match="version 99"):
        load_head(newer)

    bad_model = tmp_path / "badmodel.tkhead"
    _rewrite(good, bad_model, {"model.keras": b"garbage"})
    with pytest.raises(InvalidInputError, match="Keras model"):
        load_head(bad_model)

    no_model = tmp_path / "nomodel.tkhead"
    _rewrite(good, no_model, {"model.keras": None})
    with pytest.raises(InvalidInputError, match="model.keras"):
        load_head(no_model)

    with pytest.raises(InvalidTypeError, match="`path`"):
        load_head(123)


@pytest.mark.parametrize(
    "head_name, classes",
    [
        ("fitted_dense", [0, 1, 2, 3]),
        ("fitted_dense", [0, 1]),
        ("fitted_dense", ["a", "b", "c", "d"]),
        ("fitted_sklearn", [0, 1]),
        ("fitted_sklearn", ["a", "b", "c", "d"]),
        ("fitted_sklearn", [0, 1, 2, 5]),
    ],
    ids=["dense-more", "dense-fewer", "dense-names", "sklearn-fewer", "sklearn-names",
         "sklearn-other-labels"],
)
def test_load_refuses_class_list_not_matching_the_model(head_name, classes, tmp_path, request):
    """A meta.json class list edited apart from its model: refused at load, naming the file.

    (A SklearnHead whose labels 0..2 became 0..3 cannot be told from one fitted on one-hot
    labels with a class that never occurs, which is legitimate: that one still loads.)
    """
    good = tmp_path / "good.tkhead"
    request.getfixturevalue(head_name).save(good)
    meta = json.loads(zipfile.ZipFile(good).read("meta.json"))
    bad = tmp_path / "edited.tkhead"
    spec = {"values": classes, "kind": np.asarray(classes).dtype.kind,
            "dtype": np.asarray(classes).dtype.str}
    _rewrite(good, bad, {"meta.json": json.dumps({**meta, "classes": spec})})
    match = rf"class list holds {len(classes)} classes.*(outputs 3|trained on 3)"
    with pytest.raises(InvalidInputError, match=match) as info:
        load_head(bad)
    assert "edited.tkhead" in str(info.value) and "damaged" in str(info.value)
    # The same list with the model's count still loads (renaming classes is not detected).
    renamed = tmp_path / "renamed.tkhead"
    spec = {"values": ["x", "y", "z"], "kind": "U", "dtype": "<U1"}
    _rewrite(good, renamed, {"meta.json": json.dumps({**meta, "classes": spec})})
    assert load_head(renamed).classes_.tolist() == ["x", "y", "z"]


@pytest.mark.parametrize("head_name", ["fitted_dense", "fitted_sklearn"])
def test_load_refuses_feature_count_not_matching_the_model(head_name, tmp_path, request):
    good = tmp_path / "good.tkhead"
    request.getfixturevalue(head_name).save(good)
    meta = json.loads(zipfile.ZipFile(good).read("meta.json"))
    bad = tmp_path / "edited.tkhead"
    _rewrite(good, bad, {"meta.json": json.dumps({**meta, "n_features_in": N_FEATURES + 1})})
    with pytest.raises(InvalidInputError, match=rf"edited\.tkhead.*{N_FEATURES + 1} input "
                                                rf"features.*{N_FEATURES}"):
        load_head(bad)


def test_load_one_hot_head_with_a_class_never_seen(data, tmp_path):
    """Fitted on one-hot labels with an absent class: fewer estimator classes is legitimate."""
    X, y, _, _ = data
    one_hot = np.eye(4, dtype=int)[y]  # class 3 never occurs
    head = SklearnHead().fit(X, one_hot)
    head.save(tmp_path / "onehot.tkhead")
    loaded = load_head(tmp_path / "onehot.tkhead")
    assert loaded.classes_.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(loaded.predict_proba(X[:5]), head.predict_proba(X[:5]))


def test_save_head_with_provenance_and_read_it_back(fitted_sklearn, data, tmp_path):
    """What the command line uses instead of opening head files itself."""
    from transferkit.heads import read_head_metadata, read_head_provenance, save_head

    _, _, Xt, _ = data
    path = tmp_path / "head.tkhead"
    fitted_sklearn.save(path)
    assert read_head_provenance(path) == {}
    provenance = {"extractor": {"name": "vgg16"}, "split": "train", "where": tmp_path}
    save_head(fitted_sklearn, path, provenance=provenance)
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist()[0] == "meta.json" and "provenance.json" in zf.namelist()
    assert read_head_provenance(path) == {**provenance, "where": str(tmp_path)}  # str()
    meta = read_head_metadata(path)
    assert meta["class"] == "SklearnHead" and meta["format_version"] == 1
    np.testing.assert_array_equal(load_head(path).predict(Xt), fitted_sklearn.predict(Xt))
    assert os.listdir(tmp_path) == ["head.tkhead"]


def test_save_head_with_provenance_is_atomic(fitted_sklearn, fitted_dense, tmp_path,
                                             monkeypatch):
    from transferkit.heads import save_head

    path = tmp_path / "head.tkhead"
    save_head(fitted_sklearn, path, provenance={"a": 1})
    original = path.read_bytes()

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        save_head(fitted_dense, path, provenance={"b": 2})
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["head.tkhead"]


def test_save_head_and_read_metadata_errors(fitted_sklearn, tmp_path):
    from transferkit.heads import read_head_metadata, read_head_provenance, save_head

    with pytest.raises(InvalidTypeError, match=r"`provenance` must be a dict.*\[1\]"):
        save_head(fitted_sklearn, tmp_path / "h.tkhead", provenance=[1])
    with pytest.raises(InvalidTypeError, match=r"`head` must be a DenseHead or a SklearnHead"):
        save_head(LogisticRegression(), tmp_path / "h.tkhead")
    with pytest.raises(NotFittedError, match=r"`save`"):
        save_head(SklearnHead(), tmp_path / "h.tkhead")
    assert not os.listdir(tmp_path)
    with pytest.raises(InvalidInputError, match=r"`path`.*no such file"):
        read_head_metadata(tmp_path / "missing.tkhead")
    (tmp_path / "text.tkhead").write_text("hello")
    with pytest.raises(InvalidInputError, match="not a readable zip"):
        read_head_provenance(tmp_path / "text.tkhead")
    good = tmp_path / "good.tkhead"
    fitted_sklearn.save(good)
    for member, data, match in (
        ("meta.json", json.dumps({"format": "other"}), "must be a transferkit head file"),
        ("meta.json", None, "meta.json"),
        ("provenance.json", b"[1, 2]", r"JSON object in provenance\.json"),
    ):
        bad = tmp_path / "bad.tkhead"
        _rewrite(good, bad, {member: data})
        if member == "provenance.json":
            with zipfile.ZipFile(bad, "a") as zf:
                zf.writestr(member, data)
        read = read_head_provenance if member == "provenance.json" else read_head_metadata
        with pytest.raises(InvalidInputError, match=match):
            read(bad)


@pytest.mark.parametrize("head_name", ["fitted_dense", "fitted_sklearn"])
def test_pickles_name_the_public_class_path(head_name, request):
    """Pickles made before the heads became a package name ``transferkit.heads.X``."""
    head = request.getfixturevalue(head_name)
    assert type(head).__module__ == "transferkit.heads"
    assert b"transferkit.heads\x94" in pickle.dumps(head)
    assert b"transferkit.heads.dense" not in pickle.dumps(head)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("make_head", [_small_dense, SklearnHead], ids=["dense", "sklearn"])
def test_input_errors(make_head, data):
    X, y, _, _ = data
    head = make_head()
    with pytest.raises(InvalidInputError, match=r"`X` must be .*2-D.*shape \(300, 32, 1\)"):
        head.fit(X[..., None], y)
    X_nan = X.copy()
    X_nan[3, 4] = np.nan
    with pytest.raises(InvalidInputError, match=r"`X`.*NaN"):
        head.fit(X_nan, y)
    with pytest.raises(InvalidInputError,
                       match=r"`y` must have one label per row of `X`: expected 300, received 299"):
        head.fit(X, y[:-1])
    with pytest.raises(InvalidInputError, match=r"`y` must contain at least 2 classes"):
        head.fit(X, np.zeros(len(X), dtype=int))
    with pytest.raises(InvalidInputError, match=r"`y`.*Unknown label type"):
        head.fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(InvalidInputError, match=r"`y`.*not one-hot"):
        head.fit(X, np.stack([y, y], axis=1))
    soft = np.full((len(y), 3), 0.1)
    soft[np.arange(len(y)), y] = 0.8
    with pytest.raises(InvalidInputError, match=r"`y`.*not one-hot.*y\.argmax\(axis=1\)"):
        head.fit(X, soft)
    with pytest.raises(InvalidInputError, match=r"requires y to be passed"):
        head.fit(X, None)


@pytest.mark.parametrize("head_name", ["fitted_dense", "fitted_sklearn"])
def test_predict_wrong_features(head_name, data, request):
    head = request.getfixturevalue(head_name)
    _, _, Xt, _ = data
    with pytest.raises(InvalidInputError, match=r"`X`.*X has 5 features.*expecting 32"):
        head.predict(Xt[:, :5])
    with pytest.raises(InvalidInputError, match=r"`X`.*2-D"):
        head.predict(Xt[0])


@pytest.mark.parametrize("head_name", ["fitted_dense", "fitted_sklearn"])
def test_score_refuses_unseen_classes_and_bad_lengths(head_name, data, request):
    head = request.getfixturevalue(head_name)
    _, _, Xt, yt = data
    with pytest.raises(InvalidInputError, match=r"`y` holds 1 class\(es\) never seen.*\[99\]"):
        head.score(Xt, np.where(np.arange(len(yt)) == 0, 99, yt))
    with pytest.raises(InvalidInputError, match=r"never seen.*\['a'\]"):
        head.score(Xt, np.array(["a"] * len(yt)))
    with pytest.raises(InvalidInputError, match=r"one label per row of `X`: expected"):
        head.score(Xt, yt[:-1])
    onehot = np.eye(len(head.classes_))[np.searchsorted(head.classes_, yt)]
    assert head.score(Xt, onehot) == head.score(Xt, yt)
    with pytest.raises(InvalidInputError, match=r"`y`.*not one-hot.*argmax"):
        head.score(Xt, 0.9 * onehot + 0.1 / len(head.classes_))  # label-smoothed
    with pytest.raises(InvalidInputError, match=r"one column per fitted class"):
        head.score(Xt, np.eye(len(head.classes_) + 1)[np.searchsorted(head.classes_, yt)])


@pytest.mark.parametrize("head", [DenseHead(), SklearnHead()], ids=["dense", "sklearn"])
@pytest.mark.parametrize("method", ["predict", "predict_proba", "score"])
def test_unfitted(head, method, data):
    _, _, Xt, yt = data
    args = (Xt, yt) if method == "score" else (Xt,)
    with pytest.raises(NotFittedError, match=rf"not fitted.*`{method}`"):
        getattr(head, method)(*args)
    with pytest.raises(SklearnNotFittedError):  # scikit-learn tooling recognises it
        getattr(head, method)(*args)


@pytest.mark.parametrize(
    ("params", "exc", "match"),
    [
        ({"hidden_units": (0,)}, InvalidInputError, r"`hidden_units`.*positive.*\(0,\)"),
        ({"hidden_units": (16.5,)}, InvalidInputError, r"`hidden_units`.*16\.5"),
        ({"hidden_units": "16"}, InvalidTypeError, r"`hidden_units`.*'16'"),
        ({"dropout": 1.0}, InvalidInputError, r"`dropout`.*\[0, 1\).*1\.0"),
        ({"dropout": -0.1}, InvalidInputError, r"`dropout`.*-0\.1"),
        ({"dropout": "half"}, InvalidTypeError, r"`dropout`.*number"),
        ({"learning_rate": 0}, InvalidInputError, r"`learning_rate`.*\(0, inf\).*0\.0"),
        ({"learning_rate": -1e-3}, InvalidInputError, r"`learning_rate`"),
        ({"epochs": 0}, InvalidInputError, r"`epochs`.*>= 1.*0"),
        ({"batch_size": 2.5}, InvalidTypeError, r"`batch_size`.*integer"),
        ({"validation_split": 1.0}, InvalidInputError, r"`validation_split`"),
        ({"activation": "nope"}, InvalidInputError, r"`activation`.*'nope'"),
        ({"early_stopping": "yes"}, InvalidTypeError, r"`early_stopping`"),
    ],
)
def test_bad_params_raise_at_fit(params, exc, match, data):
    X, y, _, _ = data
    head = DenseHead(**params)  # no validation in __init__
    with pytest.raises(exc, match=match):
        head.fit(X, y)


def test_sklearn_head_bad_params(data):
    X, y, _, _ = data
    with pytest.raises(InvalidTypeError, match=r"`estimator` must be a scikit-learn classifier"):
        SklearnHead("logreg").fit(X, y)
    with pytest.raises(InvalidTypeError, match=r"`standardize`.*True or False"):
        SklearnHead(standardize="yes").fit(X, y)


def test_errors_are_transferkit_and_builtin(data):
    X, y, _, _ = data
    with pytest.raises(TransferkitError):
        SklearnHead().fit(X, y[:10])
    with pytest.raises(ValueError):
        SklearnHead().fit(X, y[:10])


# --------------------------------------------------------------------------- packaging


def test_lazy_imports():
    code = (
        "import sys, transferkit, transferkit.heads as h;"
        "assert transferkit.DenseHead is h.DenseHead;"
        "assert transferkit.load_head is h.load_head;"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_public_api():
    assert set(heads_module.__all__) >= {"DenseHead", "SklearnHead", "load_head"}


def test_class_probabilities_is_predict_proba_or_a_softmax():
    from transferkit.heads import class_probabilities, softmax

    p = softmax([[1.0, 2.0, 3.0], [0.0, 0.0, 1000.0]])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.all(np.diff(p[0]) > 0) and p[1, 2] == pytest.approx(1.0)
    np.testing.assert_allclose(softmax([0.0, 2.0])[:, 1], [0.5, 1 / (1 + np.exp(-4))])
    X, y = make_blobs(60, n_features=4, centers=3, random_state=0)
    svc = LinearSVC().fit(X, y)
    np.testing.assert_allclose(class_probabilities(svc, X), softmax(svc.decision_function(X)))
    logreg = LogisticRegression().fit(X, y)
    np.testing.assert_allclose(class_probabilities(logreg, X), logreg.predict_proba(X))
