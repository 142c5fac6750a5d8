"""load_image_list: images named by a CSV file or a pandas DataFrame of paths and labels."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.datasets.image_folder import ImageFolderDataset, load_image_folder
from transferkit.datasets.image_list import ImageListDataset, load_image_list
from transferkit.datasets.images import read_image, resample_filter
from transferkit.exceptions import DatasetNotFoundError, InvalidInputError, InvalidTypeError


def _save(path: Path, seed: int) -> np.ndarray:
    """A random 32x32 RGB PNG at ``path``; returns its pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def _write_csv(path: Path, rows: list[list[object]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, delimiter=delimiter).writerows(rows)
    return path


@pytest.fixture
def images(tmp_path) -> dict[str, np.ndarray]:
    """Five PNGs under tmp_path/imgs: a/0.png a/1.png b/0.png b/1.png c/0.png."""
    names = ["a/0.png", "a/1.png", "b/0.png", "b/1.png", "c/0.png"]
    return {name: _save(tmp_path / "imgs" / name, seed) for seed, name in enumerate(names)}


# --------------------------------------------------------------------------------------
# Reading lists
# --------------------------------------------------------------------------------------


def test_csv_with_relative_and_absolute_paths(tmp_path, images):
    outside = tmp_path / "elsewhere" / "x.png"
    extra = _save(outside, 99)
    csv_path = _write_csv(tmp_path / "imgs" / "list.csv", [
        ["path", "label"],
        ["b/0.png", "dog"],
        [str(outside), "cat"],
        ["a/1.png", "dog"],
    ])
    ds = load_image_list(csv_path, image_size=None)
    assert isinstance(ds, ImageListDataset) and isinstance(ds, ImageFolderDataset)
    assert ds.root == (tmp_path / "imgs").absolute() and ds.source == csv_path
    assert ds.files == [tmp_path / "imgs" / "b/0.png", outside, tmp_path / "imgs" / "a/1.png"]
    assert ds.class_names == ["cat", "dog"]
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [1, 0, 1]
    assert len(ds) == 3 and ds.shape == (3, 32, 32, 3) and ds.dtype == np.uint8
    x, y = ds.load()
    np.testing.assert_array_equal(x, np.stack([images["b/0.png"], extra, images["a/1.png"]]))
    np.testing.assert_array_equal(y, [1, 0, 1])
    assert "ImageListDataset(" in repr(ds) and "list.csv" in repr(ds)


def test_csv_relative_paths_resolve_against_root(tmp_path, images, monkeypatch):
    csv_path = _write_csv(tmp_path / "lists" / "list.csv", [["path"], ["a/0.png"], ["c/0.png"]])
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_image_list(csv_path)  # the CSV's folder holds no a/0.png
    ds = load_image_list(csv_path, root=tmp_path / "imgs", image_size=None)
    np.testing.assert_array_equal(ds[1], images["c/0.png"])
    monkeypatch.chdir(tmp_path)  # a relative root is made absolute at call time
    ds = load_image_list(csv_path, root="imgs", image_size=None)
    assert ds.root.is_absolute() and ds.files[0] == tmp_path / "imgs" / "a/0.png"


def test_csv_sniffs_the_delimiter_and_tolerates_spaces_bom_and_blank_lines(tmp_path, images):
    semicolons = _write_csv(tmp_path / "imgs" / "semi.csv",
                            [["Image", "Class"], ["a/0.png", "x"], ["b/1.png", "y"]], ";")
    ds = load_image_list(semicolons, image_size=8)
    assert [f.name for f in ds.files] == ["0.png", "1.png"] and ds.class_names == ["x", "y"]
    messy = tmp_path / "imgs" / "messy.csv"
    messy.write_text("\ufeffpath, label\n\na/0.png, 1\nb/0.png,  0\n\n", encoding="utf-8")
    ds = load_image_list(messy, image_size=8)
    assert ds.labels.tolist() == [1, 0] and ds.class_names is None
    single = tmp_path / "imgs" / "single.csv"  # one column: no delimiter to sniff
    single.write_text("filename\na/0.png\nc/0.png\n", encoding="utf-8")
    assert len(load_image_list(single, image_size=8)) == 2


def test_dataframe_input(tmp_path, images, monkeypatch):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({
        "file_path": [str(tmp_path / "imgs" / "c/0.png"), "a/0.png"],
        "Label": ["z", "y"],
        "other": [1, 2],
    })
    ds = load_image_list(frame, root=tmp_path / "imgs", image_size=None)
    assert ds.source is None and ds.class_names == ["y", "z"] and ds.labels.tolist() == [1, 0]
    np.testing.assert_array_equal(ds.load()[0], np.stack([images["c/0.png"], images["a/0.png"]]))
    assert "DataFrame" in repr(ds)
    monkeypatch.chdir(tmp_path / "imgs")  # default root: the current directory
    ds = load_image_list(frame, image_size=8)
    assert ds.root == (tmp_path / "imgs").absolute() and ds.files[1] == ds.root / "a/0.png"
    ints = pd.DataFrame({"image": [Path("a/0.png"), Path("a/1.png")], "class": [3, 0]})
    ds = load_image_list(ints, image_size=8)
    assert ds.labels.tolist() == [3, 0] and ds.labels.dtype == np.int64
    assert ds.class_names is None


def test_string_labels_give_sorted_class_names(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv", [
        ["path", "label"], ["a/0.png", "zebra"], ["a/1.png", "ant"], ["b/0.png", "moth"],
        ["b/1.png", "ant"],
    ])
    ds = load_image_list(csv_path, image_size=8)
    assert ds.class_names == ["ant", "moth", "zebra"]
    assert ds.labels.tolist() == [2, 0, 1, 0]


