"""`transferkit fine-tune`, `transferkit export` and `predict --model`, offline, on tiny data."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_learnable
from PIL import Image

from transferkit import cli

# VGG-16 with random weights at 32x32 is the quickest registered backbone to fine-tune here
# (about 4 s for an epoch on 18 images, against 5.5 s for MobileNetV2 or EfficientNet-Lite0).
VGG = ["--extractor", "vgg16", "--weights", "none", "--input-size", "32"]
CLASSES = ["blue", "green", "red"]


def _write_pngs(folder: Path, per_class: int, seed: int) -> None:
    x, _ = make_learnable(per_class * len(CLASSES), size=16, seed=seed)
    for c, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = x[c * per_class + i].copy()
            pixels[..., c] = np.clip(pixels[..., c].astype(int) + 110, 0, 255)
            Image.fromarray(pixels).save(folder / name / f"{i:03d}.png")


def _run(argv: list[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `transferkit ARGV` (argparse's SystemExit too)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict:
    """photos/train (6 a class) and photos/test (3 a class), 16x16, and a head from `fit`."""
    root = tmp_path_factory.mktemp("ft")
    _write_pngs(root / "photos" / "train", 6, seed=1)
    _write_pngs(root / "photos" / "test", 3, seed=2)
    cache = root / "features.h5"
    for split in ("train", "test"):
        code, _, err = _run(["--progress", "off", "extract", "-q", "--image-folder",
                             str(root / "photos"), "--split", split, "--image-size", "16",
                             *VGG, "--cache", str(cache)])
        assert code == 0, err
    head = root / "head.tkhead"
    code, _, err = _run(["fit", "--cache", str(cache), "--output", str(head)])
    assert code == 0, err
    return {"root": root, "photos": root / "photos", "cache": cache, "head": head,
            "image": root / "photos" / "test" / "red" / "000.png"}


def _accuracies(out: str) -> tuple[float, float]:
    warm = float(out.split("warm start (frozen backbone + head): test accuracy ")[1].split()[0])
    tuned = float(out.split("fine-tuned: test accuracy ")[1].split()[0])
    return warm, tuned


def test_fine_tune_from_an_extractor_exports_a_classifier_predict_reads(work,
                                                                        tmp_path) -> None:
    from transferkit import FineTunedExtractor

    model, backbone, curves = (tmp_path / "ft.keras", tmp_path / "backbone.keras",
                               tmp_path / "curves.png")
    code, out, err = _run([
        "--progress", "lines", "fine-tune", *VGG, "--images", str(work["photos"]),
        "--epochs", "1", "--batch-size", "8", "--learning-rate", "0.001", "--no-checkpoint",
        "--output", str(model),
        "--save-extractor", str(backbone), "--plot", str(curves),
    ])
    assert code == 0, err
    assert "18 train / 9 test images 32x32, 3 classes" in out  # photos/train and test/
    assert "logistic regression fitted on 18 frozen features" in out
    warm, tuned = _accuracies(out)
    assert 0.0 <= warm <= 1.0 and 0.0 <= tuned <= 1.0
    assert "2 of 5 blocks, 1 epoch" in out and "blocks trained: block4, block5" in out
    assert "fine-tune epoch 1/1" in err  # Keras' progress, through --progress
    assert model.is_file() and curves.stat().st_size > 0
    assert FineTunedExtractor.load(backbone).blocks_trained_ == ["block4", "block5"]

    code, out, err = _run(["predict", str(work["photos"] / "test" / "red"), "--model",
                           str(model), "--top-k", "3"])
    assert code == 0, err
    assert f"3 images, classifier {model}" in out
    assert all(name in out for name in CLASSES)
    code, out, err = _run(["predict", str(work["image"]), "--model", str(model), "--json"])
    rows = json.loads(out)
    assert [t["class"] for t in rows[0]["top"]] and {
        t["class"] for t in rows[0]["top"]} == set(CLASSES)
    assert abs(sum(t["probability"] for t in rows[0]["top"]) - 1.0) < 1e-4


def test_fine_tune_from_a_head_file_uses_its_extractor_and_images(work, tmp_path) -> None:
    model = tmp_path / "ft_saved_model"  # no suffix: a SavedModel folder
    code, out, err = _run(["--progress", "off", "fine-tune", "--head", str(work["head"]),
                           "--blocks", "0", "--epochs", "1", "--learning-rate", "1e-9",
                           "--no-checkpoint", "--output", str(model)])
    assert code == 0, err
    assert "the head's image folder" in err  # the folder its features were extracted from
    assert "18 train / 9 test images 16x16" in out
    assert "vgg16 (weights=random(seed=0)" in out and "input_size=32" in out
    warm, tuned = _accuracies(out)
    assert tuned == pytest.approx(warm, abs=0.12)  # a learning rate of 1e-9: the warm start
    assert "blocks trained: none (the head alone)" in out
    assert (model / "saved_model.pb").is_file() and "(saved_model)" in out
    code, out, err = _run(["predict", str(work["image"]), "--model", str(model)])
    assert code == 0, err
    assert "1. " in out and any(name in out for name in CLASSES)


def test_export_matches_predict_with_the_head(work, tmp_path) -> None:
    model = tmp_path / "classifier.keras"
    code, out, err = _run(["export", "--head", str(work["head"]), "--output", str(model)])
    assert code == 0, err
    assert "images resized to 16x16; 3 classes: blue, green, red" in out
    assert f"saved {model} (keras)" in out
    pattern = str(work["photos"] / "test" / "*" / "00[01].png")
    code, out, err = _run(["predict", pattern, "--model", str(model), "--json"])
    assert code == 0, err
    exported = json.loads(out)
    code, out, err = _run(["--progress", "off", "predict", pattern, "--head", str(work["head"]),
                           "--json"])
    assert code == 0, err
    direct = json.loads(out)
    assert len(exported) == len(direct) == 6
    for a, b in zip(exported, direct, strict=True):
        assert a["path"] == b["path"]
        pa = {t["class"]: t["probability"] for t in a["top"]}
        pb = {t["class"]: t["probability"] for t in b["top"]}
        assert pa.keys() == pb.keys() and all(abs(pa[k] - pb[k]) < 1e-4 for k in pa)
    # TensorFlow Lite: the format from the suffix, the class names beside it
    code, out, err = _run(["export", "--head", str(work["head"]), "-o",
                           str(tmp_path / "phone.tflite")])
    assert code == 0, err
    assert (tmp_path / "phone.tflite").stat().st_size > 0 and "(tflite)" in out
    assert json.loads((tmp_path / "phone.json").read_text())["class_names"] == CLASSES


def test_interrupted_fine_tune_resumes_from_its_checkpoint(work, tmp_path,
                                                           monkeypatch) -> None:
    from transferkit.fine_tune import _estimator

    argv = ["--progress", "off", "fine-tune", *VGG, "--images", str(work["photos"]),
            "--blocks", "1", "--epochs", "2", "--checkpoint-dir", str(tmp_path / "ckpt"),
            "--output", str(tmp_path / "ft.keras")]
    original = _estimator.save_checkpoint

    def save_then_interrupt(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(_estimator, "save_checkpoint", save_then_interrupt)
    code, out, err = _run(argv)
    assert code == 130, err
    assert "checkpointed; run the same command again to resume" in err
    assert len(list((tmp_path / "ckpt").iterdir())) == 1
    assert not (tmp_path / "ft.keras").exists()
    monkeypatch.setattr(_estimator, "save_checkpoint", original)
    code, out, err = _run(argv)
    assert code == 0, err
    assert "resumed after epoch 1 (checkpoint)" in out and "trained 2 epochs" in out
    assert "note: FineTuner: resuming from the checkpoint of epoch 1" in err
    assert (tmp_path / "ft.keras").is_file()
    assert list((tmp_path / "ckpt").iterdir()) == []  # removed once complete


def test_a_head_of_other_classes_is_refused(work, tmp_path) -> None:
    other = tmp_path / "other"
    for name in ("cat", "dog"):
        (other / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(
                other / name / f"{i}.png")
    code, out, err = _run(["--progress", "off", "fine-tune", "--head", str(work["head"]),
                           "--images", str(other), "--test-size", "2", "--no-checkpoint",
                           "--output", str(tmp_path / "x.keras")])
    assert code == 1, err
    assert "are not classes of the head" in err and "'cat'" in err
    assert "fine-tuned" not in out and not (tmp_path / "x.keras").exists()


# ---------------------------------------------------------------------------------------
# Bad input: usage errors (exit code 2) naming the option, before any training
# ---------------------------------------------------------------------------------------

_FT = ["fine-tune", "--head", "{head}", "--epochs", "1", "--no-checkpoint",
       "--output", "{tmp}/ft.keras"]
_EXPORT = ["export", "--head", "{head}", "--output", "{tmp}/clf.keras"]

BAD = [
    (_FT, ["--blocks", "-1"], "--blocks"),
    (_FT, ["--blocks", "abc"], "--blocks"),
    (_FT, ["--blocks", "9"], "--blocks"),  # VGG-16 has 5 blocks
    (_FT, ["--epochs", "0"], "--epochs"),
    (_FT, ["--learning-rate", "0"], "--learning-rate"),
    (_FT, ["--max-minutes", "-1"], "--max-minutes"),
    (_FT, ["--validation-split", "1"], "--validation-split"),
    (_FT, ["--output", "{tmp}/ft.h5"], "--output"),
    (_FT, ["--output", "{tmp}/ft.keras", "--format", "tflite"], "--output"),
    (_FT, ["--output", "{file}/ft.keras"], "--output"),
    (_FT, ["--save-extractor", "{tmp}/backbone.h5"], "--save-extractor"),
    (_FT, ["--plot", "{tmp}/curves.jpg"], "--plot"),
    (_FT, ["--checkpoint-dir", "{file}"], "--checkpoint-dir"),
    (["fine-tune", "--head", "{head}", "--checkpoint-dir", "{tmp}"], ["--no-checkpoint"],
     "--no-checkpoint"),
    (_FT, ["--image-size", "24"], "--image-size"),  # the head's features are of 16x16 images
    (_FT, ["--images", "{file}"], "--images"),
    (_FT, ["--images", "{photos}", "--data", "{photos}"], "--images"),
    (_FT, ["--images", "{photos}/train", "--test-size", "18"], "--test-size"),
    (["fine-tune", "--output", "{tmp}/ft.keras"], [], "--head"),  # no head, no extractor
    (["fine-tune", "--head", "{knn_head}", "--output", "{tmp}/ft.keras"], [], "--head"),
    (_EXPORT, ["--output", "{tmp}/clf.h5"], "--output"),
    (_EXPORT, ["--output", "{tmp}/clf.keras", "--format", "saved_model"], "--output"),
    (_EXPORT, ["--image-size", "0"], "--image-size"),
    (["export", "--head", "{knn_head}", "--output", "{tmp}/clf.keras"], [], "--head"),
    (["export", "--head", "{head}"], [], "--output"),
    (["export", "--head", "{api_head}", "--output", "{tmp}/clf.keras"],
     ["--extractor", "vgg16", "--weights", "none"], "--image-size"),  # size unknown
    (["predict", "{image}"], ["--model", "{tmp}/m.keras", "--head", "{head}"], "--model"),
    (["predict", "{image}"], ["--model", "{tmp}/m.keras", "--cnn", "{tmp}/c.keras"], "--cnn"),
    (["predict", "{image}", "--model", "{tflite}"], [], "--model"),
    (["predict", "{image}", "--model", "{tmp}/m.keras"], ["--extractor", "vgg16"],
     "--extractor"),
]


@pytest.mark.parametrize("base, extra, option", BAD,
                         ids=[f"{b[0]} {' '.join(e) or o}" for b, e, o in BAD])
def test_bad_input_exits_2_naming_the_option(work, tmp_path, base, extra, option) -> None:
    from sklearn.linear_model import LogisticRegression

    from transferkit import FeatureCache, SklearnHead

    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "m.tflite").write_bytes(b"TFL3")
    places = {"head": str(work["head"]), "tmp": str(tmp_path), "photos": str(work["photos"]),
              "file": str(tmp_path / "a_file"), "image": str(work["image"]),
              "tflite": str(tmp_path / "m.tflite"), "api_head": str(tmp_path / "api.tkhead"),
              "knn_head": str(tmp_path / "knn.tkhead")}
    if "{knn_head}" in base:  # k-nearest neighbours: no Keras layer to warm-start
        code, _, err = _run(["fit", "--cache", str(work["cache"]), "--head", "knn",
                             "--neighbors", "3", "--output", places["knn_head"]])
        assert code == 0, err
    if "{api_head}" in base:  # a head saved from Python: no extractor, no image size
        cache = FeatureCache(work["cache"])
        key = next(e.key for e in cache.entries() if e.n_images == 18)
        SklearnHead(LogisticRegression(max_iter=500)).fit(
            cache.load(key), cache.labels(key)).save(tmp_path / "api.tkhead")
    argv = [arg.format(**places) for arg in [*base, *extra]]
    code, out, err = _run(argv)
    assert code == 2, (argv, out, err)
    assert option in err, err
    assert "Traceback" not in err and "accuracy" not in out
    assert not (tmp_path / "ft.keras").exists() and not (tmp_path / "clf.keras").exists()


@pytest.mark.parametrize("argv, named", [
    (["fine-tune", "--head", "{tmp}/missing.tkhead", "--output", "{tmp}/ft.keras"],
     "missing.tkhead"),
    (["export", "--head", "{tmp}/missing.tkhead", "--output", "{tmp}/clf.keras"],
     "missing.tkhead"),
    (["predict", "{image}", "--model", "{tmp}/missing.keras"], "--model"),
])
def test_missing_files_exit_1_naming_them(work, tmp_path, argv, named) -> None:
    """The project's convention: a missing input file is a transferkit error (exit 1)."""
    code, out, err = _run([a.format(tmp=tmp_path, image=work["image"]) for a in argv])
    assert code == 1, err
    assert named in err and ("does not exist" in err or "no such file" in err), err
    assert out == "" and not (tmp_path / "ft.keras").exists()


@pytest.mark.parametrize("command", ["fine-tune", "export"])
def test_new_commands_have_help(command, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--output" in text
