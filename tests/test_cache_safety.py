"""The cache under stress: killed writers, concurrent readers, damaged files, full disks.

These complement tests/test_cache.py (the everyday behaviour). The extractor here is
`NumpyExtractor` (plain NumPy), so subprocesses start in about a second.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import NumpyExtractor, make_images
from PIL import Image

from transferkit import FeatureCache
from transferkit import exceptions as exc

TESTS = Path(__file__).resolve().parent

_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    from conftest import NumpyExtractor
    from transferkit import FeatureCache
    n, delay = int(sys.argv[2]), float(sys.argv[3])
    build_delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    x = np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    ext = NumpyExtractor(batch_size=8, delay=delay, build_delay=build_delay)
    cache = FeatureCache(sys.argv[1])
    print("ready", flush=True)
    try:
        cache.extract(ext, x)
    except SystemExit as stop:  # SIGTERM: exits 143 after saying what was kept
        print(stop, file=sys.stderr, flush=True)
        raise
    print("done", flush=True)
    """
)


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


def _start_writer(
    tmp_path: Path, cache_path: Path, n: int, delay: float, build_delay: float = 0.0
) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER.format(tests=str(TESTS)))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(cache_path), str(n), str(delay), str(build_delay)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise AssertionError(f"writer did not start: {line!r} {proc.stderr.read()[-2000:]}")
    return proc


@pytest.mark.slow
def test_sigkill_at_random_points_never_loses_or_corrupts(tmp_path) -> None:
    n, kills_wanted = 4000, 22
    x = _images(n)
    reference = NumpyExtractor(batch_size=8).transform(x)
    path = tmp_path / "killed.h5"
    rng = random.Random(1234)
    kills, last_done = 0, 0
    while kills < kills_wanted:
        proc = _start_writer(tmp_path, path, n, delay=0.002)
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode != -signal.SIGKILL:  # finished before the kill: start over
            path.unlink()
            last_done = 0
            continue
        kills += 1
        # After every kill the file opens, and what it holds is exactly the reference.
        entries = FeatureCache(path).entries(include_incomplete=True)
        if not entries:  # killed before the entry was first flushed
            continue
        (entry,) = entries
        assert entry.n_done >= last_done
        assert entry.n_done % 8 == 0 or entry.n_done == n
        last_done = entry.n_done
        with h5py.File(path, "r") as f:
            stored = f["entries"][entry.key]["features"][: entry.n_done]
        np.testing.assert_array_equal(stored, reference[: entry.n_done])
    ext = NumpyExtractor(batch_size=8)
    np.testing.assert_array_equal(FeatureCache(path).extract(ext, x), reference)
    print(f"{kills} SIGKILLs survived; last resume point {last_done}/{n}")


def test_the_counter_is_flushed_only_after_the_rows_it_counts(tmp_path, monkeypatch) -> None:
    # A SIGKILL inside HDF5's flush can leave any part of it on disk (seen on CI: the
    # counter at 3,184 rows, the features at 3,176). So every flush must find the
    # counter no further than the rows that the previous flush made durable.
    durable: dict[str, int] = {}
    ahead: list[tuple[str, int, int]] = []
    flush = h5py.File.flush

    def checked_flush(self: h5py.File) -> None:
        rows = {}
        for key, g in self.get("entries", {}).items():
            if "progress" in g and "features" in g:
                counter = int(g["progress"][()])
                if counter > durable.get(key, 0):
                    ahead.append((key, counter, durable.get(key, 0)))
                rows[key] = int(g["features"].shape[0])
        flush(self)
        durable.update(rows)

    monkeypatch.setattr(h5py.File, "flush", checked_flush)
    x = _images(40)
    FeatureCache(tmp_path / "c.h5").extract(NumpyExtractor(batch_size=8), x)
    assert ahead == []
    assert len(durable) == 1


