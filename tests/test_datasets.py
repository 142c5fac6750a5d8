"""Tests for transferkit.datasets: CIFAR-10 loading, the bundled sample, image folders."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import transferkit
from transferkit import datasets
from transferkit.datasets import (
    CIFAR10_CLASSES,
    CIFAR10_URL,
    ImageFolderDataset,
    balanced_subset,
    get_data_dir,
    load_cifar10,
    load_cifar10_or_sample,
    load_cifar10_sample,
    load_image_folder,
)
from transferkit.datasets import cifar10 as cifar10_module
from transferkit.datasets import image_folder as image_folder_module
from transferkit.datasets._archive import safe_extract_tar
from transferkit.datasets.images import expand_image_paths, read_image_size, read_images
from transferkit.exceptions import (
    DatasetNotFoundError,
    ImageReadError,
    InvalidInputError,
    InvalidTypeError,
    TransferkitError,
)

# Images per fake batch: data_batch_1..5 and test_batch.
TRAIN_PER_BATCH = 4
N_TEST = 6


# --------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Point every data location at tmp_path and make any real download fail the test."""
    monkeypatch.setenv("TRANSFERKIT_DATA", str(tmp_path / "tkdata"))
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KERAS_HOME", raising=False)

    def no_download():
        raise AssertionError("the test tried to download CIFAR-10")

    monkeypatch.setattr(datasets.cifar10, "download_with_keras", no_download)


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _short_string(data: bytes) -> bytes:
    """Python 2 ``str`` opcode (SHORT_BINSTRING / BINSTRING), as in the official files."""
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + len(data).to_bytes(4, "little") + data


