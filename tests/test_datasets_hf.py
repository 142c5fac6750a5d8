"""Tests for transferkit.datasets.hf: Hugging Face ``datasets.Dataset`` as an image source."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

datasets = pytest.importorskip("datasets")

import transferkit  # noqa: E402
from transferkit._hashing import hash_images  # noqa: E402
from transferkit.datasets import load_image_folder  # noqa: E402
from transferkit.datasets.hf import HFImageDataset, from_hf_dataset  # noqa: E402
from transferkit.datasets.images import read_image, resample_filter  # noqa: E402
from transferkit.exceptions import (  # noqa: E402
    ImageReadError,
    InvalidInputError,
    InvalidTypeError,
    MissingDependencyError,
)

NAMES = ["cat", "dog", "emu"]


# --------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def offline_hf(monkeypatch, tmp_path):
    """Keep `datasets` offline and its caches inside tmp_path."""
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # `datasets` reads these at import time: patch the values it already holds too.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets", raising=False)


def _arrays(n: int, size: tuple[int, int] = (16, 16), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def _png(image: np.ndarray | Image.Image, **save: object) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=save.pop("format", "PNG"), **save)
    return buffer.getvalue()


def _features(names: list[str] | None = NAMES) -> datasets.Features:
    label = datasets.ClassLabel(names=names) if names else datasets.Value("int64")
    return datasets.Features({"image": datasets.Image(), "label": label})


def _bytes_dataset(
    encoded: list[bytes], labels: list[int], names: list[str] | None = NAMES
) -> datasets.Dataset:
    """A dataset whose image column holds exactly ``encoded`` (no re-encoding)."""
    rows = {"image": [{"bytes": b, "path": None} for b in encoded], "label": labels}
    return datasets.Dataset.from_dict(rows, features=_features(names))


def _pil_dataset(arrays: list[np.ndarray], labels: list[int]) -> datasets.Dataset:
    images = [Image.fromarray(a) for a in arrays]
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=_features())


def _image_folder(root: Path, per_class: int = 2) -> dict[str, list[np.ndarray]]:
    content = {}
    for c, name in enumerate(("cat", "dog")):
        content[name] = _arrays(per_class, (12, 10), seed=c)
        for i, pixels in enumerate(content[name]):
            path = root / name / f"img_{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
    return content


def _load_imagefolder(data_dir: Path, cache_dir: Path) -> datasets.Dataset:
    return datasets.load_dataset(
        "imagefolder", data_dir=str(data_dir), split="train", cache_dir=str(cache_dir)
    )


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def test_from_dict_with_pil_images_and_class_label():
    arrays = _arrays(5)
    labels = [2, 0, 1, 1, 0]
    ds = from_hf_dataset(_pil_dataset(arrays, labels))
    assert isinstance(ds, HFImageDataset)
    assert len(ds) == 5 and ds.shape == (5, 16, 16, 3) and ds.ndim == 4
    assert ds.dtype == np.uint8
    assert ds.image_column == "image" and ds.label_column == "label"
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == labels
    assert ds.class_names == NAMES
    x, y = ds.load()
    np.testing.assert_array_equal(x, np.stack(arrays))  # PNG is lossless
    assert y.dtype == np.int64 and y.tolist() == labels
    np.testing.assert_array_equal(np.asarray(ds), x)
    np.testing.assert_array_equal(ds[3], x[3])
    np.testing.assert_array_equal(ds[-1], x[-1])
    np.testing.assert_array_equal(ds[1:5:2], x[1:5:2])
    np.testing.assert_array_equal(ds[[4, 0, 2]], x[[4, 0, 2]])
    np.testing.assert_array_equal(ds[np.arange(5) % 2 == 0], x[::2])
    assert ds[2:2].shape == (0, 16, 16, 3)
    with pytest.raises(IndexError, match="index 5 is out of range"):
        ds[5]
    with pytest.raises(InvalidInputError, match="index -6 is out of range"):
        ds[[0, -6]]
    with pytest.raises(InvalidTypeError, match="index must be.*received 'a'"):
        ds["a"]
    assert "HFImageDataset(n=5" in repr(ds)


def test_imagefolder_dataset_loads_offline_and_decodes_like_the_image_folder(tmp_path):
    _image_folder(tmp_path / "data")
    hf = _load_imagefolder(tmp_path / "data", tmp_path / "cache")
    assert hf[0]["image"] is not None  # loaded without any network access
    entries = hf.cast_column("image", datasets.Image(decode=False))["image"]
    assert all(e["bytes"] is None and e["path"] for e in entries)  # rows are file paths
    ds = from_hf_dataset(hf)
    folder = load_image_folder(tmp_path / "data", image_size=None)
    assert ds.class_names == folder.class_names == ["cat", "dog"]
    hf_order = [Path(e["path"]).relative_to(tmp_path / "data").as_posix() for e in entries]
    folder_order = [f.relative_to(tmp_path / "data").as_posix() for f in folder.files]
    position = [folder_order.index(p) for p in hf_order]
    x, y = ds.load()
    fx, fy = folder.load()
    np.testing.assert_array_equal(x, fx[position])
    np.testing.assert_array_equal(y, fy[position])
    resized = from_hf_dataset(hf, image_size=(7, 5), interpolation="bicubic")
    folder7 = load_image_folder(tmp_path / "data", image_size=(7, 5), interpolation="bicubic")
    np.testing.assert_array_equal(resized.load()[0], folder7.load()[0][position])


def test_pixels_equal_read_image_for_every_colour_mode(tmp_path):
    rng = np.random.default_rng(3)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: displayed 10 wide, 16 high
    palette = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).convert("P")
    images = {
        "rgb.png": _png(rng.integers(0, 256, (9, 14, 3), dtype=np.uint8)),
        "gray.png": _png(rng.integers(0, 256, (20, 8), dtype=np.uint8)),
        "rgba.png": _png(rng.integers(0, 256, (11, 11, 4), dtype=np.uint8)),
        "palette.png": _png(palette, transparency=0),
        "gray16.png": _png(Image.fromarray(np.full((8, 8), 0x8123, dtype=np.uint16))),
        "exif.png": _png(rng.integers(0, 256, (10, 16, 3), dtype=np.uint8), exif=exif),
        "photo.jpg": _png(rng.integers(0, 256, (13, 17, 3), dtype=np.uint8), format="JPEG"),
    }
    for name, data in images.items():
        (tmp_path / name).write_bytes(data)
    hf = _bytes_dataset(list(images.values()), [0] * len(images))
    for size, interpolation in (((12, 10), "bilinear"), ((9, 9), "lanczos")):
        ds = from_hf_dataset(hf, image_size=size, interpolation=interpolation)
        x = ds.load()[0]
        assert x.shape == (len(images), *size, 3)
        for k, name in enumerate(images):
            expected = read_image(tmp_path / name, size, resample_filter(interpolation))
            np.testing.assert_array_equal(x[k], expected, err_msg=name)
    assert (from_hf_dataset(hf, image_size=8)[4] == 0x81).all()  # 16-bit keeps the high bits
    native = from_hf_dataset(_bytes_dataset([images["exif.png"]], [0]))
    assert native.shape == (1, 16, 10, 3)  # the EXIF orientation is applied


def test_image_size_resizes_and_interpolation_matters():
    arrays = _arrays(3, (20, 30))
    hf = _pil_dataset(arrays, [0, 1, 2])
    ds = from_hf_dataset(hf, image_size=8)
    assert ds.shape == (3, 8, 8, 3)
    x = ds.load()[0]
    expected = np.asarray(Image.fromarray(arrays[1]).resize((8, 8), resample_filter("bilinear")))
    np.testing.assert_array_equal(x[1], expected)
    tall = from_hf_dataset(hf, image_size=(10, 6))
    assert tall.shape == (3, 10, 6, 3) and tall[0].shape == (10, 6, 3)
    nearest = from_hf_dataset(hf, image_size=8, interpolation="NEAREST").load()[0]
    assert not np.array_equal(nearest, x)
    same = from_hf_dataset(hf, image_size=(20, 30)).load()[0]  # already that size: kept
    np.testing.assert_array_equal(same, np.stack(arrays))


def test_without_image_size_every_image_needs_the_first_ones_size():
    arrays = _arrays(2, (8, 8)) + _arrays(1, (9, 8))
    ds = from_hf_dataset(_pil_dataset(arrays, [0, 0, 1]))
    assert ds.shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(ds[:2], np.stack(arrays[:2]))
    with pytest.raises(InvalidInputError, match=r"row 2 is 9x8.*row 0 is 8x8.*`image_size="):
        ds.load()
    assert from_hf_dataset(_pil_dataset(arrays, [0, 0, 1]), image_size=8).load()[0].shape == (
        3, 8, 8, 3
    )


def test_selection_order_format_and_transform_follow_the_dataset():
    arrays = _arrays(6)
    hf = _pil_dataset(arrays, [0, 1, 2, 0, 1, 2])
    picked = from_hf_dataset(hf.select([4, 1, 5]))
    np.testing.assert_array_equal(picked.load()[0], np.stack([arrays[4], arrays[1], arrays[5]]))
    assert picked.labels.tolist() == [1, 1, 2]
    shuffled = hf.shuffle(seed=1)
    order = shuffled["label"]
    assert from_hf_dataset(shuffled).labels.tolist() == list(order)
    formatted = hf.with_format("numpy")
    formatted.set_transform(lambda batch: {"image": ["not an image"] * len(batch["image"])})
    np.testing.assert_array_equal(from_hf_dataset(formatted).load()[0], np.stack(arrays))
    extra = hf.add_column("caption", [f"c{i}" for i in range(6)]).rename_column("image", "img")
    renamed = from_hf_dataset(extra)
    assert renamed.image_column == "img"
    np.testing.assert_array_equal(renamed.load()[0], np.stack(arrays))


def test_labels_auto_explicit_and_none():
    arrays = _arrays(3, (8, 8))
    images = [Image.fromarray(a) for a in arrays]
    plain = datasets.Dataset.from_dict({"image": images, "label": [5, 7, 9]})
    ds = from_hf_dataset(plain)  # an integer column named "label"
    assert ds.label_column == "label" and ds.labels.tolist() == [5, 7, 9]
    assert ds.labels.dtype == np.int64 and ds.class_names is None
    plural = datasets.Dataset.from_dict({"image": images, "labels": [1, 2, 3]})
    assert from_hf_dataset(plural).labels.tolist() == [1, 2, 3]
    named = plain.add_column("kind", [1, 0, 1]).cast_column(
        "kind", datasets.ClassLabel(names=["x", "y"])
    )
    auto = from_hf_dataset(named)  # the single ClassLabel wins over "label"
    assert auto.label_column == "kind" and auto.class_names == ["x", "y"]
    assert auto.labels.tolist() == [1, 0, 1]
    explicit = from_hf_dataset(named, label_column="label")
    assert explicit.labels.tolist() == [5, 7, 9] and explicit.class_names is None
    none = from_hf_dataset(named, label_column=None)
    assert none.labels is None and none.class_names is None and none.label_column is None
    assert none.load()[1] is None
    unlabeled = datasets.Dataset.from_dict({"image": images, "note": ["a", "b", "c"]})
    assert from_hf_dataset(unlabeled).labels is None
    two = named.add_column("other", [0, 0, 1]).cast_column(
        "other", datasets.ClassLabel(names=["p", "q"])
    ).remove_columns("label")
    with pytest.warns(UserWarning, match=r"several ClassLabel columns \['kind', 'other'\]"):
        assert from_hf_dataset(two).labels is None
    assert from_hf_dataset(two, label_column="other").class_names == ["p", "q"]


# --------------------------------------------------------------------------------------
# Streaming, pickling, memory
# --------------------------------------------------------------------------------------


def test_iter_batches_with_start():
    hf = _pil_dataset(_arrays(7, (8, 8)), [0, 1, 2, 0, 1, 2, 0])
    ds = from_hf_dataset(hf, batch_size=3)
    x = ds.load()[0]
    batches = list(ds.iter_batches())
    assert [len(b) for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(batches), x)
    resumed = list(ds.iter_batches(2, start=4))
    assert [len(b) for b in resumed] == [2, 1]
    np.testing.assert_array_equal(np.concatenate(resumed), x[4:])
    assert list(ds.iter_batches(start=7)) == []
    with pytest.raises(InvalidInputError, match=r"`start` must be in 0\.\.7.*received 8"):
        ds.iter_batches(start=8)
    with pytest.raises(InvalidTypeError, match=r"`start` must be an int.*received 1\.5"):
        ds.iter_batches(start=1.5)
    with pytest.raises(InvalidInputError, match="`batch_size`.*received 0"):
        ds.iter_batches(batch_size=0)


def test_iter_batches_from_the_middle_reads_only_that_range(monkeypatch):
    hf = _pil_dataset(_arrays(6, (8, 8)), [0] * 6)
    ds = from_hf_dataset(hf, image_size=8)
    decoded = []
    original = HFImageDataset._decode

    def spy(self, entry, row):
        decoded.append(row)
        return original(self, entry, row)

    monkeypatch.setattr(HFImageDataset, "_decode", spy)
    batches = ds.iter_batches(2, start=4)
    next(batches)
    assert decoded == [4, 5]


def test_pickle_round_trip(tmp_path):
    arrays = _arrays(4, (8, 8))
    hf = _pil_dataset(arrays, [0, 1, 2, 1])
    hf.save_to_disk(str(tmp_path / "saved"))
    for source in (hf, datasets.load_from_disk(str(tmp_path / "saved"))):
        ds = from_hf_dataset(source, image_size=6)
        back = pickle.loads(pickle.dumps(ds))
        assert isinstance(back, HFImageDataset) and back.shape == ds.shape
        np.testing.assert_array_equal(back.load()[0], ds.load()[0])
        assert back.labels.tolist() == [0, 1, 2, 1] and back.class_names == NAMES
        assert back.fingerprint() == ds.fingerprint()
    shard = copy.copy(ds)  # as a distributed extraction ships a stream: labels dropped
    shard.labels = None
    np.testing.assert_array_equal(next(shard.iter_batches(2, start=2)), ds[2:4])


def test_reading_everything_checks_memory(monkeypatch):
    hf = _pil_dataset(_arrays(4, (8, 8)), [0] * 4)
    ds = from_hf_dataset(hf, image_size=100)  # 30 kB an image
    from transferkit.datasets import image_folder

    monkeypatch.setattr(image_folder, "memory_limit_bytes", lambda: 100_000)
    assert ds[0].shape == (100, 100, 3)
    with pytest.raises(InvalidInputError, match=r"4 images.*iter_batches"):
        np.asarray(ds)
    with pytest.raises(InvalidInputError, match=r"4 images"):
        ds.load()
    assert sum(len(b) for b in ds.iter_batches(batch_size=2)) == 4
    with pytest.raises(InvalidInputError, match=r"`image_size` \(1000, 1000\).*one image"):
        from_hf_dataset(hf, image_size=1000)


# --------------------------------------------------------------------------------------
# Fingerprint
# --------------------------------------------------------------------------------------


def test_fingerprint_stable_across_calls_and_save_to_disk(tmp_path):
    hf = _pil_dataset(_arrays(4), [0, 1, 2, 1])
    ds = from_hf_dataset(hf, image_size=8)
    first = ds.fingerprint()
    assert len(first) == 64 and int(first, 16) >= 0
    assert ds.fingerprint() == first
    assert from_hf_dataset(hf, image_size=8).fingerprint() == first
    assert hash_images(ds) == first  # what the feature cache keys on
    hf.save_to_disk(str(tmp_path / "saved"))
    reloaded = datasets.load_from_disk(str(tmp_path / "saved"))
    assert from_hf_dataset(reloaded, image_size=8).fingerprint() == first
    renamed = hf.rename_column("image", "picture").add_column("id", list("abcd"))
    assert from_hf_dataset(renamed, image_size=8).fingerprint() == first


def test_fingerprint_same_for_path_rows_and_embedded_bytes(tmp_path):
    _image_folder(tmp_path / "data")
    hf = _load_imagefolder(tmp_path / "data", tmp_path / "cache")
    first = from_hf_dataset(hf).fingerprint()
    hf.save_to_disk(str(tmp_path / "saved"))
    reloaded = datasets.load_from_disk(str(tmp_path / "saved"))
    embedded = reloaded.cast_column("image", datasets.Image(decode=False))["image"]
    assert all(e["bytes"] for e in embedded)  # save_to_disk stored the bytes
    assert from_hf_dataset(reloaded).fingerprint() == first


def test_fingerprint_changes_with_content_and_settings():
    arrays = _arrays(4)
    labels = [0, 1, 2, 1]
    first = from_hf_dataset(_pil_dataset(arrays, labels)).fingerprint()
    changed = [a.copy() for a in arrays]
    changed[2][5, 5, 1] ^= 1  # one bit of one pixel
    assert from_hf_dataset(_pil_dataset(changed, labels)).fingerprint() != first
    assert from_hf_dataset(_pil_dataset(arrays, [0, 1, 2, 2])).fingerprint() != first
    hf = _pil_dataset(arrays, labels)
    assert from_hf_dataset(hf.select([1, 0, 2, 3])).fingerprint() != first
    assert from_hf_dataset(hf.select([0, 1, 2])).fingerprint() != first
    assert from_hf_dataset(hf, label_column=None).fingerprint() != first
    other_names = hf.cast_column("label", datasets.ClassLabel(names=["a", "b", "c"]))
    assert from_hf_dataset(other_names).fingerprint() != first
    assert from_hf_dataset(hf, image_size=16).fingerprint() != first
    sized = from_hf_dataset(hf, image_size=16).fingerprint()
    assert from_hf_dataset(hf, image_size=16, interpolation="nearest").fingerprint() != sized


def test_fingerprint_follows_the_documented_format():
    """BLAKE2b-256 of the JSON header, then per row: length + bytes, signed label."""
    encoded = [_png(a) for a in _arrays(3, (8, 8))]
    labels = [2, 1, 0]
    ds = from_hf_dataset(_bytes_dataset(encoded, labels), image_size=(4, 5))
    header = {
        "format": "transferkit.HFImageDataset", "version": 1,
        "decode": "pillow:exif_transpose:rgb", "image_size": [4, 5],
        "interpolation": "bilinear", "n": 3, "class_names": NAMES, "labels": True,
    }
    digest = hashlib.blake2b(digest_size=32)
    digest.update(json.dumps(header, sort_keys=True).encode() + b"\0")
    for data, label in zip(encoded, labels, strict=True):
        digest.update(len(data).to_bytes(8, "little") + data)
        digest.update(label.to_bytes(8, "little", signed=True))
    assert ds.fingerprint() == digest.hexdigest()


def test_fingerprint_is_pinned():
    """The fingerprint is a stored format (the feature cache keys on it): it must not drift.

    The images are raw PPMs written byte by byte (no encoder involved); a deliberate
    change bumps the fingerprint version.
    """
    encoded = [
        b"P6\n3 2\n255\n" + bytes((i * 7 + k) % 256 for k in range(18)) for i in range(3)
    ]
    hf = _bytes_dataset(encoded, [1, 0, 2])
    resized = from_hf_dataset(hf, image_size=(4, 5), interpolation="nearest")
    assert resized.fingerprint() == (
        "07f47a45046950e7c8279808977f23b1e8bfbacd2e6b74321409a5bc644dfcb6"
    )
    unlabeled = from_hf_dataset(hf, label_column=None)
    assert unlabeled.shape == (3, 2, 3, 3)
    assert unlabeled.fingerprint() == (
        "438975ec08a67cd5b5e7a91ebf274b563e2bc9bd4963155985a679ba3dc31bf4"
    )


def test_fingerprint_reads_bytes_without_decoding_and_is_kept():
    encoded = [_png(a) for a in _arrays(2, (8, 8))] + [b"not an image at all"]
    ds = from_hf_dataset(_bytes_dataset(encoded, [0, 1, 2]), image_size=8)
    first = ds.fingerprint()  # the corrupt row is hashed, never decoded
    with pytest.raises(ImageReadError, match=r"row 2 of column 'image'"):
        ds.load()

    class Unreadable:
        def __len__(self):
            return 3

        def __getitem__(self, key):
            raise AssertionError("the fingerprint was computed again")

    ds._source = Unreadable()
    assert ds.fingerprint() == first


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def test_unreadable_rows_are_named(tmp_path):
    _image_folder(tmp_path / "data")
    hf = _load_imagefolder(tmp_path / "data", tmp_path / "cache")
    ds = from_hf_dataset(hf)
    assert ds.shape == (4, 12, 10, 3)  # the first image's size, read before the file goes
    gone = tmp_path / "data" / "dog" / "img_1.png"
    gone.unlink()
    with pytest.raises(ImageReadError, match=r"row 3 of column 'image' \(file '.*img_1\.png'\)"):
        ds[3]
    np.testing.assert_array_equal(ds[:3].shape, (3, 12, 10, 3))
    with pytest.raises(ImageReadError, match=r"img_1\.png' of row 3 .*fingerprint"):
        ds.fingerprint()
    empty = datasets.Dataset.from_dict(
        {"image": [{"bytes": _png(_arrays(1, (8, 8))[0]), "path": None}, None]},
        features=datasets.Features({"image": datasets.Image()}),
    )
    with pytest.raises(ImageReadError, match=r"Row 1 of column 'image' holds no image"):
        from_hf_dataset(empty).load()


def test_dataset_must_be_one_split_of_a_regular_dataset():
    hf = _pil_dataset(_arrays(2, (8, 8)), [0, 1])
    splits = datasets.DatasetDict({"train": hf, "test": hf})
    with pytest.raises(InvalidInputError, match=r"DatasetDict.*\['train', 'test'\].*"
                                                r"dataset\['train'\]"):
        from_hf_dataset(splits)
    with pytest.raises(InvalidTypeError, match=r"streaming IterableDataset.*not supported.*"
                                               r"streaming=True.*from_generator"):
        from_hf_dataset(hf.to_iterable_dataset())
    for wrong in (np.zeros((2, 8, 8, 3), np.uint8), [Image.new("RGB", (8, 8))], {"image": []}):
        with pytest.raises(InvalidTypeError, match=r"`dataset` must be a Hugging Face "
                                                   r"`datasets.Dataset`.*received"):
            from_hf_dataset(wrong)
    with pytest.raises(InvalidTypeError, match=r"received \[1, 2\] \(type list\)"):
        from_hf_dataset([1, 2])
    nothing = hf.select([])
    with pytest.raises(InvalidInputError, match="`dataset` has no rows"):
        from_hf_dataset(nothing)


def test_missing_datasets_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` fails
    with pytest.raises(MissingDependencyError, match=r'pip install "transferkit\[hf\]"'
                                                     r".*received \[1\]"):
        from_hf_dataset([1])


def test_image_column_errors():
    images = [Image.fromarray(a) for a in _arrays(2, (8, 8))]
    no_image = datasets.Dataset.from_dict({"path": ["a.png", "b.png"], "label": [0, 1]})
    with pytest.raises(InvalidInputError, match=r"no image column.*\['path', 'label'\].*"
                                                r"cast_column.*image_column="):
        from_hf_dataset(no_image)
    two = datasets.Dataset.from_dict({"a": images, "b": images})
    with pytest.raises(InvalidInputError, match=r"several image columns \['a', 'b'\].*"
                                                r"`image_column=`"):
        from_hf_dataset(two)
    assert from_hf_dataset(two, image_column="b").image_column == "b"
    with pytest.raises(InvalidInputError, match=r"`image_column` 'c' is not a column.*"
                                                r"\['a', 'b'\]"):
        from_hf_dataset(two, image_column="c")
    paths = datasets.Dataset.from_dict(
        {"path": ["a.png", "b.png"], "label": [0, 1], "pic": images},
        features=datasets.Features({"path": datasets.Value("string"),
                                    "label": datasets.Value("int64"), "pic": datasets.Image()}),
    )
    with pytest.raises(InvalidInputError, match=r"`image_column` 'path' is not an image "
                                                r"column.*Value.*\['path', 'label', 'pic'\]"):
        from_hf_dataset(paths, image_column="path")
    with pytest.raises(InvalidTypeError, match=r"`image_column` must be .*received 3 "):
        from_hf_dataset(paths, image_column=3)


def test_label_column_errors():
    images = [Image.fromarray(a) for a in _arrays(2, (8, 8))]
    hf = datasets.Dataset.from_dict({"image": images, "name": ["x", "y"], "label": [0, 1]})
    with pytest.raises(InvalidInputError, match=r"`label_column` 'lbl' is not a column.*"
                                                r"\['image', 'name', 'label'\]"):
        from_hf_dataset(hf, label_column="lbl")
    with pytest.raises(InvalidInputError, match=r"`label_column` 'name' must hold integer "
                                                r"labels.*string.*class_encode_column"):
        from_hf_dataset(hf, label_column="name")
    with pytest.raises(InvalidInputError, match=r"`label_column` 'image' must hold integer"):
        from_hf_dataset(hf, label_column="image")
    with pytest.raises(InvalidTypeError, match=r"`label_column` must be .*received 1 "):
        from_hf_dataset(hf, label_column=1)
    holes = datasets.Dataset.from_dict({"image": images, "label": [None, 1]},
                                       features=datasets.Features({
                                           "image": datasets.Image(),
                                           "label": datasets.Value("int64")}))
    with pytest.raises(InvalidInputError, match=r"`label_column` 'label' has missing labels "
                                                r"\(first in row 0\)"):
        from_hf_dataset(holes)


def test_argument_errors_name_the_argument_and_value():
    hf = _pil_dataset(_arrays(2, (8, 8)), [0, 1])
    with pytest.raises(InvalidTypeError, match=r"`image_size` must be .*received 'big'"):
        from_hf_dataset(hf, image_size="big")
    with pytest.raises(InvalidInputError, match=r"`image_size\[0\] \(height\)` .*received 0"):
        from_hf_dataset(hf, image_size=(0, 4))
    with pytest.raises(InvalidInputError, match=r"`interpolation` must be one of.*'cubic'"):
        from_hf_dataset(hf, interpolation="cubic")
    with pytest.raises(InvalidTypeError, match=r"`interpolation` must be one of.*received 2"):
        from_hf_dataset(hf, interpolation=2)
    with pytest.raises(InvalidInputError, match=r"`batch_size` .*received -1"):
        from_hf_dataset(hf, batch_size=-1)
    with pytest.raises(InvalidTypeError, match=r"`batch_size` .*received 2\.0"):
        from_hf_dataset(hf, batch_size=2.0)


def test_import_does_not_import_datasets():
    code = (
        "import sys, transferkit.datasets.hf; "
        "print(sorted(m for m in ('datasets', 'PIL', 'tensorflow') if m in sys.modules))"
    )
    repo = Path(transferkit.__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo
    )
    assert out.stdout.strip() == "[]"


def test_unlabelled_rows_minus_one_mean_no_labels():
    """HF marks a missing ClassLabel with -1 (test splits): never read as a class."""
    unlabelled = from_hf_dataset(_pil_dataset(_arrays(3, (8, 8)), [-1, -1, -1]))
    assert unlabelled.labels is None and unlabelled.shape == (3, 8, 8, 3)
    with pytest.warns(UserWarning, match=r"1 of 3 rows have no label \(-1\)"):
        partly = from_hf_dataset(_pil_dataset(_arrays(3, (8, 8)), [0, -1, 2]))
    assert partly.labels is None