def test_a_counter_ahead_of_the_rows_is_not_trusted(tmp_path) -> None:
    # A file written before the two-flush commit and killed mid-flush: the counter
    # says 24 rows, the features hold 16. Readers see 16; a resume recomputes the rest.
    x = _images(40)
    reference = NumpyExtractor(batch_size=8).transform(x)
    path = tmp_path / "c.h5"
    cache = FeatureCache(path)
    cache.extract(NumpyExtractor(batch_size=8), x)
    (key,) = [e.key for e in cache.entries()]
    with h5py.File(path, "a") as f:
        g = f["entries"][key]
        g.attrs["complete"] = False
        g["features"].resize((16, reference.shape[1]))
        g["progress"][()] = 24
    (entry,) = cache.entries(include_incomplete=True)
    assert entry.n_done == 16
    np.testing.assert_array_equal(cache.extract(NumpyExtractor(batch_size=8), x), reference)


def test_sigkill_while_the_file_is_created_leaves_a_usable_cache(tmp_path) -> None:
    # The backbone builds for a while (VGG-16 takes seconds on a slow host): the file
    # must not sit half-created meanwhile. Kill the writer the moment the file appears,
    # and while the model builds in a second process that finds the file already there.
    x = _images(40)
    reference = NumpyExtractor(batch_size=8).transform(x)
    path = tmp_path / "new.h5"
    proc = _start_writer(tmp_path, path, n=40, delay=0.5, build_delay=1.0)
    deadline = time.monotonic() + 60
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.exists(), proc.stderr.read()[-2000:]
    entries = FeatureCache(path).entries(include_incomplete=True)  # opens: not truncated
    assert all(not e.complete for e in entries)
    # Killed while building, with the file present: the file is untouched and usable.
    proc = _start_writer(tmp_path, path, n=40, delay=0.5, build_delay=5.0)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ext = NumpyExtractor(batch_size=8)
    np.testing.assert_array_equal(FeatureCache(path).extract(ext, x), reference)


def test_sigterm_stops_cleanly_keeping_every_computed_batch(tmp_path) -> None:
    x = _images(400)
    reference = NumpyExtractor(batch_size=8).transform(x)
    path = tmp_path / "term.h5"
    proc = _start_writer(tmp_path, path, n=400, delay=0.05)
    cache = FeatureCache(path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for a few flushed batches
        if path.exists():
            partial = cache.entries(include_incomplete=True)
            if partial and partial[0].n_done >= 24:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]  # 128 + SIGTERM, as a terminated process
    assert "terminated (SIGTERM) after" in err and "call `extract` again" in err
    assert "done" not in out
    (entry,) = cache.entries(include_incomplete=True)
    assert 24 <= entry.n_done < 400 and entry.n_done % 8 == 0
    with h5py.File(path, "r") as f:
        stored = f["entries"][entry.key]["features"][: entry.n_done]
    np.testing.assert_array_equal(stored, reference[: entry.n_done])
    np.testing.assert_array_equal(cache.extract(NumpyExtractor(batch_size=8), x), reference)


def test_sigterm_handler_is_restored_and_an_application_handler_is_kept() -> None:
    from transferkit._signals import sigterm_raises
    from transferkit.exceptions import Terminated

    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with sigterm_raises():
        with pytest.raises(Terminated) as info:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        assert info.value.code == 143 and isinstance(info.value, SystemExit)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with sigterm_raises():
            assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_readers_see_complete_entries_while_a_writer_works(tmp_path) -> None:
    path = tmp_path / "busy.h5"
    cache = FeatureCache(path)
    done_x = make_images(40, size=16, seed=3)
    done_f = cache.extract(NumpyExtractor(), done_x)
    proc = _start_writer(tmp_path, path, n=3000, delay=0.01)
    try:
        seen_incomplete = False
        deadline = time.time() + 1.5
        while time.time() < deadline:
            keys = [e.key for e in cache.entries()]
            assert keys == [cache.key(NumpyExtractor(), done_x)]  # in-progress: not listed
            np.testing.assert_array_equal(cache.extract(NumpyExtractor(), done_x), done_f)
            partial = [e for e in cache.entries(include_incomplete=True) if not e.complete]
            seen_incomplete |= bool(partial)
            if partial:
                with pytest.raises(exc.CacheError, match="incomplete"):
                    cache.load(partial[0].key)
        assert seen_incomplete
        # A second writer is refused, not interleaved.
        with pytest.raises(exc.CacheLockedError, match="Another process is writing"):
            cache.extract(NumpyExtractor(grid=3), done_x)
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    np.testing.assert_array_equal(
        cache.extract(NumpyExtractor(), _images(3000)), NumpyExtractor().transform(_images(3000))
    )