def _py2_batch_pickle(images: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way the official files are (Python 2, numpy.core globals)."""
    n = len(images)
    planes = images.transpose(0, 3, 1, 2).reshape(n, 3072)
    out = bytearray(b"\x80\x02}(")  # PROTO 2, EMPTY_DICT, MARK
    out += _short_string(b"batch_label") + _short_string(b"fake batch")
    out += _short_string(b"labels") + b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    out += _short_string(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
    out += b"K\x00\x85" + _short_string(b"b") + b"\x87R"  # _reconstruct(ndarray, (0,), 'b')
    out += b"(K\x01M" + n.to_bytes(2, "little") + b"M\x00\x0c\x86"  # version, shape (n, 3072)
    out += b"cnumpy\ndtype\n" + _short_string(b"u1") + b"K\x00K\x01\x87R"
    out += b"(K\x03" + _short_string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89" + _short_string(planes.tobytes()) + b"tb"  # fortran=False, raw bytes
    out += _short_string(b"filenames") + b"](" + _short_string(b"x.png") * n + b"e"
    out += b"u."  # SETITEMS, STOP
    return bytes(out)


def _py3_batch_pickle(images: np.ndarray, labels: list[int]) -> bytes:
    n = len(images)
    planes = images.transpose(0, 3, 1, 2).reshape(n, 3072)
    return pickle.dumps({b"batch_label": b"fake", b"labels": labels, b"data": planes}, protocol=4)


def _fake_cifar() -> dict[str, tuple[np.ndarray, list[int], bytes]]:
    """Batch name -> (NHWC images, labels, pickle bytes); alternating pickle styles."""
    out = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = N_TEST if name == "test_batch" else TRAIN_PER_BATCH
        images = _images(n, seed=k)
        labels = [(k + j) % 10 for j in range(n)]
        make = _py2_batch_pickle if k % 2 == 0 else _py3_batch_pickle
        out[name] = (images, labels, make(images, labels))
    return out


def _expected(fake):
    train = [f"data_batch_{i}" for i in range(1, 6)]
    x_train = np.concatenate([fake[n][0] for n in train])
    y_train = np.concatenate([fake[n][1] for n in train]).astype(np.int64)
    return (x_train, y_train), (fake["test_batch"][0], np.asarray(fake["test_batch"][1]))


def _write_batches_dir(folder: Path, fake) -> Path:
    folder.mkdir(parents=True)
    for name, (_, _, data) in fake.items():
        (folder / name).write_bytes(data)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": list(CIFAR10_CLASSES)}))
    return folder


def _write_official_archive(path: Path, fake) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, (_, _, data) in fake.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _assert_matches(result, fake) -> None:
    (x_train, y_train), (x_test, y_test) = result
    (ex_train, ey_train), (ex_test, ey_test) = _expected(fake)
    assert x_train.shape == (5 * TRAIN_PER_BATCH, 32, 32, 3) and x_train.dtype == np.uint8
    assert x_test.shape == (N_TEST, 32, 32, 3) and x_test.dtype == np.uint8
    assert y_train.shape == (5 * TRAIN_PER_BATCH,) and y_train.dtype == np.int64
    assert y_test.shape == (N_TEST,) and y_test.dtype == np.int64
    np.testing.assert_array_equal(x_train, ex_train)
    np.testing.assert_array_equal(y_train, ey_train)
    np.testing.assert_array_equal(x_test, ex_test)
    np.testing.assert_array_equal(y_test, ey_test)


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path)


def _write_cifar_tree(root: Path, n_train: int = 2, n_test: int = 1) -> dict[str, list]:
    """PNG tree train/<class>/NNNN.png + test/<class>/NNNN.png; split -> [(image, label)]."""
    written: dict[str, list] = {"train": [], "test": []}
    for split, count in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(CIFAR10_CLASSES):
            for i in range(count):
                image = _images(1, seed=1000 * label + 10 * i + (split == "test"))[0]
                _save(root / split / name / f"{i:04d}.png", image)
                written[split].append((image, label))
    return written


def _make_folder(root: Path) -> dict[str, list[np.ndarray]]:
    """Three classes of small RGB PNGs (varied sizes are avoided: all 12x10)."""
    content = {}
    rng = np.random.default_rng(0)
    for name, count in (("dog", 3), ("cat", 2), ("bird", 4)):
        images = [rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8) for _ in range(count)]
        for i, image in enumerate(images):
            _save(root / name / f"img_{i:02d}.png", image)
        content[name] = images
    return content


# --------------------------------------------------------------------------------------
# load_cifar10: explicit path layouts
# --------------------------------------------------------------------------------------


def test_class_names_in_label_order():
    assert CIFAR10_CLASSES == tuple(
        "airplane automobile bird cat deer dog frog horse ship truck".split()
    )


def test_official_archive(tmp_path):
    fake = _fake_cifar()
    archive = _write_official_archive(tmp_path / "cifar-10-python.tar.gz", fake)
    _assert_matches(load_cifar10(archive), fake)
    _assert_matches(load_cifar10(str(archive), download=False), fake)
    assert not (tmp_path / "tkdata").exists()  # read in memory, nothing extracted


def test_extracted_folder_and_its_parent(tmp_path):
    fake = _fake_cifar()
    folder = _write_batches_dir(tmp_path / "parent" / "cifar-10-batches-py", fake)
    _assert_matches(load_cifar10(folder), fake)
    _assert_matches(load_cifar10(folder.parent), fake)


def test_incomplete_batches_folder(tmp_path):
    folder = _write_batches_dir(tmp_path / "cifar-10-batches-py", _fake_cifar())
    (folder / "data_batch_3").unlink()
    with pytest.raises(InvalidInputError, match=r"incomplete.*data_batch_3.*kriz"):
        load_cifar10(folder)


def test_batch_with_wrong_content(tmp_path):
    folder = _write_batches_dir(tmp_path / "cifar-10-batches-py", _fake_cifar())
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": [1, 2, 3], b"labels": [0]}))
    with pytest.raises(InvalidInputError, match=r"test_batch.*uint8 array of shape \(n, 3072\)"):
        load_cifar10(folder)
    (folder / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(InvalidInputError, match=r"Could not read the CIFAR-10 batch .*test_batch"):
        load_cifar10(folder)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    folder = _write_batches_dir(tmp_path / "cifar-10-batches-py", _fake_cifar())
    marker = tmp_path / "pwned"
    payload = {b"data": _Exploit(marker), b"labels": [0]}
    (folder / "data_batch_2").write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(InvalidInputError, match=r"Refusing to load .*data_batch_2.*system"):
        load_cifar10(folder)
    assert not marker.exists()


def test_malicious_pickle_inside_archive_is_refused(tmp_path):
    fake = _fake_cifar()
    evil = pickle.dumps({b"data": eval, b"labels": []})  # references builtins.eval
    fake["test_batch"] = (fake["test_batch"][0], fake["test_batch"][1], evil)
    archive = _write_official_archive(tmp_path / "cifar-10-python.tar.gz", fake)
    with pytest.raises(InvalidInputError, match=r"builtins\.eval.*malicious"):
        load_cifar10(archive)


def test_image_tree_folder_and_parent(tmp_path):
    written = _write_cifar_tree(tmp_path / "data" / "cifar10-jpg")
    for location in (tmp_path / "data" / "cifar10-jpg", tmp_path / "data"):
        (x_train, y_train), (x_test, y_test) = load_cifar10(location)
        assert x_train.shape == (20, 32, 32, 3) and x_test.shape == (10, 32, 32, 3)
        assert y_train.dtype == np.int64 and y_train.shape == (20,)
        # Class order follows CIFAR10_CLASSES; files are read in name order.
        np.testing.assert_array_equal(y_train, np.repeat(np.arange(10), 2))
        np.testing.assert_array_equal(x_train, np.stack([img for img, _ in written["train"]]))
        np.testing.assert_array_equal(x_test, np.stack([img for img, _ in written["test"]]))
        np.testing.assert_array_equal(y_test, np.arange(10))


def test_image_tree_needs_exactly_the_cifar_classes(tmp_path):
    root = tmp_path / "tree"
    _write_cifar_tree(root, n_train=1, n_test=1)
    shutil.rmtree(root / "train" / "cat")
    _save(root / "train" / "kitten" / "0000.png", _images(1, 0)[0])
    with pytest.raises(
        InvalidInputError, match=r"exactly the 10 .*missing \['cat'\].*\['kitten'\]"
    ):
        load_cifar10(root)


def test_image_tree_archive_is_extracted_once(tmp_path, monkeypatch):
    tree = tmp_path / "src" / "cifar10-jpg"
    written = _write_cifar_tree(tree, n_train=1, n_test=1)
    archive = tmp_path / "cifar10-jpg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="cifar10-jpg")
    (x_train, y_train), (x_test, _) = load_cifar10(archive)
    np.testing.assert_array_equal(x_train, np.stack([img for img, _ in written["train"]]))
    np.testing.assert_array_equal(y_train, np.arange(10))
    extracted = list((tmp_path / "tkdata" / "extracted").iterdir())
    assert len(extracted) == 1 and (extracted[0] / "cifar10-jpg" / "train" / "cat").is_dir()

    def fail(*args):
        raise AssertionError("extracted twice")

    monkeypatch.setattr(cifar10_module, "safe_extract_tar", fail)
    (x2, _), _ = load_cifar10(archive)
    np.testing.assert_array_equal(x2, x_train)


def test_missing_path():
    with pytest.raises(DatasetNotFoundError, match=r"`path` .*nowhere.* does not exist"):
        load_cifar10("/nowhere/cifar")


def test_unrecognised_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        InvalidInputError, match=r"(?s)`path` .*empty.*no recognised.*cifar-10-python"
    ):
        load_cifar10(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInputError, match=r"(?s)not a tar archive.*cifar-10-batches-py"):
        load_cifar10(tmp_path / "notes.txt")
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        info = tarfile.TarInfo("readme.txt")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(InvalidInputError, match=r"neither CIFAR-10 batches nor"):
        load_cifar10(other)


def test_bad_argument_types():
    with pytest.raises(InvalidTypeError, match=r"`path` must be a path"):
        load_cifar10(42)
    with pytest.raises(InvalidTypeError, match=r"`download` must be True or False"):
        load_cifar10(download="yes")


# --------------------------------------------------------------------------------------
# load_cifar10: data folder, Keras cache, download
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["archive", "batches", "tree", "tree-archive"])
def test_data_dir_from_env(tmp_path, layout):
    data_dir = tmp_path / "tkdata"
    assert get_data_dir() == data_dir.resolve()
    fake = _fake_cifar()
    if layout == "archive":
        _write_official_archive(data_dir / "cifar-10-python.tar.gz", fake)
    elif layout == "batches":
        _write_batches_dir(data_dir / "cifar-10-batches-py", fake)
    else:
        _write_cifar_tree(data_dir / "cifar10-jpg", n_train=1, n_test=1)
        if layout == "tree-archive":
            with tarfile.open(data_dir / "cifar10-jpg.tar.gz", "w:gz") as tar:
                tar.add(data_dir / "cifar10-jpg", arcname="cifar10-jpg")
            shutil.rmtree(data_dir / "cifar10-jpg")
    result = load_cifar10(download=False)
    if layout in ("archive", "batches"):
        _assert_matches(result, fake)
    else:
        assert result[0][0].shape == (10, 32, 32, 3)
        np.testing.assert_array_equal(result[1][1], np.arange(10))


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("TRANSFERKIT_DATA")
    assert get_data_dir() == (tmp_path / "home" / ".transferkit" / "data").resolve()


def test_keras_cache_in_home(tmp_path):
    fake = _fake_cifar()
    _write_batches_dir(tmp_path / "home" / ".keras" / "datasets" / "cifar-10-batches-py", fake)
    _assert_matches(load_cifar10(download=False), fake)


def test_keras_cache_respects_keras_home(tmp_path, monkeypatch):
    fake = _fake_cifar()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    target = tmp_path / "kh" / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    _write_batches_dir(target, fake)
    _assert_matches(load_cifar10(download=False), fake)


def test_offline_download_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    def offline():
        raise Exception(f"URL fetch failure on {CIFAR10_URL}: None -- [Errno -3] no network")

    monkeypatch.setattr(datasets.cifar10, "download_with_keras", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10()
    message = str(info.value)
    assert CIFAR10_URL in message
    assert str((tmp_path / "tkdata").resolve() / "cifar-10-python.tar.gz") in message
    assert "TRANSFERKIT_DATA" in message and "path=" in message
    assert "URL fetch failure" in message
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, TransferkitError)


def test_download_false_never_downloads(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"download=False(.|\n)*cifar-10-python"):
        load_cifar10(download=False)


def test_download_result_is_converted(monkeypatch):
    x = np.zeros((3, 32, 32, 3), np.uint8)
    y = np.array([[1], [2], [3]], np.uint8)
    monkeypatch.setattr(datasets.cifar10, "download_with_keras", lambda: ((x, y), (x[:1], y[:1])))
    (x_train, y_train), (x_test, y_test) = load_cifar10()
    assert x_train.shape == (3, 32, 32, 3) and x_test.shape == (1, 32, 32, 3)
    assert y_train.dtype == np.int64 and y_train.tolist() == [1, 2, 3]
    assert y_test.shape == (1,)


# --------------------------------------------------------------------------------------
# Safe tar extraction
# --------------------------------------------------------------------------------------


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _evil_archive(path: Path, outside: Path, kind: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        _add_bytes(tar, "cifar10-jpg/train/airplane/0000.png", b"fine")
        if kind == "absolute":
            _add_bytes(tar, str(outside / "abs.txt"))
        elif kind == "dotdot":
            _add_bytes(tar, "cifar10-jpg/../../outside/dotdot.txt")
        elif kind == "symlink":
            link = tarfile.TarInfo("cifar10-jpg/escape")
            link.type = tarfile.SYMTYPE
            link.linkname = str(outside)
            tar.addfile(link)
            _add_bytes(tar, "cifar10-jpg/escape/through-link.txt")
        elif kind == "relative-symlink":
            link = tarfile.TarInfo("cifar10-jpg/escape")
            link.type = tarfile.SYMTYPE
            link.linkname = "../../outside"
            tar.addfile(link)
        elif kind == "hardlink":
            link = tarfile.TarInfo("cifar10-jpg/passwd")
            link.type = tarfile.LNKTYPE
            link.linkname = str(outside / "secret.txt")
            tar.addfile(link)
        elif kind == "device":
            dev = tarfile.TarInfo("cifar10-jpg/dev-null")
            dev.type = tarfile.CHRTYPE
            tar.addfile(dev)
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("absolute", "absolute path"),
        ("dotdot", r"'\.\.'"),
        ("symlink", "symbolic link .*outside"),
        ("relative-symlink", "symbolic link .*outside"),
        ("hardlink", "hard link .*outside"),
        ("device", "device file"),
    ],
)
def test_malicious_archive_is_refused(tmp_path, kind, reason):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    archive = _evil_archive(tmp_path / "evil.tar.gz", outside, kind)
    with pytest.raises(InvalidInputError, match=rf"Refusing to extract .*evil.*{reason}"):
        load_cifar10(archive)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    extracted = tmp_path / "tkdata" / "extracted"
    assert not extracted.exists() or list(extracted.iterdir()) == []  # partial folder removed
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "evil.tar.gz",
        "home",
        "outside",
        "tkdata",
    ]


def test_safe_extract_writes_only_inside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(InvalidInputError, match="Nothing was extracted"):
        safe_extract_tar(_evil_archive(tmp_path / "e.tar", outside, "dotdot"), dest)
    assert list(dest.iterdir()) == [] and list(outside.iterdir()) == []
    good = tmp_path / "good.tar"
    with tarfile.open(good, "w") as tar:
        _add_bytes(tar, "a/b/c.txt", b"hello")
    safe_extract_tar(good, dest)
    assert (dest / "a" / "b" / "c.txt").read_bytes() == b"hello"


# --------------------------------------------------------------------------------------
# Bundled sample
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample():
    return load_cifar10_sample()


def test_sample_shapes_and_balance(sample):
    (x_train, y_train), (x_test, y_test) = sample
    assert x_train.shape == (5000, 32, 32, 3) and x_train.dtype == np.uint8
    assert x_test.shape == (1000, 32, 32, 3) and x_test.dtype == np.uint8
    assert y_train.shape == (5000,) and y_train.dtype == np.int64
    assert y_test.shape == (1000,) and y_test.dtype == np.int64
    assert np.bincount(y_train).tolist() == [500] * 10
    assert np.bincount(y_test).tolist() == [100] * 10
    np.testing.assert_array_equal(y_train[:20], np.tile(np.arange(10), 2))  # interleaved
    assert 60 < x_train.mean() < 200 and x_train.std() > 30  # real photos, not blank
    assert not np.array_equal(x_train[0], x_train[10])


def test_sample_file_is_small_and_pickle_free():
    path = Path(transferkit.__file__).parent / "data" / "cifar10_sample.npz"
    assert path.stat().st_size < 3_000_000
    with np.load(path, allow_pickle=False) as npz:
        assert "Krizhevsky" in str(npz["description"])
        assert "JPEG" in str(npz["description"])
        assert npz["offsets"][-1] == npz["jpeg_bytes"].size


def test_or_sample_falls_back_only_without_path(tmp_path, sample):
    train, test, source = load_cifar10_or_sample(download=False)
    assert "bundled CIFAR-10 sample" in source
    np.testing.assert_array_equal(train[0], sample[0][0])
    np.testing.assert_array_equal(test[1], sample[1][1])
    with pytest.raises(DatasetNotFoundError, match="`path`"):
        load_cifar10_or_sample(tmp_path / "missing")
    fake = _fake_cifar()
    archive = _write_official_archive(tmp_path / "cifar-10-python.tar.gz", fake)
    train, test, source = load_cifar10_or_sample(archive)
    _assert_matches((train, test), fake)
    assert str(archive) in source


def test_balanced_subset():
    y = np.array([2, 0, 0, 1, 0, 2, 0, 1, 0])
    x = np.arange(len(y)) * 10
    xs, ys = balanced_subset(x, y, 5)
    np.testing.assert_array_equal(xs, [0, 10, 20, 30, 70])  # round robin, original order
    np.testing.assert_array_equal(ys, [2, 0, 0, 1, 1])
    assert balanced_subset(x, y, None)[0] is x
    assert len(balanced_subset(x, y, 100)[0]) == 9
    xs, ys = balanced_subset(x, y, 8)  # class 1 and 2 run out; class 0 fills in
    assert np.bincount(ys).tolist() == [4, 2, 2]
    with pytest.raises(InvalidInputError, match="same length"):
        balanced_subset(x[:3], y, 2)
    with pytest.raises(InvalidInputError, match="`n` must be a positive integer"):
        balanced_subset(x, y, 0)
    with pytest.raises(InvalidInputError, match="`y` must be a 1-D array of integer labels"):
        balanced_subset(x, y.astype(float), 2)


# --------------------------------------------------------------------------------------
# load_image_folder
# --------------------------------------------------------------------------------------


def test_image_folder_classes_sorted_and_files_ordered(tmp_path):
    content = _make_folder(tmp_path / "ds")
    (tmp_path / "ds" / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "ds" / "dog" / ".hidden.png").write_bytes(b"junk")
    ds = load_image_folder(tmp_path / "ds", image_size=None)
    assert isinstance(ds, ImageFolderDataset)
    assert ds.class_names == ["bird", "cat", "dog"]
    assert len(ds) == 9 and ds.shape == (9, 12, 10, 3) and ds.dtype == np.uint8
    assert ds.labels.dtype == np.int64
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2]
    assert [f.name for f in ds.files[:4]] == [f"img_{i:02d}.png" for i in range(4)]
    x, y = ds.load()
    expected = np.stack(content["bird"] + content["cat"] + content["dog"])
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(y, ds.labels)


def test_image_folder_explicit_classes(tmp_path):
    _make_folder(tmp_path / "ds")
    ds = load_image_folder(tmp_path / "ds", classes=["dog", "bird", "cat"], image_size=8)
    assert ds.class_names == ["dog", "bird", "cat"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    with pytest.raises(InvalidInputError, match=r"`classes` .*no folder for \['cow'\]"):
        load_image_folder(tmp_path / "ds", classes=["dog", "bird", "cat", "cow"])
    with pytest.raises(InvalidInputError, match=r"`classes` .*not listed: \['cat'\]"):
        load_image_folder(tmp_path / "ds", classes=["dog", "bird"])
    with pytest.raises(InvalidTypeError, match="`classes` must be a sequence"):
        load_image_folder(tmp_path / "ds", classes="dog")


def test_image_folder_resize_and_color_modes(tmp_path):
    root = tmp_path / "ds"
    rng = np.random.default_rng(1)
    _save(root / "a" / "gray.png", rng.integers(0, 256, (40, 20), dtype=np.uint8))
    _save(root / "a" / "rgba.png", rng.integers(0, 256, (30, 30, 4), dtype=np.uint8))
    _save(root / "b" / "palette.gif", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "P")
    _save(root / "b" / "photo.JPG", rng.integers(0, 256, (24, 48, 3), dtype=np.uint8))
    _save(root / "b" / "z16.png", np.full((10, 20), 0x8000, dtype=np.uint16))
    ds = load_image_folder(root, image_size=(10, 20))  # (height, width)
    x, y = ds.load()
    assert x.shape == (5, 10, 20, 3) and x.dtype == np.uint8 and ds.shape == (5, 10, 20, 3)
    assert (x[4] == 0x80).all()  # 16-bit grayscale scaled, not clipped to white
    gray = x[0]
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 1], gray[..., 2])
    assert load_image_folder(root, image_size=7).load()[0].shape == (5, 7, 7, 3)
    nearest = load_image_folder(root, image_size=(10, 20), interpolation="nearest").load()[0]
    assert not np.array_equal(nearest, x)


def test_image_folder_without_resize_needs_one_size(tmp_path):
    root = tmp_path / "ds"
    _save(root / "a" / "0.png", np.zeros((8, 8, 3), np.uint8))
    _save(root / "a" / "1.png", np.zeros((9, 8, 3), np.uint8))
    ds = load_image_folder(root, image_size=None)
    with pytest.raises(InvalidInputError, match=r"same size.*1\.png.*9x8.*image_size"):
        ds.load()


def test_image_folder_corrupt_file_is_named(tmp_path):
    _make_folder(tmp_path / "ds")
    bad = tmp_path / "ds" / "cat" / "img_01.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = load_image_folder(tmp_path / "ds", image_size=8)
    with pytest.raises(ImageReadError, match=r"img_01\.png"):
        ds.load()
    ds[:4]  # images before the corrupt one still read


def test_image_folder_structure_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"`root` .*does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=r"`root` .*no class subfolders"):
        load_image_folder(tmp_path / "empty")
    _save(tmp_path / "flat" / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InvalidInputError, match=r"1 image files directly"):
        load_image_folder(tmp_path / "flat")
    _make_folder(tmp_path / "ds")
    (tmp_path / "ds" / "empty_class").mkdir()
    (tmp_path / "ds" / "empty_class" / "readme.txt").write_text("x")
    with pytest.raises(InvalidInputError, match=r"empty_class.* holds no image files"):
        load_image_folder(tmp_path / "ds")
    with pytest.raises(InvalidInputError, match=r"`root` .* is a file"):
        load_image_folder(tmp_path / "flat" / "a.png")


def test_image_folder_argument_errors(tmp_path):
    _make_folder(tmp_path / "ds")
    with pytest.raises(InvalidTypeError, match="`image_size`"):
        load_image_folder(tmp_path / "ds", image_size="big")
    with pytest.raises(InvalidInputError, match=r"`image_size\[0\] \(height\)`"):
        load_image_folder(tmp_path / "ds", image_size=(0, 5))
    with pytest.raises(InvalidInputError, match="`interpolation` must be one of"):
        load_image_folder(tmp_path / "ds", interpolation="cubic-ish")
    with pytest.raises(InvalidInputError, match="`batch_size`"):
        load_image_folder(tmp_path / "ds", batch_size=0)
    ds = load_image_folder(tmp_path / "ds", image_size=8, extensions="png")
    assert len(ds) == 9
    with pytest.raises(InvalidInputError, match="holds no image files with extensions"):
        load_image_folder(tmp_path / "ds", extensions=[".jpg"])


needs_symlinks = pytest.mark.skipif(
    not hasattr(os, "symlink") or sys.platform == "win32", reason="needs POSIX symlinks"
)


@needs_symlinks
def test_image_folder_follows_symlinked_folders(tmp_path):
    """Files may sit deeper than root/<class>/, also behind a symlinked folder."""
    content = _make_folder(tmp_path / "ds")
    extra = tmp_path / "elsewhere" / "more_birds"
    rng = np.random.default_rng(5)
    deep = [rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8) for _ in range(2)]
    for i, image in enumerate(deep):
        _save(extra / "nested" / f"deep_{i}.png", image)
    os.symlink(extra, tmp_path / "ds" / "bird" / "linked")
    ds = load_image_folder(tmp_path / "ds", image_size=None)
    assert ds.labels.tolist() == [0] * 6 + [1] * 2 + [2] * 3
    relative = [f.relative_to(tmp_path / "ds").as_posix() for f in ds.files[:6]]
    assert relative == [f"bird/img_{i:02d}.png" for i in range(4)] + [
        "bird/linked/nested/deep_0.png", "bird/linked/nested/deep_1.png"]
    x, _ = ds.load()
    np.testing.assert_array_equal(x[:6], np.stack(content["bird"] + deep))


@needs_symlinks
def test_image_folder_symlink_loops_end_and_count_once(tmp_path):
    """A loop is walked once (no hang, no duplicates) and a warning names the link."""
    _make_folder(tmp_path / "ds")
    os.symlink(tmp_path / "ds" / "dog", tmp_path / "ds" / "dog" / "again")  # dog/again -> dog
    (tmp_path / "ds" / "cat" / "sub").mkdir()
    _save(tmp_path / "ds" / "cat" / "sub" / "x.png", np.zeros((12, 10, 3), np.uint8))
    os.symlink(tmp_path / "ds" / "cat", tmp_path / "ds" / "cat" / "sub" / "up")  # -> ancestor
    os.symlink(tmp_path / "ds" / "cat" / "sub", tmp_path / "ds" / "cat" / "twin")  # same folder
    with pytest.warns(UserWarning) as record:
        ds = load_image_folder(tmp_path / "ds", image_size=None)
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 3, messages
    assert any("dog/again" in m and "symlink loop" in m for m in messages), messages
    assert any("sub/up" in m and "symlink loop" in m for m in messages), messages
    assert any("cat/twin" in m and "already listed" in m for m in messages), messages
    names = [f.relative_to(tmp_path / "ds").as_posix() for f in ds.files]
    assert len(names) == len(set(names)) == 10
    assert "cat/sub/x.png" in names and not any("twin" in n or "again" in n for n in names)
    assert ds.labels.tolist() == [0] * 4 + [1] * 3 + [2] * 3


def test_image_folder_refuses_sizes_beyond_memory(tmp_path, monkeypatch):
    """A size whose decoded images exceed the machine's memory is refused before allocating."""
    _make_folder(tmp_path / "ds")
    try:
        limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        limit = 0
    if not 0 < limit < 3 * 10**12:
        pytest.skip("the machine's memory is unknown, or holds 3 TB")
    # 10**6 x 10**6 pixels: 3 TB an image. Before, Pillow or NumPy failed trying.
    with pytest.raises(InvalidInputError, match=r"`image_size` \(1000000, 1000000\) needs "
                                                r"3\.0 TB.*one image.*than the"):
        load_image_folder(tmp_path / "ds", image_size=10**6)
    with monkeypatch.context() as patch:  # a machine with 1 MB of memory
        patch.setattr(image_folder_module, "memory_limit_bytes", lambda: 10**6)
        with pytest.raises(InvalidInputError, match=r"`image_size` \(1000, 1000\) needs "
                                                    r"3\.0 MB.*one image.*1\.0 MB"):
            load_image_folder(tmp_path / "ds", image_size=1000)
        ds = load_image_folder(tmp_path / "ds", image_size=300)  # 270 kB an image: fits
        assert ds[0].shape == (300, 300, 3)
        with pytest.raises(InvalidInputError, match=r"`image_size`.*9 images.*iter_batches"):
            ds.load()
        assert sum(len(b) for b in ds.iter_batches(batch_size=3)) == 9


def test_iter_batches_matches_load(tmp_path):
    _make_folder(tmp_path / "ds")
    ds = load_image_folder(tmp_path / "ds", image_size=(6, 5), batch_size=4)
    x, _ = ds.load()
    batches = list(ds.iter_batches())
    assert [len(b) for b in batches] == [4, 4, 1]
    np.testing.assert_array_equal(np.concatenate(batches), x)
    resumed = list(ds.iter_batches(batch_size=2, start=5))
    assert [len(b) for b in resumed] == [2, 2]
    np.testing.assert_array_equal(np.concatenate(resumed), x[5:])
    assert list(ds.iter_batches(start=9)) == []
    with pytest.raises(InvalidInputError, match=r"`start` must be in 0\.\.9"):
        ds.iter_batches(start=10)
    with pytest.raises(InvalidInputError, match="`batch_size`"):
        ds.iter_batches(batch_size=-1)


def test_indexing_and_array_protocol(tmp_path):
    _make_folder(tmp_path / "ds")
    ds = load_image_folder(tmp_path / "ds", image_size=6)
    x, _ = ds.load()
    np.testing.assert_array_equal(ds[2], x[2])
    np.testing.assert_array_equal(ds[-1], x[-1])
    np.testing.assert_array_equal(ds[1:7:2], x[1:7:2])
    np.testing.assert_array_equal(ds[[0, 8, 3]], x[[0, 8, 3]])
    np.testing.assert_array_equal(ds[np.arange(9) % 2 == 0], x[::2])
    np.testing.assert_array_equal(np.asarray(ds), x)
    with pytest.raises(IndexError, match="out of range"):
        ds[9]
    with pytest.raises(InvalidInputError, match="out of range"):
        ds[[0, -10]]
    with pytest.raises(InvalidTypeError, match="index must be"):
        ds["a"]
    assert "ImageFolderDataset(" in repr(ds)


def test_fingerprint_stable_and_sensitive(tmp_path):
    content = _make_folder(tmp_path / "ds")
    first = load_image_folder(tmp_path / "ds", image_size=8).fingerprint()
    ds = load_image_folder(tmp_path / "ds", image_size=8)
    assert ds.fingerprint() == ds.fingerprint() == first
    assert len(first) == 64 and int(first, 16) >= 0
    shutil.copytree(tmp_path / "ds", tmp_path / "moved")
    assert load_image_folder(tmp_path / "moved", image_size=8).fingerprint() == first
    assert load_image_folder(tmp_path / "ds", image_size=9).fingerprint() != first
    bilinear = load_image_folder(tmp_path / "ds", image_size=8, interpolation="nearest")
    assert bilinear.fingerprint() != first
    changed = content["cat"][1].copy()
    changed[0, 0, 0] ^= 1  # one pixel, one bit
    _save(tmp_path / "ds" / "cat" / "img_01.png", changed)
    assert load_image_folder(tmp_path / "ds", image_size=8).fingerprint() != first
    assert ds.fingerprint() != first  # the same object notices the edit
    (tmp_path / "moved" / "cat" / "img_01.png").rename(tmp_path / "moved" / "cat" / "img_99.png")
    assert load_image_folder(tmp_path / "moved", image_size=8).fingerprint() != first


def test_import_is_light():
    code = (
        "import sys, transferkit.datasets; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'PIL') if m in sys.modules))"
    )
    repo = Path(transferkit.__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo
    )
    assert out.stdout.strip() == "[]"


def test_fingerprint_is_pinned(tmp_path):
    """The fingerprint is a stored format: the feature cache keys on it, so it must not drift.

    The files are raw PPMs written byte by byte (no encoder involved); the digests are
    those of transferkit 0.1.0. A deliberate change bumps the fingerprint version.
    """
    for label, name in enumerate(("b", "a")):
        for i in range(2):
            pixels = bytes((label * 50 + i * 7 + k) % 256 for k in range(2 * 3 * 3))
            path = tmp_path / "ds" / name / f"{i}.ppm"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"P6\n3 2\n255\n" + pixels)
    resized = load_image_folder(tmp_path / "ds", image_size=(4, 5), interpolation="nearest")
    assert resized.fingerprint() == (
        "32f7884924d3644066e767fa268b56d79eef4d0b05c281315afbda272b43e173"
    )
    native = load_image_folder(tmp_path / "ds", image_size=None)
    assert native.fingerprint() == (
        "17bf69287968372837762bb2c64b0c7459ef820cd364be342246db35dc5b9e4c"
    )


