"""The command line, through its entry point, offline."""

from __future__ import annotations

import subprocess
import sys

import pytest

from transferkit import cli


@pytest.fixture
def offline(monkeypatch):
    """No CIFAR-10 download and no ImageNet weights, as on an air-gapped machine."""
    import keras

    from transferkit import datasets

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    monkeypatch.setattr(datasets, "_download_with_keras", no_network)


def test_demo_runs_offline_on_the_bundled_sample(offline, tmp_path, capsys) -> None:
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
