"""Tests for transferkit.heads.head_to_keras: fitted heads as Keras models.

Every supported head (DenseHead; linear scikit-learn classifiers bare, in a SklearnHead
or at the end of a Pipeline of StandardScalers), binary and multiclass, with and without
standardization, must give the probabilities of ``class_probabilities(head, X)``. Tiny
synthetic features (6 of them, a few dozen rows) keep the file fast.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import (
    LogisticRegression,
    LogisticRegressionCV,
    Perceptron,
    RidgeClassifier,
    RidgeClassifierCV,
    SGDClassifier,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from transferkit.exceptions import InvalidInputError, NotFittedError
from transferkit.heads import DenseHead, SklearnHead, class_probabilities, head_to_keras

N_FEATURES = 6


def _features(n: int, seed: int, n_features: int = N_FEATURES) -> np.ndarray:
    """Features off zero mean and unit scale, so that standardization matters."""
    rng = np.random.default_rng(seed)
    return (1.5 * rng.standard_normal((n, n_features)) + 0.5).astype(np.float32)


def _labels(X: np.ndarray, n_classes: int) -> np.ndarray:
    """Learnable, noisy labels: the class is the argmax of a fixed random projection."""
    rng = np.random.default_rng(1)
    scores = X @ rng.standard_normal((X.shape[1], n_classes))
    return np.argmax(scores + rng.standard_normal(scores.shape), axis=1)


X_TRAIN = _features(60, seed=0)
X_TESTS = [_features(1, seed=2), _features(7, seed=3), _features(50, seed=4)]
LABELS = {2: _labels(X_TRAIN, 2), 3: _labels(X_TRAIN, 3)}


def _run(model, X: np.ndarray) -> np.ndarray:
    """The model's outputs for ``X`` as a NumPy array."""
    import keras

    return keras.ops.convert_to_numpy(model(X, training=False))


def _assert_same_probabilities(head, model, atol: float = 1e-5) -> None:
    for X in X_TESTS:
        expected = class_probabilities(head, X)
        actual = _run(model, X)
        assert actual.shape == expected.shape == (len(X), len(head.classes_))
        np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)


def _quiet_fit(estimator, X, y):
    with warnings.catch_warnings():  # convergence warnings on the tiny data
        warnings.simplefilter("ignore")
        return estimator.fit(X, y)


LINEAR = {
    "logreg": lambda: LogisticRegression(max_iter=500),
    "logreg_liblinear": lambda: LogisticRegression(solver="liblinear"),  # binary only now
    "logreg_cv": lambda: LogisticRegressionCV(cv=2, Cs=3, max_iter=500),
    "sgd_log": lambda: SGDClassifier(loss="log_loss", random_state=0),
    "sgd_hinge": lambda: SGDClassifier(random_state=0),
    "ridge": RidgeClassifier,
    "ridge_cv": RidgeClassifierCV,
    "linear_svc": LinearSVC,
    "perceptron": lambda: Perceptron(random_state=0),
}
WRAPPINGS = ["head", "head_no_standardize", "pipeline", "bare"]


def _wrapped(name: str, wrapping: str, n_classes: int):
    estimator = LINEAR[name]()
    head = {
        "head": lambda: SklearnHead(estimator),
        "head_no_standardize": lambda: SklearnHead(estimator, standardize=False),
        "pipeline": lambda: make_pipeline(StandardScaler(), estimator),
        "bare": lambda: estimator,
    }[wrapping]()
    return _quiet_fit(head, X_TRAIN, LABELS[n_classes])


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("wrapping", WRAPPINGS)
@pytest.mark.parametrize("name", sorted(LINEAR))
def test_linear_heads_give_their_probabilities(name, wrapping, n_classes):
    if name == "logreg_liblinear" and n_classes > 2:
        pytest.skip("scikit-learn >= 1.8 refuses liblinear on more than two classes")
    head = _wrapped(name, wrapping, n_classes)
    model = head_to_keras(head)
    _assert_same_probabilities(head, model)
    names = [layer.name for layer in model.layers]
    standardized = wrapping in ("head", "pipeline")
    assert ("standardize" in names) == standardized
    assert names[-1] == "probabilities" and model.get_layer("logits").units == n_classes
    assert model.input_shape == (None, N_FEATURES) and model.output_shape == (None, n_classes)
    assert model.non_trainable_weights == [] and len(model.trainable_weights) == 2