# --------------------------------------------------------------------------------------
# Image files (transferkit.datasets.images, also used by `transferkit predict`)
# --------------------------------------------------------------------------------------


def test_expand_image_paths_globs_folders_and_files(tmp_path):
    _make_folder(tmp_path / "ds")
    (tmp_path / "ds" / "dog" / "notes.txt").write_text("not an image")
    one = tmp_path / "ds" / "cat" / "img_00.png"
    files = expand_image_paths([str(one), str(tmp_path / "ds" / "cat"),
                                str(tmp_path / "ds" / "d*" / "*.png")])
    assert files == [one, tmp_path / "ds" / "cat" / "img_01.png"] + [
        tmp_path / "ds" / "dog" / f"img_{i:02d}.png" for i in range(3)]  # each file once
    everything = expand_image_paths([str(tmp_path / "ds")])
    assert len(everything) == 9 and everything == sorted(everything)
    with pytest.raises(InvalidInputError, match=r"No image files match '.*\*\.gif'"):
        expand_image_paths([str(tmp_path / "ds" / "*.gif")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=r"The folder '.*empty' holds no image files"):
        expand_image_paths([str(tmp_path / "empty")])
    with pytest.raises(InvalidInputError, match=r"The image file '.*nope\.png' does not exist"):
        expand_image_paths([str(tmp_path / "nope.png")])


def test_read_images_decodes_like_the_image_folder(tmp_path):
    """`transferkit predict` and load_image_folder give a file the same pixels."""
    _make_folder(tmp_path / "ds")
    _save(tmp_path / "ds" / "cat" / "gray.png", np.arange(120, dtype=np.uint8).reshape(12, 10))
    ds = load_image_folder(tmp_path / "ds", image_size=(7, 5))
    np.testing.assert_array_equal(read_images(ds.files, (7, 5)), ds.load()[0])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="broken.png"):
        read_images([tmp_path / "broken.png"], (7, 5))


