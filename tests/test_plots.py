"""Plots: real PNG files with content, clear errors for bad arguments."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from transferkit.exceptions import InvalidInputError, InvalidTypeError, TransferkitError
from transferkit.plots import (
    MissingDependencyError,
    plot_accuracy_vs_cost,
    plot_confusion_matrix,
    plot_label_efficiency,
    plot_predictions_grid,
    plot_training_curves,
)

pytest.importorskip("matplotlib", reason="plots need matplotlib (pip install transferkit[plots])")

NAMES = ["cat", "dog", "frog"]


def check_png(path) -> None:
    """A non-empty PNG image that is not a single uniform colour."""
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 0 and image.size[1] > 0
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1


def test_training_curves_from_a_dict_and_from_a_fitted_model(tmp_path) -> None:
    history = {"loss": [2.0, 1.5, 1.2], "accuracy": [0.3, 0.5, 0.6],
               "val_loss": [1.9, 1.6, 1.5], "val_accuracy": [0.3, 0.45, 0.5]}
    out = plot_training_curves(history, tmp_path / "curves.png", title="CNN")
    assert out == tmp_path / "curves.png"
    check_png(out)

    class Fitted:
        history_ = {"loss": [1.0, 0.5]}

    check_png(plot_training_curves(Fitted(), str(tmp_path / "sub" / "fitted.png")))


def test_confusion_matrix_counts_and_normalized(tmp_path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    pred = np.where(rng.random(60) < 0.7, y, rng.integers(0, 3, 60))
    for normalize in (None, "true", "pred", "all"):
        check_png(plot_confusion_matrix(y, pred, NAMES, tmp_path / f"cm_{normalize}.png",
                                        normalize=normalize))
    # Labels may be the class names themselves, and class names may be omitted.
    names = np.asarray(NAMES)
    check_png(plot_confusion_matrix(names[y], names[pred], NAMES, tmp_path / "names.png"))
    check_png(plot_confusion_matrix(y, pred, None, tmp_path / "none.png"))


def test_predictions_grid(tmp_path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    probs = rng.dirichlet(np.ones(3), 5)
    out = plot_predictions_grid(images, probs, NAMES, tmp_path / "grid.png", top_k=2,
                                true_labels=[0, 1, 2, 0, 1], titles=[f"{i}.png" for i in range(5)])
    check_png(out)
    check_png(plot_predictions_grid(images.astype(np.float32), probs, None,
                                    tmp_path / "grid2.png", ncols=2))


def test_accuracy_vs_cost(tmp_path) -> None:
    rows = [{"label": "VGG-16 @32", "accuracy": 0.61, "seconds": 12.0},
            {"label": "VGG-16 @64", "accuracy": 0.72, "seconds": 41.0},
            {"label": "VGG-16 @224", "accuracy": 0.84, "seconds": 610.0}]
    check_png(plot_accuracy_vs_cost(rows, tmp_path / "cost.png"))
    rows = [{"label": "a", "accuracy": 0.5, "images_per_s": 900},
            {"label": "b", "accuracy": 0.7, "images_per_s": 60}]
    check_png(plot_accuracy_vs_cost(rows, tmp_path / "rate.png"))


def test_label_efficiency(tmp_path) -> None:
    rows = [{"method": m, "per_class": c, "accuracy": a + 0.01 * s}
            for m, base in (("frozen + logreg", 0.5), ("from scratch", 0.3))
            for c, a in ((10, base), (100, base + 0.2)) for s in range(3)]
    check_png(plot_label_efficiency(rows, tmp_path / "le.png", title="CIFAR-10"))
    with pytest.raises(InvalidInputError, match="`rows`"):
        plot_label_efficiency([], tmp_path / "x.png")
    with pytest.raises(InvalidInputError, match=r"`rows\[0\]\['per_class'\]`"):
        plot_label_efficiency([{"method": "a", "per_class": 0, "accuracy": 0.5}],
                              tmp_path / "x.png")
    with pytest.raises(InvalidInputError, match=r"`rows\[0\]\['accuracy'\]`"):
        plot_label_efficiency([{"method": "a", "per_class": 5, "accuracy": 1.5}],
                              tmp_path / "x.png")
    with pytest.raises(InvalidInputError, match="lacks"):
        plot_label_efficiency([{"method": "a", "accuracy": 0.5}], tmp_path / "x.png")


@pytest.mark.parametrize(
    ("call", "error", "names"),
    [
        (lambda p: plot_training_curves({"loss": [1.0]}, p.with_suffix(".jpg")),
         InvalidInputError, "`path`"),
        (lambda p: plot_training_curves({"loss": [1.0]}, 42), InvalidTypeError, "`path`"),
        (lambda p: plot_training_curves([1, 2], p), InvalidTypeError, "`history`"),
        (lambda p: plot_training_curves({}, p), InvalidInputError, "`history`"),
        (lambda p: plot_confusion_matrix([0, 1], [0], NAMES, p), InvalidInputError, "`y_pred`"),
        (lambda p: plot_confusion_matrix([0, 5], [0, 1], NAMES, p), InvalidInputError,
         "`y_true`"),
        (lambda p: plot_confusion_matrix([0], [0], NAMES, p, normalize="rows"),
         InvalidInputError, "`normalize`"),
        (lambda p: plot_predictions_grid(np.zeros((2, 8, 8)), np.ones((2, 3)) / 3, NAMES, p),
         InvalidInputError, "`images`"),
        (lambda p: plot_predictions_grid(np.zeros((2, 8, 8, 3)), np.ones((3, 3)) / 3, NAMES, p),
         InvalidInputError, "`probs`"),
        (lambda p: plot_predictions_grid(np.zeros((2, 8, 8, 3)), np.ones((2, 3)) / 3, NAMES, p,
                                         top_k=4), InvalidInputError, "`top_k`"),
        (lambda p: plot_predictions_grid(np.zeros((2, 8, 8, 3)), np.ones((2, 3)) / 3, ["a"], p),
         InvalidInputError, "`class_names`"),
        (lambda p: plot_accuracy_vs_cost([], p), InvalidInputError, "`rows`"),
        (lambda p: plot_accuracy_vs_cost([{"label": "a", "accuracy": 0.5}], p),
         InvalidInputError, "`rows[0]`"),
        (lambda p: plot_accuracy_vs_cost([{"label": "a", "accuracy": 50, "seconds": 1}], p),
         InvalidInputError, "accuracy"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, call, error, names) -> None:
    with pytest.raises(error) as info:
        call(tmp_path / "out.png")
    assert names in str(info.value)
    assert isinstance(info.value, TransferkitError)
    assert not (tmp_path / "out.png").exists()


def test_missing_matplotlib_says_what_to_install(tmp_path, monkeypatch) -> None:
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(MissingDependencyError) as info:
        plot_training_curves({"loss": [1.0]}, tmp_path / "x.png")
    assert 'pip install "transferkit[plots]"' in str(info.value)
    assert isinstance(info.value, ImportError)