@pytest.mark.parametrize("n_classes", [2, 3])
def test_logits_are_the_decision_function(n_classes):
    import keras

    head = _quiet_fit(SklearnHead(LinearSVC()), X_TRAIN, LABELS[n_classes])
    model = head_to_keras(head)
    logits = keras.Model(model.input, model.get_layer("logits").output)
    scores = head.decision_function(X_TESTS[2])
    if n_classes == 2:
        scores = np.stack([-scores, scores], axis=1)  # how class_probabilities reads them
    np.testing.assert_allclose(_run(logits, X_TESTS[2]), scores, rtol=1e-4, atol=1e-4)
    assert model.get_layer("logits").get_config()["activation"] == "linear"


def test_pipeline_of_several_scalers_and_passthrough():
    pipe = Pipeline([
        ("center", StandardScaler(with_std=False)),
        ("skip", "passthrough"),
        ("scale", StandardScaler(with_mean=False)),
        ("again", StandardScaler()),
        ("clf", LogisticRegression(max_iter=500)),
    ])
    pipe.fit(X_TRAIN * 10 + 3, LABELS[3])
    model = head_to_keras(pipe)
    assert sum(layer.name == "standardize" for layer in model.layers) == 1
    for X in X_TESTS:
        np.testing.assert_allclose(_run(model, X * 10 + 3),
                                   pipe.predict_proba(X * 10 + 3), atol=1e-5)


def test_sklearn_head_wrapping_a_pipeline():
    head = SklearnHead(make_pipeline(StandardScaler(), RidgeClassifier()), standardize=True)
    head.fit(X_TRAIN, LABELS[3])
    _assert_same_probabilities(head, head_to_keras(head))


def test_a_scale_below_keras_epsilon_is_exact():
    """Normalization divides by max(std, 1e-7): a tinier scale goes into the kernel."""
    X = X_TRAIN.copy()
    X[:, 0] = 1e-9 * np.random.default_rng(5).standard_normal(len(X))
    y = (X[:, 0] > 0).astype(int)
    head = SklearnHead(LogisticRegression()).fit(X, y)
    assert head.scaler_.scale_[0] < 1e-7
    model = head_to_keras(head)
    T = X_TESTS[2].copy()
    T[:, 0] = 1e-9 * np.random.default_rng(6).standard_normal(len(T))
    np.testing.assert_allclose(_run(model, T), head.predict_proba(T), atol=1e-5)


# --------------------------------------------------------------------------- one-hot labels


@pytest.mark.parametrize("name", ["logreg", "sgd_log", "perceptron"])
@pytest.mark.parametrize("n_seen", [2, 3])
def test_one_hot_labels_with_a_class_that_never_occurs(name, n_seen):
    """Classes the estimator never saw get probability 0 (zero kernel, very negative bias)."""
    y = np.eye(n_seen + 2)[LABELS[n_seen] * 2]  # classes 0, 2 (, 4) occur; 1, 3 never do
    head = _quiet_fit(SklearnHead(LINEAR[name]()), X_TRAIN, y)
    assert len(head.classes_) == n_seen + 2 and len(head.estimator_.classes_) == n_seen
    model = head_to_keras(head)
    _assert_same_probabilities(head, model)
    kernel, bias = model.get_layer("logits").get_weights()
    assert np.all(kernel[:, [1, 3]] == 0) and np.all(bias[[1, 3]] < -1000)
    assert np.all(_run(model, X_TESTS[2])[:, [1, 3]] == 0)


# --------------------------------------------------------------------------- DenseHead


def _dense(n_classes: int, **kwargs) -> DenseHead:
    params = dict(hidden_units=(8,), epochs=2, batch_size=16, random_state=0)
    params.update(kwargs)
    return DenseHead(**params).fit(X_TRAIN, LABELS[n_classes])


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize(
    "params",
    [{}, {"standardize": False}, {"hidden_units": (), "standardize": False},
     {"hidden_units": (8, 4), "dropout": 0.0}, {"hidden_units": (5, 4), "activation": "gelu"}],
    ids=["default", "no_standardize", "logistic", "two_layers_no_dropout", "gelu"],
)
def test_dense_head_gives_its_probabilities(params, n_classes):
    head = _dense(n_classes, **params)
    model = head_to_keras(head)
    _assert_same_probabilities(head, model)
    names = [layer.name for layer in model.layers]
    assert ("standardize" in names) == params.get("standardize", True)
    assert names[-2:] == ["logits", "probabilities"]
    assert model.get_layer("logits").get_config()["activation"] == "linear"
    n_dense = len(params.get("hidden_units", (8,))) + 1
    assert len(model.trainable_weights) == 2 * n_dense and model.non_trainable_weights == []