def test_read_image_size_follows_the_exif_orientation(tmp_path):
    image = Image.fromarray(np.zeros((30, 20, 3), np.uint8))  # 30 high, 20 wide
    exif = image.getexif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    image.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert read_image_size(tmp_path / "r.jpg") == (20, 30)
    (tmp_path / "x" / "c").mkdir(parents=True)
    shutil.copy(tmp_path / "r.jpg", tmp_path / "x" / "c" / "r.jpg")
    ds = load_image_folder(tmp_path / "x", image_size=None)
    assert ds.shape == (1, 20, 30, 3) and ds[0].shape == (20, 30, 3)


def test_public_api() -> None:
    # (No other module reaching into datasets' private names: tests/test_architecture.py.)
    assert sorted(datasets.__all__) == [
        "CIFAR10_CLASSES", "CIFAR10_URL", "DATA_DIR_ENV", "HFImageDataset", "IMAGE_EXTENSIONS",
        "INTERPOLATIONS", "ImageFolderDataset", "ImageListDataset", "ImageStream",
        "KerasDataSource", "as_image_source", "balanced_subset", "from_hf_dataset",
        "from_keras_data", "get_data_dir", "load_cifar10", "load_cifar10_or_sample",
        "load_cifar10_sample", "load_image_folder", "load_image_list",
    ]
    assert all(hasattr(datasets, name) for name in datasets.__all__)
    assert issubclass(datasets._RefusedGlobalError, pickle.UnpicklingError)
    from transferkit.cache import ImageStream

    assert ImageStream is datasets.ImageStream  # the cache's public path stays