# ---------------------------------------------------------------------------- damage
def _two_entries(path: Path) -> tuple[FeatureCache, list[tuple[str, np.ndarray, np.ndarray]]]:
    cache = FeatureCache(path)
    out = []
    for seed in (1, 2):
        x = make_images(64, size=16, seed=seed)
        f = cache.extract(NumpyExtractor(grid=4), x, labels=np.arange(64) % 2)
        out.append((cache.key(NumpyExtractor(grid=4), x), x, f))
    return cache, out


def test_corrupted_chunk_is_detected_and_other_entries_stay_readable(tmp_path) -> None:
    path = tmp_path / "c.h5"
    cache, [(key_a, x_a, f_a), (key_b, _, f_b)] = _two_entries(path)
    with h5py.File(path, "r") as f:
        info = f["entries"][key_a]["features"].id.get_chunk_info(0)
    with open(path, "r+b") as fh:  # flip bytes inside entry A's data
        fh.seek(info.byte_offset + 16)
        fh.write(b"\xff\x00\xff\x00" * 8)
    with pytest.raises(exc.CacheCorruptedError, match=rf"{key_a}.*c\.h5.*damaged.*repair"):
        cache.load(key_a)
    np.testing.assert_array_equal(cache.load(key_b), f_b)
    report = cache.repair()
    assert report["kept"] == [key_b] and report["dropped"] == [key_a]
    assert Path(report["backup"]).is_file()  # the damaged original is kept, not deleted
    np.testing.assert_array_equal(cache.load(key_b), f_b)
    np.testing.assert_array_equal(cache.labels(key_b), np.arange(64) % 2)
    np.testing.assert_array_equal(cache.extract(NumpyExtractor(grid=4), x_a), f_a)