def test_dense_head_with_one_hot_labels_and_a_missing_class():
    y = np.eye(4)[LABELS[3]]  # class 3 never occurs: the network still has its output
    head = DenseHead(hidden_units=(8,), epochs=2, random_state=0).fit(X_TRAIN, y)
    _assert_same_probabilities(head, head_to_keras(head))


def test_dense_head_with_other_layers_is_refused():
    import keras

    head = _dense(3)
    head.model_ = keras.Sequential([keras.Input((N_FEATURES,)), keras.layers.Dense(3)])
    with pytest.raises(InvalidInputError, match="softmax"):
        head_to_keras(head)
    head.model_ = keras.Sequential([
        keras.Input((N_FEATURES,)), keras.layers.BatchNormalization(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    with pytest.raises(InvalidInputError, match="BatchNormalization"):
        head_to_keras(head)


# --------------------------------------------------------------------------- copies, saving


def test_the_head_is_unchanged_and_the_weights_are_copies():
    dense = _dense(3)
    linear = SklearnHead(LogisticRegression(max_iter=500)).fit(X_TRAIN, LABELS[3])
    for head in (dense, linear):
        before = class_probabilities(head, X_TESTS[2])
        state = pickle.dumps(head) if head is linear else None
        model = head_to_keras(head)
        for weight in model.weights:  # training the model must not touch the head
            weight.assign(np.zeros(weight.shape, dtype="float32"))
        np.testing.assert_array_equal(class_probabilities(head, X_TESTS[2]), before)
        if state is not None:
            assert pickle.dumps(head) == state


@pytest.mark.parametrize("kind", ["dense", "ovr_pipeline_missing_class"])
def test_save_and_load_round_trip(tmp_path, kind):
    import keras

    if kind == "dense":
        head = _dense(3)
    else:  # one-vs-rest sigmoids, standardization and a class never seen, all at once
        estimator = make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss",
                                                                  random_state=0))
        head = SklearnHead(estimator, standardize=False).fit(X_TRAIN, np.eye(4)[LABELS[3]])
    model = head_to_keras(head)
    path = tmp_path / "head.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    for X in X_TESTS:
        np.testing.assert_allclose(_run(loaded, X), _run(model, X), atol=1e-7)
    _assert_same_probabilities(head, loaded)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "head, names",
    [
        (KNeighborsClassifier(n_neighbors=3), ["KNeighborsClassifier"]),
        (RandomForestClassifier(n_estimators=2, random_state=0), ["RandomForestClassifier"]),
        (SVC(), ["SVC"]),
        (SVC(kernel="linear"), ["SVC"]),  # has coef_, but one-vs-one decisions
        (SGDClassifier(loss="modified_huber", random_state=0), ["modified_huber"]),
        (SklearnHead(KNeighborsClassifier(n_neighbors=3)), ["SklearnHead wrapping",
                                                           "KNeighborsClassifier"]),
        (make_pipeline(PCA(2), LogisticRegression()), ["Pipeline", "'pca'", "PCA"]),
        (SklearnHead(make_pipeline(PCA(2), LogisticRegression())), ["SklearnHead wrapping",
                                                                    "PCA"]),
    ],
    ids=["knn", "forest", "svc_rbf", "svc_linear", "sgd_modified_huber", "head_knn",
         "pipeline_pca", "head_pipeline_pca"],
)
def test_unsupported_heads_are_refused_clearly(head, names):
    head = _quiet_fit(head, X_TRAIN, LABELS[3])
    with pytest.raises(InvalidInputError) as info:
        head_to_keras(head)
    message = str(info.value)
    for expected in ["`head`", "DenseHead", "SklearnHead", "LogisticRegression", "LinearSVC",
                     "StandardScaler", *names]:
        assert expected in message, (expected, message)


@pytest.mark.parametrize("head", [None, 42, "logreg", SklearnHead(KNeighborsClassifier())],
                         ids=["none", "int", "str", "unfitted_knn_head"])
def test_non_heads_are_refused(head):
    with pytest.raises(InvalidInputError, match="`head` must be"):
        head_to_keras(head)


@pytest.mark.parametrize(
    "head", [DenseHead(), SklearnHead(), SklearnHead(RidgeClassifier()), LogisticRegression(),
             make_pipeline(StandardScaler(), LinearSVC())],
    ids=["dense", "sklearn_default", "sklearn_ridge", "bare", "pipeline"],
)
def test_unfitted_heads_are_refused(head):
    with pytest.raises(NotFittedError, match="head_to_keras"):
        head_to_keras(head)
