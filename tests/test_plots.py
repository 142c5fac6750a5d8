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
    plot_image_pairs,
    plot_label_efficiency,
    plot_neighbours,
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


# --------------------------------------------------------------------------- image pairs

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def solid(n: int, h: int, w: int, colour, dtype=np.uint8) -> np.ndarray:
    """``n`` images of ``h`` x ``w`` pixels, all of one colour."""
    return np.broadcast_to(np.asarray(colour, dtype=dtype), (n, h, w, 3)).copy()


def png_pixels(path) -> np.ndarray:
    check_png(path)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def count(pixels: np.ndarray, colour) -> int:
    """How many pixels are exactly ``colour``."""
    return int((pixels == np.asarray(colour, dtype=np.uint8)).all(axis=-1).sum())


def test_neighbours_one_row_per_query(tmp_path) -> None:
    def draw(q: int, name: str, **kwargs) -> np.ndarray:
        queries = solid(q, 32, 32, RED)
        neighbours = solid(q * 3, 16, 24, GREEN, np.float32).reshape(q, 3, 16, 24, 3)
        out = plot_neighbours(queries, neighbours, tmp_path / name, **kwargs)
        assert out == tmp_path / name
        return png_pixels(out)

    one = draw(1, "one.png")
    four = draw(4, "four.png", similarities=np.full((4, 3), 0.93),
                query_titles=[f"q{i}.png" for i in range(4)],
                neighbour_titles=[["cat", "dog", "frog"]] * 4, title="neighbours")
    # The same columns, four times the rows: about as wide, much taller.
    assert abs(four.shape[1] - one.shape[1]) < 0.2 * one.shape[1]
    assert four.shape[0] > 3 * one.shape[0]
    # Each query drawn once, three neighbours per query (the float images too).
    assert 3.5 < count(four, RED) / count(one, RED) < 4.5
    assert 3.5 < count(four, GREEN) / count(one, GREEN) < 4.5
    assert count(one, GREEN) > count(one, RED)  # 3 neighbours of 16x24 > 1 query of 32x32
    # More neighbours: wider, not taller.
    wide = png_pixels(plot_neighbours(solid(1, 32, 32, RED), solid(6, 16, 24, GREEN)[None],
                                      tmp_path / "sub" / "wide.png"))
    assert wide.shape[1] > 1.5 * one.shape[1]
    assert abs(wide.shape[0] - one.shape[0]) < 0.2 * one.shape[0]


def test_image_pairs_grid(tmp_path) -> None:
    def draw(n: int, name: str, **kwargs) -> np.ndarray:
        return png_pixels(plot_image_pairs(
            solid(n, 32, 32, RED), solid(n, 20, 20, BLUE), tmp_path / name,
            similarities=np.linspace(0.99, 0.9, n), titles_a=[f"test {i} cat" for i in range(n)],
            titles_b=[f"train {i} cat" for i in range(n)], **kwargs))

    four = draw(4, "four.png", title="leaks")
    eight = draw(8, "eight.png")  # ncols=4: two rows
    check_png(plot_image_pairs(solid(2, 8, 8, RED).astype(np.float32), solid(2, 8, 8, BLUE),
                               tmp_path / "sub" / "bare.png"))
    assert eight.shape[0] > 1.6 * four.shape[0]
    assert abs(eight.shape[1] - four.shape[1]) < 0.2 * four.shape[1]
    assert 1.8 < count(eight, RED) / count(four, RED) < 2.2
    assert 1.8 < count(eight, BLUE) / count(four, BLUE) < 2.2
    # max_pairs draws only the first pairs; ncols=1 stacks them.
    capped = draw(8, "capped.png", max_pairs=4)
    assert abs(count(capped, RED) - count(four, RED)) < 0.1 * count(four, RED)
    column = draw(4, "column.png", ncols=1)
    assert column.shape[0] > 2.5 * four.shape[0] and column.shape[1] < 0.5 * four.shape[1]
    assert abs(count(column, BLUE) - count(four, BLUE)) < 0.1 * count(four, BLUE)