def test_integer_labels_stay_integers(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv",
                          [["path", "label"], ["a/0.png", "7"], ["a/1.png", "0"], ["c/0.png", "2"]])
    ds = load_image_list(csv_path, image_size=8)
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [7, 0, 2]
    assert ds.class_names is None
    named = load_image_list(csv_path, image_size=8, classes=[f"c{i}" for i in range(8)])
    assert named.labels.tolist() == [7, 0, 2] and named.class_names[7] == "c7"
    mixed = _write_csv(tmp_path / "imgs" / "m.csv",
                       [["path", "label"], ["a/0.png", "7"], ["a/1.png", "cat"]])
    ds = load_image_list(mixed, image_size=8)  # not all integers: names
    assert ds.class_names == ["7", "cat"] and ds.labels.tolist() == [0, 1]


def test_classes_set_the_label_order(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv",
                          [["path", "label"], ["a/0.png", "cat"], ["a/1.png", "dog"]])
    ds = load_image_list(csv_path, image_size=8, classes=["dog", "bird", "cat"])
    assert ds.class_names == ["dog", "bird", "cat"]  # unused classes are kept
    assert ds.labels.tolist() == [2, 0]


def test_no_label_column(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv",
                          [["path", "label"], ["a/0.png", "cat"], ["b/0.png", "dog"]])
    ds = load_image_list(csv_path, image_size=None, label_column=None)
    assert ds.labels is None and ds.class_names is None
    x, y = ds.load()
    assert y is None
    np.testing.assert_array_equal(x, np.stack([images["a/0.png"], images["b/0.png"]]))
    part = ds.subset(1, 2)
    assert part.labels is None and len(part) == 1
    np.testing.assert_array_equal(part.load()[0][0], images["b/0.png"])
    assert len(ds.fingerprint()) == 64
    assert "unlabeled" in repr(ds)
    bare = _write_csv(tmp_path / "imgs" / "bare.csv", [["path", "notes"], ["a/0.png", "hi"]])
    assert load_image_list(bare, image_size=8).labels is None  # "auto" finds no label column


def test_columns_auto_detected_case_insensitively_or_named(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv", [
        ["notes", "FileName", "CLASS", "where"],
        ["n", "a/0.png", "cat", "b/0.png"],
        ["n", "a/1.png", "dog", "b/1.png"],
    ])
    ds = load_image_list(csv_path, image_size=8)
    assert [f.relative_to(ds.root).as_posix() for f in ds.files] == ["a/0.png", "a/1.png"]
    assert ds.class_names == ["cat", "dog"]
    named = load_image_list(csv_path, image_size=8, path_column="where", label_column="notes")
    assert [f.relative_to(ds.root).as_posix() for f in named.files] == ["b/0.png", "b/1.png"]
    assert named.class_names == ["n"] and named.labels.tolist() == [0, 0]


def test_pixels_equal_read_image(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv",
                          [["path"], ["a/0.png"], ["b/1.png"], ["c/0.png"]])
    ds = load_image_list(csv_path, image_size=(12, 20), interpolation="bicubic")
    expected = np.stack([read_image(f, (12, 20), resample_filter("bicubic")) for f in ds.files])
    assert ds.shape == (3, 12, 20, 3)
    np.testing.assert_array_equal(ds.load()[0], expected)
    np.testing.assert_array_equal(np.asarray(ds), expected)
    np.testing.assert_array_equal(ds[1], expected[1])
    np.testing.assert_array_equal(ds[[2, 0]], expected[[2, 0]])
    np.testing.assert_array_equal(ds[-1], expected[-1])