def test_truncated_file_gives_a_clear_error_and_repair_rebuilds(tmp_path) -> None:
    path = tmp_path / "t.h5"
    cache, [(key_a, x_a, f_a), _] = _two_entries(path)
    original = path.read_bytes()
    path.write_bytes(original[: len(original) // 2])
    with pytest.raises(exc.CacheCorruptedError, match=r"t\.h5.*cannot be opened.*repair\(\)"):
        cache.extract(NumpyExtractor(grid=4), x_a)
    report = cache.repair()
    assert Path(report["backup"]).read_bytes() == original[: len(original) // 2]
    np.testing.assert_array_equal(cache.extract(NumpyExtractor(grid=4), x_a), f_a)


def test_not_a_cache_is_never_overwritten_even_by_repair(tmp_path) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("precious")
    with pytest.raises(exc.CacheCorruptedError, match="not an HDF5 feature cache"):
        FeatureCache(path).entries()
    report = FeatureCache(path).repair()
    assert Path(report["backup"]).read_text() == "precious"


def test_read_only_location(tmp_path, monkeypatch) -> None:
    path = tmp_path / "ro.h5"
    cache, [(key_a, _, f_a), _] = _two_entries(path)
    real_file = h5py.File

    def read_only(name, mode="r", **kwargs):
        if mode != "r":
            raise PermissionError(errno.EACCES, "Permission denied", str(name))
        return real_file(name, mode, **kwargs)

    monkeypatch.setattr(h5py, "File", read_only)
    with pytest.raises(exc.CacheError, match=r"ro\.h5.*permission denied.*writable location"):
        cache.extract(NumpyExtractor(grid=5), make_images(4, size=16))
    np.testing.assert_array_equal(cache.load(key_a), f_a)  # reading still works


def test_full_disk_keeps_completed_batches_and_resumes(tmp_path, monkeypatch) -> None:
    path = tmp_path / "full.h5"
    cache, [(key_a, _, f_a), _] = _two_entries(path)
    x = make_images(80, size=16, seed=9)
    real_setitem = h5py.Dataset.__setitem__
    writes = {"n": 0}

    def disk_fills_up(self, index, value):
        if self.name.endswith("/features"):
            writes["n"] += 1
            if writes["n"] == 4:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_setitem(self, index, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", disk_fills_up)
    with pytest.raises(exc.CacheError, match=r"full\.h5.*after 24 of 80.*disk is full.*resume"):
        cache.extract(NumpyExtractor(grid=4), x)
    monkeypatch.setattr(h5py.Dataset, "__setitem__", real_setitem)
    np.testing.assert_array_equal(cache.load(key_a), f_a)
    (partial,) = [e for e in cache.entries(include_incomplete=True) if not e.complete]
    assert partial.n_done == 24
    np.testing.assert_array_equal(
        cache.extract(NumpyExtractor(grid=4), x), NumpyExtractor(grid=4).transform(x)
    )


def test_lazy_view_of_a_deleted_file_says_so(tmp_path) -> None:
    path = tmp_path / "gone.h5"
    cache, [(key_a, _, _), _] = _two_entries(path)
    lazy = cache.load(key_a, lazy=True)
    os.remove(path)
    with pytest.raises(exc.CacheCorruptedError, match=r"gone\.h5.*moved, deleted or damaged"):
        lazy[:3]


def test_a_hit_needs_no_write_access_even_with_labels(tmp_path, monkeypatch) -> None:
    path = tmp_path / "ro_hit.h5"
    cache, [(key_a, x_a, f_a), _] = _two_entries(path)  # stored with labels arange(64) % 2
    names = ["even", "odd"]
    cache.extract(NumpyExtractor(grid=4), x_a, class_names=names)
    real_file = h5py.File

    def read_only(name, mode="r", **kwargs):
        if mode != "r":
            raise PermissionError(errno.EACCES, "Permission denied", str(name))
        return real_file(name, mode, **kwargs)

    monkeypatch.setattr(h5py, "File", read_only)
    ext = NumpyExtractor(grid=4)
    # The labels and class names already stored: a plain read, no warning.
    np.testing.assert_array_equal(
        cache.extract(ext, x_a, labels=np.arange(64) % 2, class_names=names), f_a)
    # New labels cannot be stored: the features are still served, with a warning.
    with pytest.warns(UserWarning, match=r"ro_hit\.h5.*could not be stored.*permission"):
        out = cache.extract(ext, x_a, labels=np.arange(64) % 3)
    np.testing.assert_array_equal(out, f_a)
    monkeypatch.setattr(h5py, "File", real_file)
    np.testing.assert_array_equal(cache.labels(key_a), np.arange(64) % 2)  # unchanged


def test_a_directory_is_refused_and_never_set_aside(tmp_path) -> None:
    folder = tmp_path / "features"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    FeatureCache(tmp_path / "later.h5")  # a file path is fine
    with pytest.raises(exc.InvalidInputError, match=r"`path` must name a cache file.*directory"):
        FeatureCache(folder)
    cache = FeatureCache(tmp_path / "later")
    (tmp_path / "later").mkdir()  # became a folder after the cache object was made
    with pytest.raises(exc.InvalidInputError, match="directory"):
        cache.entries()
    with pytest.raises(exc.InvalidInputError, match="directory"):
        cache.repair()
    assert (folder / "keep.txt").read_text() == "mine" and (tmp_path / "later").is_dir()


def test_an_unreadable_first_batch_leaves_no_empty_entry(tmp_path) -> None:
    from transferkit.datasets import load_image_folder

    root = tmp_path / "photos"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(make_images(1, size=16, seed=i)[0]).save(root / cls / f"{i}.png")
    (root / "a" / "0.png").write_bytes(b"not a png")  # the very first image
    cache = FeatureCache(tmp_path / "f.h5")
    with pytest.raises(exc.ImageReadError, match=r"0\.png"):
        cache.extract(NumpyExtractor(), load_image_folder(root, image_size=16))
    assert cache.entries(include_incomplete=True) == []