Q = np.zeros((2, 8, 8, 3), dtype=np.uint8)
NB = np.zeros((2, 3, 6, 6, 3), dtype=np.uint8)
A = np.zeros((3, 8, 8, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("call", "error", "fragments"),
    [
        (lambda p: plot_neighbours(Q[..., 0], NB, p), InvalidInputError,
         ["`query_images`", "(q, height, width, 3)", "(2, 8, 8)"]),
        (lambda p: plot_neighbours(Q, NB[:, 0], p), InvalidInputError,
         ["`neighbour_images`", "(q, k, height, width, 3)", "(2, 6, 6, 3)"]),
        (lambda p: plot_neighbours(Q, NB[:1], p), InvalidInputError,
         ["`neighbour_images`", "2 queries", "(1, 3, 6, 6, 3)"]),
        (lambda p: plot_neighbours(Q[:0], NB[:0], p), InvalidInputError,
         ["`query_images`", "empty"]),
        (lambda p: plot_neighbours(Q, NB[:, :0], p), InvalidInputError,
         ["`neighbour_images`", "empty", "(2, 0, 6, 6, 3)"]),
        (lambda p: plot_neighbours(Q.astype(float) * np.nan, NB, p), InvalidInputError,
         ["`query_images`", "finite"]),
        (lambda p: plot_neighbours(Q, NB, p, similarities=np.ones((2, 4))), InvalidInputError,
         ["`similarities`", "(2, 3)", "(2, 4)"]),
        (lambda p: plot_neighbours(Q, NB, p, similarities=[[1, np.nan, 1], [1, 1, 1]]),
         InvalidInputError, ["`similarities`", "finite"]),
        (lambda p: plot_neighbours(Q, NB, p, query_titles=["a"]), InvalidInputError,
         ["`query_titles`", "(2)", "received 1"]),
        (lambda p: plot_neighbours(Q, NB, p, query_titles="ab"), InvalidTypeError,
         ["`query_titles`", "'ab'"]),
        (lambda p: plot_neighbours(Q, NB, p, neighbour_titles=[["a"] * 3]), InvalidInputError,
         ["`neighbour_titles`", "(2)", "received 1"]),
        (lambda p: plot_neighbours(Q, NB, p, neighbour_titles=[["a"] * 3, ["b"] * 2]),
         InvalidInputError, ["`neighbour_titles[1]`", "(3)", "received 2"]),
        (lambda p: plot_neighbours(Q, NB, p, neighbour_titles=[["a"] * 3, "abc"]),
         InvalidTypeError, ["`neighbour_titles[1]`", "'abc'"]),
        (lambda p: plot_neighbours(Q, NB, p, title=3), InvalidTypeError, ["`title`", "3"]),
        (lambda p: plot_neighbours(Q, NB, p.with_suffix(".jpg")), InvalidInputError,
         ["`path`", ".png", "out.jpg"]),
        (lambda p: plot_image_pairs(A[..., :2], A, p), InvalidInputError,
         ["`images_a`", "(n, height, width, 3)", "(3, 8, 8, 2)"]),
        (lambda p: plot_image_pairs(A, [[1, 2], [3]], p), InvalidInputError,
         ["`images_b`", "(n, height, width, 3)"]),
        (lambda p: plot_image_pairs(A, A[:2], p), InvalidInputError,
         ["`images_b`", "(3)", "received 2"]),
        (lambda p: plot_image_pairs(A[:0], A[:0], p), InvalidInputError,
         ["`images_a`", "empty"]),
        (lambda p: plot_image_pairs(A, A, p, similarities=[0.9, 0.8]), InvalidInputError,
         ["`similarities`", "(3,)", "(2,)"]),
        (lambda p: plot_image_pairs(A, A, p, titles_a=["a", "b"]), InvalidInputError,
         ["`titles_a`", "(3)", "received 2"]),
        (lambda p: plot_image_pairs(A, A, p, titles_b=7), InvalidTypeError,
         ["`titles_b`", "7"]),
        (lambda p: plot_image_pairs(A, A, p, ncols=0), InvalidInputError,
         ["`ncols`", "positive integer", "0"]),
        (lambda p: plot_image_pairs(A, A, p, max_pairs=True), InvalidInputError,
         ["`max_pairs`", "positive integer", "True"]),
        (lambda p: plot_image_pairs(A, A, 42), InvalidTypeError, ["`path`", "42"]),
    ],
)
def test_bad_image_arguments_say_what_was_expected_and_received(tmp_path, call, error,
                                                                fragments) -> None:
    with pytest.raises(error) as info:
        call(tmp_path / "out.png")
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    assert not (tmp_path / "out.png").exists()
