"""``transferkit extract --image-list`` and ``--hf-dataset``: other sources, one entry format."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit import FeatureCache, cli

VGG = ["--extractor", "vgg16", "--weights", "none", "--input-size", "32",
       "--layer", "block3_pool"]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """photos/<class>/<i>.png (two classes, 3 images each) and a CSV listing them."""
    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    rows = ["filename,label"]
    for name in ("cat", "dog"):
        (root / "photos" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                root / "photos" / name / f"{i}.png")
            rows.append(f"photos/{name}/{i}.png,{name}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_image_list_extracts_the_folders_features_with_its_labels(photos) -> None:
    cache_file = str(photos / "f.h5")
    code, out, err = _run(["extract", "--image-list", str(photos / "labels.csv"),
                           "--image-size", "32", *VGG, "--cache", cache_file])
    assert code == 0, err
    assert "image list" in out and "6 images 32x32, 2 classes" in out
    key = out.strip().splitlines()[-1].split()[-1]
    code, out, err = _run(["extract", "--image-folder", str(photos / "photos"),
                           "--image-size", "32", *VGG, "--cache", cache_file])
    assert code == 0, err
    folder_key = out.strip().splitlines()[-1].split()[-1]
    cache = FeatureCache(cache_file)
    assert key != folder_key  # another source format, another entry
    np.testing.assert_array_equal(cache.load(key), cache.load(folder_key))
    assert cache.info(key).class_names == ["cat", "dog"]
    np.testing.assert_array_equal(cache.labels(key), [0, 0, 0, 1, 1, 1])
    code, out, _ = _run(["info", "--cache", cache_file])
    assert code == 0 and "image-list" in out
    # again: served from the cache
    code, out, _ = _run(["extract", "--image-list", str(photos / "labels.csv"),
                         "--image-size", "32", *VGG, "--cache", cache_file])
    assert code == 0 and "already in the cache" in out


def test_image_list_errors_name_the_option_column_or_row(photos, tmp_path) -> None:
    csv = str(photos / "labels.csv")
    base = ["extract", "--image-size", "32", *VGG, "--cache", str(tmp_path / "f.h5")]
    code, _, err = _run([*base, "--image-list", csv, "--label-column", "species"])
    assert code == 1 and "`label_column`" in err and "'species'" in err
    bad = tmp_path / "bad.csv"
    bad.write_text(f"path,label\n{photos}/photos/cat/0.png,cat\n{photos}/nope.png,dog\n")
    code, _, err = _run([*base, "--image-list", str(bad)])
    assert code == 1 and "row 2" in err and "nope.png" in err
    code, _, err = _run([*base, "--image-list", csv, "--image-folder", str(photos)])
    assert code == 2 and "--image-folder and --image-list" in err
    code, _, err = _run([*base, "--image-folder", str(photos / "photos"), "--path-column", "x"])
    assert code == 2 and "--path-column applies to --image-list" in err
    code, _, err = _run([*base, "--image-list", str(photos)])
    assert code == 2 and "--image-list must name a file" in err
    assert not (tmp_path / "f.h5").exists() or not FeatureCache(tmp_path / "f.h5").entries()


def test_image_list_without_labels_stores_features_alone(photos, tmp_path) -> None:
    code, out, err = _run(["extract", "--image-list", str(photos / "labels.csv"),
                           "--label-column", "none", "--image-size", "32", *VGG,
                           "--cache", str(tmp_path / "f.h5")])
    assert code == 0, err
    assert "no labels" in out
    key = out.strip().splitlines()[-1].split()[-1]
    assert FeatureCache(tmp_path / "f.h5").labels(key) is None


def test_hf_dataset_saved_to_disk_with_splits(photos, tmp_path, monkeypatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    files = sorted((photos / "photos").glob("*/*.png"))
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["cat", "dog"])})
    ds = datasets.Dataset.from_dict(
        {"image": [str(f) for f in files], "label": [int(f.parent.name == "dog") for f in files]},
        features=features)
    datasets.DatasetDict({"train": ds, "test": ds.select([0, 5])}).save_to_disk(
        str(tmp_path / "saved"))
    cache_file = str(tmp_path / "f.h5")
    code, out, err = _run(["extract", "--hf-dataset", str(tmp_path / "saved"), "--hf-split",
                           "test", "--image-size", "32", *VGG, "--cache", cache_file])
    assert code == 0, err
    assert "(test): 2 images 32x32, 2 classes" in out
    key = out.strip().splitlines()[-1].split()[-1]
    cache = FeatureCache(cache_file)
    assert cache.info(key).class_names == ["cat", "dog"]
    np.testing.assert_array_equal(cache.labels(key), [0, 1])
    code, out, err = _run(["extract", "--image-folder", str(photos / "photos"),
                           "--image-size", "32", *VGG, "--cache", cache_file])
    folder = cache.load(out.strip().splitlines()[-1].split()[-1])
    np.testing.assert_array_equal(cache.load(key), folder[[0, 5]])
    # the default split is train; an unknown one is a usage error naming the splits
    code, out, err = _run(["extract", "-q", "--hf-dataset", str(tmp_path / "saved"),
                           "--image-size", "32", *VGG, "--cache", cache_file])
    assert code == 0 and cache.info(out.strip()).n_images == 6
    code, _, err = _run(["extract", "--hf-dataset", str(tmp_path / "saved"), "--hf-split",
                         "valid", *VGG, "--cache", cache_file])
    assert code == 2 and "['train', 'test']" in err and "'valid'" in err
    code, _, err = _run(["extract", "--hf-dataset", str(tmp_path / "missing"), *VGG,
                         "--cache", cache_file])
    assert code == 1 and "--hf-dataset" in err and "could not be loaded" in err
