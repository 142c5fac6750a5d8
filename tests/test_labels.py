"""Tests for transferkit._labels: the one set of label rules every estimator applies."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import make_learnable
from sklearn.exceptions import DataConversionWarning

from transferkit._labels import check_labels, encode_labels, labels_to_indices
from transferkit.exceptions import InvalidInputError, InvalidTypeError

# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize(
    ("y", "classes", "indices"),
    [
        ([2, 0, 2, 1], [0, 1, 2], [2, 0, 2, 1]),
        (np.array([7, 3, 3, 7], dtype=np.int8), [3, 7], [1, 0, 0, 1]),
        (["dog", "cat", "dog", "cat"], ["cat", "dog"], [1, 0, 1, 0]),
        (np.array(["b", "a", "c", "a"], dtype=object), ["a", "b", "c"], [1, 0, 2, 0]),
        ([True, False, False, True], [False, True], [1, 0, 0, 1]),
        ([1.0, 0.0, 2.0, 2.0], [0.0, 1.0, 2.0], [1, 0, 2, 2]),  # integral floats
    ],
    ids=["int", "int8", "str", "object-str", "bool", "integral-float"],
)
def test_class_labels(y, classes, indices):
    got_classes, got = encode_labels(y, 4)
    assert got_classes.tolist() == classes
    assert got.tolist() == indices and got.dtype == np.int64


@pytest.mark.parametrize("dtype", [np.float32, np.int64, bool], ids=["float", "int", "bool"])
def test_one_hot_rows(dtype):
    y = np.eye(4, dtype=dtype)[[0, 2, 2, 1]]  # column 3 is never used: still a class
    classes, indices = encode_labels(y, 4)
    assert classes.tolist() == [0, 1, 2, 3]
    assert indices.tolist() == [0, 2, 2, 1] and indices.dtype == np.int64


def test_column_is_read_as_labels_with_sklearns_warning():
    with pytest.warns(DataConversionWarning):
        classes, indices = encode_labels(np.array([[1], [0], [1]]), 3)
    assert classes.tolist() == [0, 1] and indices.tolist() == [1, 0, 1]


def test_check_labels_needs_no_second_class_and_returns_1d():
    assert check_labels(np.zeros(3, dtype=int), 3).tolist() == [0, 0, 0]  # one class is fine
    out = check_labels(np.eye(3)[[2, 2, 0]], 3)
    assert out.tolist() == [2, 2, 0] and out.dtype == np.int64
    assert check_labels(["a", "b"], None).tolist() == ["a", "b"]


def test_inputs_are_not_modified():
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    before = y.copy()
    encode_labels(y, 4)
    labels_to_indices(y, np.arange(3))
    np.testing.assert_array_equal(y, before)


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    "rows",
    [
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]],  # probabilities
        [[0.9, 0.05, 0.05], [0.05, 0.9, 0.05]],  # label smoothing
        [[1, 0, 1], [0, 1, 0]],  # multi-label
        [[2, 0, 0], [0, 1, 0]],  # not 0/1
        [[0, 0, 0], [0, 1, 0]],  # no 1
        [[np.nan, 1, 0], [0, 1, 0]],
    ],
    ids=["probabilities", "smoothed", "multi-label", "two", "all-zero", "nan"],
)
def test_soft_and_other_non_one_hot_rows_are_refused(rows):
    with pytest.raises(InvalidInputError, match=r"`y`.*not one-hot.*row 0 is") as info:
        encode_labels(np.asarray(rows), 2)
    assert "pass `y.argmax(axis=1)`" in str(info.value)
    with pytest.raises(InvalidInputError, match=r"not one-hot"):
        check_labels(np.asarray(rows), 2)
    with pytest.raises(InvalidInputError, match=r"not one-hot"):
        labels_to_indices(np.asarray(rows), np.arange(3))


def test_the_error_names_the_first_bad_row_and_counts_them():
    y = np.eye(3)[[0, 1, 2, 0]]
    y[2] = [0.2, 0.3, 0.5]
    y[3] = [0.5, 0.5, 0.0]
    with pytest.raises(InvalidInputError, match=r"row 2 is \[0\.2, 0\.3, 0\.5\].*2 such rows"):
        encode_labels(y, 4, name="labels")


def test_two_d_strings_are_refused():
    with pytest.raises(InvalidInputError, match=r"`y`.*multi-output.*\(2, 2\)"):
        encode_labels(np.array([["a", "b"], ["b", "a"]]), 2)


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.linspace(0, 1, 4), r"`y`.*Unknown label type.*continuous"),
        ([0.0, np.nan, 1.0, 1.0], r"`y`.*NaN"),
        (np.array([1, "a", 2, "b"], dtype=object), r"`y`.*Unknown label type"),
        (np.zeros((4, 2, 2)), r"`y` must be class labels of shape \(4,\).*shape \(4, 2, 2\)"),
        (5, r"`y`.*shape \(\)"),
        ([0, 1, 0], r"`y` must have one label per sample: expected 4, received 3"),
        (np.eye(2)[[0, 1, 0]], r"`y` must have one label per sample: expected 4, received 3"),
        ([1, 1, 1, 1], r"`y` must contain at least 2 classes; received 1 class \(\[1\]\)"),
    ],
    ids=["continuous", "nan", "mixed-types", "3d", "scalar", "length", "one-hot-length",
         "one-class"],
)
def test_refused_labels(y, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scikit-learn casting NaN
        with pytest.raises(InvalidInputError, match=match):
            encode_labels(y, 4)


def test_none_uses_the_wording_scikit_learn_checks_for():
    with pytest.raises(InvalidInputError, match=r"^MyHead requires y to be passed, but the "
                                                r"target y is None: `y` must be"):
        encode_labels(None, 3, owner="MyHead")


def test_messages_name_the_argument_and_what_there_is_one_label_per():
    with pytest.raises(InvalidInputError,
                       match=r"`labels` must have one label per image: expected 3, received 2"):
        check_labels([0, 1], 3, name="labels", per="image")


def test_labels_that_do_not_sort_raise_type_error(monkeypatch):
    """Labels that pass scikit-learn's target check but do not sort: InvalidTypeError."""
    import transferkit._labels as labels_module

    monkeypatch.setattr(labels_module, "check_classification_targets", lambda y: None)
    with pytest.raises(InvalidTypeError, match=r"`y`.*one comparable type"):
        encode_labels(np.array([1, "a"], dtype=object), 2)