def test_iter_batches_streams(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv", [["path"], *[[n] for n in images]])
    ds = load_image_list(csv_path, image_size=8, batch_size=2)
    whole = ds.load()[0]
    batches = list(ds.iter_batches())
    assert [len(b) for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(batches), whole)
    resumed = list(ds.iter_batches(batch_size=3, start=1))
    assert [len(b) for b in resumed] == [3, 1]
    np.testing.assert_array_equal(np.concatenate(resumed), whole[1:])


# --------------------------------------------------------------------------------------
# Fingerprint
# --------------------------------------------------------------------------------------


def test_fingerprint_stable_and_sensitive(tmp_path, images):
    rows = [["path", "label"], ["a/0.png", "cat"], ["b/0.png", "dog"]]
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv", rows)
    ds = load_image_list(csv_path, image_size=8)
    first = ds.fingerprint()
    assert len(first) == 64 and int(first, 16) >= 0
    assert ds.fingerprint() == first == load_image_list(csv_path, image_size=8).fingerprint()
    assert load_image_list(csv_path, image_size=9).fingerprint() != first
    assert load_image_list(csv_path, image_size=8, label_column=None).fingerprint() != first
    relabeled = _write_csv(tmp_path / "imgs" / "r.csv",
                           [["path", "label"], ["a/0.png", "cat"], ["b/0.png", "cow"]])
    assert load_image_list(relabeled, image_size=8).fingerprint() != first
    reordered = _write_csv(tmp_path / "imgs" / "o.csv", [rows[0], rows[2], rows[1]])
    assert load_image_list(reordered, image_size=8).fingerprint() != first
    changed = images["b/0.png"].copy()
    changed[0, 0, 0] ^= 1  # one pixel, one bit
    Image.fromarray(changed).save(tmp_path / "imgs" / "b/0.png")
    assert ds.fingerprint() != first  # the same object notices the edit
    assert load_image_list(csv_path, image_size=8).fingerprint() != first


def test_fingerprint_kept_when_list_and_images_move_together(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv", [["path"], ["a/0.png"], ["c/0.png"]])
    first = load_image_list(csv_path, image_size=8).fingerprint()
    (tmp_path / "imgs").rename(tmp_path / "moved")
    assert load_image_list(tmp_path / "moved" / "l.csv", image_size=8).fingerprint() == first


def test_fingerprint_differs_from_the_image_folder_of_the_same_files(tmp_path, images):
    folder = load_image_folder(tmp_path / "imgs", image_size=8)
    rows = [["path", "label"]] + [
        [f.relative_to(folder.root).as_posix(), folder.class_names[label]]
        for f, label in zip(folder.files, folder.labels, strict=True)
    ]
    listed = load_image_list(_write_csv(tmp_path / "imgs" / "l.csv", rows), image_size=8)
    assert listed.files == folder.files and listed.class_names == folder.class_names
    np.testing.assert_array_equal(listed.labels, folder.labels)
    assert listed.fingerprint() != folder.fingerprint()
    assert listed._fingerprint_header()["format"] == "transferkit.ImageList"
    assert folder._fingerprint_header()["format"] == "transferkit.ImageFolderDataset"


def test_fingerprint_names_files_outside_root_absolutely(tmp_path, images):
    outside = tmp_path / "far" / "y.png"
    _save(outside, 7)
    ds = load_image_list(_write_csv(tmp_path / "imgs" / "l.csv",
                                    [["path"], ["a/0.png"], [str(outside)]]), image_size=8)
    assert ds._fingerprint_path(ds.files[0]) == "a/0.png"
    assert ds._fingerprint_path(ds.files[1]) == outside.absolute().as_posix()
    assert len(ds.fingerprint()) == 64


def test_pickling_round_trips(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv",
                          [["path", "label"], ["a/0.png", "cat"], ["b/1.png", "dog"]])
    ds = load_image_list(csv_path, image_size=8)
    again = pickle.loads(pickle.dumps(ds))
    assert type(again) is ImageListDataset
    assert again.files == ds.files and again.class_names == ds.class_names
    assert again.source == ds.source and again.root == ds.root
    np.testing.assert_array_equal(again.labels, ds.labels)
    np.testing.assert_array_equal(again.load()[0], ds.load()[0])
    assert again.fingerprint() == ds.fingerprint()
    part = pickle.loads(pickle.dumps(ds.subset(1, 2)))
    assert type(part) is ImageListDataset and part.labels.tolist() == [1]


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def test_source_of_the_wrong_type_or_missing(tmp_path):
    with pytest.raises(InvalidTypeError, match=r"`source` must be .*CSV.*DataFrame.*received "
                                               r"\[1, 2\] \(type list\)"):
        load_image_list([1, 2])
    with pytest.raises(InvalidTypeError, match=r"`source` .*received b'x.csv' \(type bytes\)"):
        load_image_list(b"x.csv")
    with pytest.raises(DatasetNotFoundError, match=r"`source` .*nope\.csv.* does not exist"):
        load_image_list(tmp_path / "nope.csv")
    with pytest.raises(InvalidInputError, match=r"`source` .* is a folder"):
        load_image_list(tmp_path)


def test_empty_csv_and_empty_list(tmp_path, images):
    empty = tmp_path / "imgs" / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"empty\.csv.* is empty.*header row"):
        load_image_list(empty)
    header_only = _write_csv(tmp_path / "imgs" / "h.csv", [["path", "label"]])
    with pytest.raises(InvalidInputError, match=r"h\.csv.* lists no images"):
        load_image_list(header_only)


def test_csv_not_utf8(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path\ncaf\u00e9.png\n".encode("latin-1"))
    with pytest.raises(InvalidInputError, match=r"latin\.csv.* is not UTF-8"):
        load_image_list(latin)


def test_path_column_errors(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv", [["img", "label"], ["a/0.png", "x"]])
    with pytest.raises(InvalidInputError, match=r"no column of image paths.*\['img', 'label'\]"
                                                r".*header.*`path_column=`"):
        load_image_list(csv_path)
    with pytest.raises(InvalidInputError, match=r"`path_column` 'pth' is not a column.*"
                                                r"\['img', 'label'\]"):
        load_image_list(csv_path, path_column="pth")
    with pytest.raises(InvalidTypeError, match=r"`path_column` .*received 0 \(type int\)"):
        load_image_list(csv_path, path_column=0)
    assert len(load_image_list(csv_path, path_column="img", image_size=8)) == 1
    with pytest.raises(InvalidInputError, match=r"`label_column` and `path_column` both.*'img'"):
        load_image_list(csv_path, path_column="img", label_column="img")


def test_label_column_errors(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv", [["path", "label"], ["a/0.png", "x"]])
    with pytest.raises(InvalidInputError, match=r"`label_column` 'target' is not a column.*"
                                                r"\['path', 'label'\]"):
        load_image_list(csv_path, label_column="target")
    with pytest.raises(InvalidTypeError, match=r"`label_column` .*received 1 \(type int\)"):
        load_image_list(csv_path, label_column=1)


def test_missing_file_names_source_row_and_both_paths(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv",
                          [["path"], ["a/0.png"], ["a/1.png"], ["gone/x.png"]])
    resolved = tmp_path / "imgs" / "gone" / "x.png"
    with pytest.raises(InvalidInputError) as info:
        load_image_list(csv_path)
    message = str(info.value)
    assert "l.csv" in message and "row 3 (line 4)" in message
    assert "'gone/x.png'" in message and f"'{resolved}'" in message
    assert "`root`" in message


def test_missing_file_in_a_dataframe(tmp_path, images):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"path": ["a/0.png", "zz.png"]}, index=["first", "second"])
    with pytest.raises(InvalidInputError, match=r"the DataFrame, row 2 \(index 'second'\): the "
                                                r"image file 'zz.png' does not exist"):
        load_image_list(frame, root=tmp_path / "imgs")


def test_folder_in_path_column(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv", [["path"], ["a"]])
    with pytest.raises(InvalidInputError, match=r"row 1 .*'a'.* is a folder"):
        load_image_list(csv_path)


def test_empty_cells_name_the_row(tmp_path, images):
    no_path = _write_csv(tmp_path / "imgs" / "p.csv",
                         [["path", "label"], ["a/0.png", "x"], ["", "y"]])
    with pytest.raises(InvalidInputError, match=r"p\.csv.*row 2 \(line 3\): the path cell is "
                                                r"empty"):
        load_image_list(no_path)
    short = tmp_path / "imgs" / "s.csv"
    short.write_text("path,label\na/0.png,x\na/1.png\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"row 2 \(line 3\): the label cell \(column "
                                                r"'label'\) is empty"):
        load_image_list(short)
    no_label = _write_csv(tmp_path / "imgs" / "n.csv",
                          [["path", "label"], ["a/0.png", "x"], ["a/1.png", " "]])
    with pytest.raises(InvalidInputError, match=r"row 2 .*label cell .* empty"):
        load_image_list(no_label)


def test_empty_cells_in_a_dataframe(tmp_path, images):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"path": ["a/0.png", None], "label": [1.0, 2.0]})
    with pytest.raises(InvalidInputError, match=r"DataFrame, row 2 .*path cell is empty"):
        load_image_list(frame, root=tmp_path / "imgs")
    frame = pd.DataFrame({"path": ["a/0.png", "a/1.png"], "label": [1.0, np.nan]})
    with pytest.raises(InvalidInputError, match=r"DataFrame, row 2 .*label cell .* empty"):
        load_image_list(frame, root=tmp_path / "imgs")
    frame = pd.DataFrame({"path": ["a/0.png", 5]})
    with pytest.raises(InvalidInputError, match=r"row 2 .*path cell holds 5 \(type int\)"):
        load_image_list(frame, root=tmp_path / "imgs")


def test_classes_errors(tmp_path, images):
    names = _write_csv(tmp_path / "imgs" / "l.csv",
                       [["path", "label"], ["a/0.png", "cat"], ["a/1.png", "emu"],
                        ["b/0.png", "yak"]])
    with pytest.raises(InvalidInputError, match=r"Labels \['emu', 'yak'\] .*first in row 2.*"
                                                r"not in `classes` \['cat'\]"):
        load_image_list(names, classes=["cat"])
    ints = _write_csv(tmp_path / "imgs" / "i.csv",
                      [["path", "label"], ["a/0.png", "0"], ["a/1.png", "4"]])
    with pytest.raises(InvalidInputError, match=r"`classes` has 2 names but .*row 2.* label 4.*"
                                                r"at least 5"):
        load_image_list(ints, classes=["a", "b"])
    negative = _write_csv(tmp_path / "imgs" / "neg.csv", [["path", "label"], ["a/0.png", "-1"]])
    with pytest.raises(InvalidInputError, match=r"row 1 .*label -1 is negative"):
        load_image_list(negative)
    with pytest.raises(InvalidTypeError, match=r"`classes` must be a sequence.*'cat'"):
        load_image_list(names, classes="cat")
    with pytest.raises(InvalidInputError, match=r"`classes` lists \['cat'\] more than once"):
        load_image_list(names, classes=["cat", "cat", "emu", "yak"])
    with pytest.raises(InvalidInputError, match=r"`classes` was given .*no label column"):
        load_image_list(names, classes=["cat"], label_column=None)


def test_root_errors(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv", [["path"], ["a/0.png"]])
    with pytest.raises(InvalidInputError, match=r"`root` .*nowhere.* does not exist"):
        load_image_list(csv_path, root=tmp_path / "nowhere")
    with pytest.raises(InvalidInputError, match=r"`root` .*l\.csv.* is not a folder"):
        load_image_list(csv_path, root=csv_path)
    with pytest.raises(InvalidTypeError, match=r"`root` .*received 3 \(type int\)"):
        load_image_list(csv_path, root=3)


def test_size_batch_and_interpolation_checked_like_image_folders(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv", [["path"], ["a/0.png"]])
    with pytest.raises(InvalidTypeError, match="`image_size`.*received 'big'"):
        load_image_list(csv_path, image_size="big")
    with pytest.raises(InvalidInputError, match=r"`image_size\[0\] \(height\)`"):
        load_image_list(csv_path, image_size=(0, 5))
    with pytest.raises(InvalidInputError, match="`interpolation` must be one of.*'cubic-ish'"):
        load_image_list(csv_path, interpolation="cubic-ish")
    with pytest.raises(InvalidInputError, match="`batch_size`.*received 0"):
        load_image_list(csv_path, batch_size=0)
    assert load_image_list(csv_path, image_size=5, interpolation="NEAREST").shape == (1, 5, 5, 3)


def test_index_errors_name_the_class(tmp_path, images):
    ds = load_image_list(_write_csv(tmp_path / "imgs" / "l.csv", [["path"], ["a/0.png"]]),
                         image_size=8)
    with pytest.raises(IndexError, match="out of range"):
        ds[1]
    with pytest.raises(InvalidTypeError, match="an ImageListDataset index must be"):
        ds["a"]


def test_duplicate_rows_are_read_twice(tmp_path, images):
    csv_path = _write_csv(tmp_path / "imgs" / "l.csv", [["path"], ["a/0.png"], ["a/0.png"]])
    x, _ = load_image_list(csv_path, image_size=None).load()
    np.testing.assert_array_equal(x, np.stack([images["a/0.png"]] * 2))
