"""``transferkit similar`` and ``transferkit duplicates`` on a tiny image folder, offline."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit import cli

VGG = ["--extractor", "vgg16", "--weights", "none", "--input-size", "32",
       "--layer", "block3_pool"]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as stop:  # argparse's own usage errors
            code = stop.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict:
    """photos/train (12 distinct images in 2 classes) and photos/test: 2 copies + 2 new."""
    root = tmp_path_factory.mktemp("search")
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    fresh = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    copies = np.clip(train[[3, 8]].astype(int) + rng.integers(-3, 4, (2, 32, 32, 3)), 0, 255)
    for split, images in (("train", train), ("test", np.concatenate([copies, fresh]))):
        for i, image in enumerate(images.astype(np.uint8)):
            name = ("cat", "dog")[i % 2]
            (root / "photos" / split / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / "photos" / split / name / f"{i:02d}.png")
    cache = root / "f.h5"
    for split in ("train", "test"):
        code, _, err = _run(["extract", "--image-folder", str(root / "photos"), "--split",
                             split, "--image-size", "32", *VGG, "--cache", str(cache)])
        assert code == 0, err
    return {"root": root, "cache": str(cache), "train": train}


def test_similar_finds_the_image_itself_first_and_plots(work, tmp_path) -> None:
    query = work["root"] / "photos" / "train" / "dog" / "03.png"  # train row 3 -> dog/03
    code, out, err = _run(["similar", str(query), "--cache", work["cache"], "--k", "3", "--center",
                           "--plot", str(tmp_path / "n.png")])
    assert code == 0, err
    first = next(line for line in out.splitlines() if line.strip().startswith("1."))
    assert "1.000" in first and "dog/03.png" in first
    assert (tmp_path / "n.png").stat().st_size > 0
    # the saved index is reused
    assert list(Path(work["cache"] + ".index").glob("*.npy"))


def test_duplicates_against_the_test_split_finds_the_two_copies(work, tmp_path) -> None:
    code, out, err = _run(["duplicates", "--cache", work["cache"], "--split", "train",
                           "--against", "test", "--threshold", "0.95", "--center",
                           "--csv", str(tmp_path / "p.csv"), "--plot", str(tmp_path / "p.png")])
    assert code == 0, err
    assert out.startswith("2 of 4 images of entry")
    with open(tmp_path / "p.csv") as fh:
        rows = list(csv.DictReader(fh))
    pairs = {(int(r["query_row"]), int(r["match_row"])) for r in rows}
    # test rows (sorted by class): 0 = cat/00, a copy of train image 3, which is train row
    # 7 (dog/03); 2 = dog/01, a copy of train image 8, which is train row 4 (cat/08)
    assert pairs == {(0, 7), (2, 4)} and (tmp_path / "p.png").stat().st_size > 0


def test_bad_input_is_named(work) -> None:
    code, _, err = _run(["duplicates", "--cache", work["cache"], "--threshold", "1.5"])
    assert code == 2 and "--threshold" in err and "[-1, 1]" in err
    code, _, err = _run(["duplicates", "--cache", work["cache"], "--split", "train",
                         "--against", "train"])
    assert code == 2 and "same entry" in err
    code, _, err = _run(["similar", str(work["root"] / "nope.png"), "--cache", work["cache"]])
    assert code != 0 and "nope.png" in err
    code, _, err = _run(["similar", str(work["root"] / "photos"), "--cache", work["cache"],
                         "--k", "99"])
    assert code == 1 and "`k`" in err


def test_extract_takes_several_comma_separated_layers(work, tmp_path) -> None:
    """--layer a,b: the pooled outputs of both layers, concatenated (64 + 128 + 256 here)."""
    from transferkit import FeatureCache

    code, out, err = _run(["extract", "-q", "--image-folder", str(work["root"] / "photos"),
                           "--split", "train", "--image-size", "32", "--extractor", "vgg16",
                           "--weights", "none", "--layer", "block1_pool,block2_pool,block3_pool",
                           "--pooling", "avgmax", "--cache", str(tmp_path / "f.h5")])
    assert code == 0, err
    entry = FeatureCache(tmp_path / "f.h5").info(out.strip())
    assert entry.feature_dim == 2 * (64 + 128 + 256)
    assert entry.extractor_config["layer"] == ["block1_pool", "block2_pool", "block3_pool"]