# --------------------------------------------------------------------------- known classes


def test_labels_to_indices():
    classes = np.array(["cat", "dog", "fish"])
    assert labels_to_indices(["fish", "cat"], classes).tolist() == [2, 0]
    # one-hot columns are the classes, in the order of classes
    assert labels_to_indices(np.eye(3)[[1, 2]], classes).tolist() == [1, 2]
    with pytest.raises(InvalidInputError, match=r"`y` holds 1 class\(es\) never seen in fit: "
                                                r"\['cow'\]; the fitted classes are"):
        labels_to_indices(["cow", "cat"], classes)
    with pytest.raises(InvalidInputError, match=r"never seen.*\[3\]"):
        labels_to_indices([3, 1], np.arange(3))
    with pytest.raises(InvalidInputError, match=r"one column per fitted class \(3\); received 4"):
        labels_to_indices(np.eye(4)[[1, 2]], classes)
    with pytest.raises(InvalidInputError, match=r"one label per image: expected 3, received 2"):
        labels_to_indices(["cat", "dog"], classes, n_samples=3, per="image")


def test_labels_to_indices_does_not_need_sorted_classes():
    assert labels_to_indices(["b", "a"], np.array(["c", "a", "b"])).tolist() == [2, 1]


# --------------------------------------------------------------------------- everywhere


def _fit_all(x_images, features, y):
    """Fit DenseHead, SklearnHead and CifarCNN on ``y``: their classes_, or the errors."""
    from transferkit.extractors import CifarCNN
    from transferkit.heads import DenseHead, SklearnHead

    estimators = {
        "DenseHead": (DenseHead(hidden_units=(4,), epochs=1, random_state=0), features),
        "SklearnHead": (SklearnHead(), features),
        "CifarCNN": (CifarCNN(conv_filters=(4,), dense_units=(8,), epochs=1, random_state=0),
                     x_images),
    }
    out = {}
    for name, (estimator, X) in estimators.items():
        try:
            out[name] = estimator.fit(X, y).classes_.tolist()
        except InvalidInputError as exc:
            out[name] = str(exc)
    return out


def test_same_labels_same_result_in_every_estimator():
    """Heads and CifarCNN read labels alike: same classes, or the same error."""
    x, y = make_learnable(24, size=16, seed=1)
    features = x.reshape(len(x), -1)[:, :12].astype(np.float32)
    names = np.array(["r", "g", "b"])[y]
    one_hot = np.eye(4)[y]  # column 3 unused
    soft = np.full((len(y), 3), 0.05)
    soft[np.arange(len(y)), y] = 0.9
    cases = {
        "strings": (names, ["b", "g", "r"]),
        "one-hot": (one_hot, [0, 1, 2, 3]),
        "soft": (soft, None),
    }
    for case, (labels, expected) in cases.items():
        results = _fit_all(x, features, labels)
        if expected is not None:
            assert results == dict.fromkeys(results, expected), case
        else:
            assert len(set(results.values())) == 1, results  # the same message everywhere
            assert "not one-hot" in results["CifarCNN"], results


def test_labels_to_names_maps_indices_and_keeps_the_rest():
    from transferkit._labels import labels_to_names

    names = ["cat", "dog", "frog"]
    assert labels_to_names(np.array([2, 0, 1]), names).tolist() == ["frog", "cat", "dog"]
    # Unchanged: no names, an index out of range, labels that are not integers, no labels.
    assert labels_to_names([0, 1], None).tolist() == [0, 1]
    assert labels_to_names([0, 3], names).tolist() == [0, 3]
    assert labels_to_names(["a", "b"], names).tolist() == ["a", "b"]
    assert labels_to_names(np.array([], dtype=int), names).size == 0
