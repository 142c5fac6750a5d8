"""Sharded extraction and its Dask runner: plans, resume, merge, refusals, killed workers.

The extractors are NumPy ones (tests/conftest.py, tests/_dist_helpers.py), so Dask
worker processes start in about a second; the module shares one local cluster of two
worker processes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from _dist_helpers import (
    FailingExtractor,
    KillOnceExtractor,
    RecordingExtractor,
    synthetic_images,
)
from conftest import (
    Interrupt,
    NumpyExtractor,
    assert_features_close,
    count_calls,
    interrupt_after,
    make_images,
)

from transferkit import FeatureCache, ImageStream
from transferkit import distributed as dist
from transferkit import exceptions as exc
from transferkit.cache import _shards
from transferkit.distributed import (
    extract_distributed,
    extract_shard,
    merge_shards,
    plan_shards,
)

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def client():
    """A local Dask cluster of two single-threaded worker processes."""
    distributed = pytest.importorskip("distributed")
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=logging.CRITICAL, env={"PYTHONPATH": path},
    )
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture
def pythonpath(monkeypatch):
    """Worker processes started by extract_distributed import tests/ modules too."""
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)


def _x(n: int = 50, seed: int = 0) -> np.ndarray:
    return make_images(n, size=8, seed=seed)


def _reference(x: np.ndarray, batch_size: int = 4) -> np.ndarray:
    return NumpyExtractor(batch_size=batch_size).transform(x)


def _attempts(log: Path) -> list[tuple[int, str, int, int, str, int]]:
    rows = []
    for line in log.read_text().splitlines():
        pid, fp, n, start, threads, in_worker = line.split()
        rows.append((int(pid), fp, int(n), int(start), threads, int(in_worker)))
    return rows


# ------------------------------------------------------------------------ the plan
def test_plan_splits_whole_batches_evenly(tmp_path) -> None:
    x, ext, cache = _x(50), NumpyExtractor(batch_size=4), FeatureCache(tmp_path / "f.h5")
    plan = plan_shards(ext, x, cache, n_shards=3)  # 13 batches: 5 + 4 + 4
    assert [(s.start, s.stop) for s in plan.shards] == [(0, 20), (20, 36), (36, 50)]
    assert plan.key == cache.key(ext, x) and plan.batch_size == 4 and plan.n_shards == 3
    assert plan.shards[1].path == tmp_path / "f.h5.shards" / plan.key / "shard-00001-of-00003.h5"
    assert plan.pending() == [0, 1, 2]
    saved = json.loads((plan.directory / "plan.json").read_text())
    assert saved["n_shards"] == 3 and saved["shards"] == [[0, 20], [20, 36], [36, 50]]
    # n_shards=None reuses the saved plan; a new count makes a new one.
    assert plan_shards(ext, x, cache) == plan
    one = plan_shards(ext, x, cache, n_shards=1)
    assert [(s.start, s.stop) for s in one.shards] == [(0, 50)]
    every = plan_shards(ext, x, cache, n_shards=13)
    assert [s.n_images for s in every.shards] == [4] * 12 + [2]
    with pytest.raises(exc.InvalidInputError, match=r"`n_shards` must be at most .* 13 .*14"):
        plan_shards(ext, x, cache, n_shards=14)
    with pytest.raises(exc.InvalidInputError, match=r"`n_shards`.*at most the number of batches"):
        plan_shards(ext, _x(3), cache, n_shards=4, batch_size=1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_shards": 0}, exc.InvalidInputError, "`n_shards` must be a positive integer"),
        ({"n_shards": -2}, exc.InvalidInputError, "`n_shards`"),
        ({"n_shards": 2.5}, exc.InvalidTypeError, r"`n_shards`.*received 2\.5"),
        ({"n_shards": True}, exc.InvalidTypeError, "`n_shards`"),
        ({"n_shards": None}, exc.InvalidInputError, "no saved plan"),
        ({"n_shards": 2, "batch_size": 0}, exc.InvalidInputError, "`batch_size`"),
    ],
)
def test_plan_bad_arguments(tmp_path, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        plan_shards(NumpyExtractor(), _x(10), FeatureCache(tmp_path / "f.h5"), **kwargs)


def test_plan_bad_cache_images_and_extractor(tmp_path) -> None:
    with pytest.raises(exc.InvalidTypeError, match="`cache` must be a FeatureCache or the path"):
        plan_shards(NumpyExtractor(), _x(10), 3, n_shards=2)
    with pytest.raises(exc.InvalidInputError, match="`images` must have 4 dimensions"):
        plan_shards(NumpyExtractor(), np.zeros((4, 8, 8)), tmp_path / "f.h5", n_shards=2)
    with pytest.raises(exc.InvalidTypeError, match="`extractor` must be a transferkit"):
        plan_shards(object(), _x(10), tmp_path / "f.h5", n_shards=2)


# ------------------------------------------------------------------ shards and merge
def test_shards_resume_independently_and_merge_equals_single_process(tmp_path) -> None:
    x, cache = _x(50), FeatureCache(tmp_path / "f.h5")
    reference = FeatureCache(tmp_path / "ref.h5").extract(NumpyExtractor(batch_size=4), x)
    plan = plan_shards(NumpyExtractor(batch_size=4), x, cache, n_shards=3)
    extract_shard(NumpyExtractor(batch_size=4), x, plan, 0)
    with pytest.raises(Interrupt):
        extract_shard(interrupt_after(NumpyExtractor(batch_size=4), 2), x, plan, 1)
    status = plan.status()
    assert status[0] is None and "unfinished (8 of 16 images)" in status[1]
    assert "missing" in status[2]
    assert plan.pending() == [1, 2]
    # Shard 0 is left alone; shard 1 resumes after its two flushed batches.
    ext = NumpyExtractor(batch_size=4)
    calls = count_calls(ext)
    result = extract_shard(ext, x, plan, 1)
    assert calls == [8] and result["resumed_from"] == 8 and result["n_images"] == 16
    extract_shard(ext, x, plan, 2)
    assert calls == [8, 0]
    assert extract_shard(ext, x, plan, 0)["resumed_from"] == 20 and calls == [8, 0]  # done
    key = merge_shards(cache, plan, labels=np.arange(50) % 3, class_names=["a", "b", "c"])
    assert key == cache.key(NumpyExtractor(), x)
    out = cache.load(key)
    np.testing.assert_array_equal(out, reference)
    assert out.dtype == np.float32 and out.shape == (50, 12)
    (entry,) = cache.entries()
    assert entry.n_shards == 3 and entry.complete and entry.n_done == 50 and entry.nbytes > 0
    assert entry.has_labels and entry.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(cache.labels(key), np.arange(50) % 3)
    # Each shard's entry records its place in the job.
    with h5py.File(plan.shards[1].path, "r") as f:
        attrs = f["entries"][plan.shards[1].key].attrs
        assert (attrs["parent_key"], attrs["shard_index"], attrs["start"], attrs["stop"]) == (
            key, 1, 20, 36)


def test_merged_entry_is_a_cache_hit_and_reads_lazily(tmp_path) -> None:
    x, cache = _x(50), FeatureCache(tmp_path / "f.h5")
    reference = _reference(x)
    plan = plan_shards(NumpyExtractor(batch_size=4), x, cache, n_shards=4)
    for i in range(4):
        extract_shard(NumpyExtractor(batch_size=4), x, plan, i)
    merge_shards(cache, plan)
    ext = NumpyExtractor(batch_size=4)
    calls = count_calls(ext)
    np.testing.assert_array_equal(cache.extract(ext, x), reference)
    assert calls == []  # served from the shards, nothing recomputed
    np.testing.assert_array_equal(cache.extract(ext, x, labels=np.zeros(50, int)), reference)
    assert calls == [] and cache.labels(plan.key).shape == (50,)
    lazy = cache.extract(ext, x, lazy=True)
    assert lazy.shape == (50, 12) and len(lazy) == 50
    for index in [slice(3, 31), slice(None, None, 7), 13, -1, [40, 2, 2, 19], np.arange(50) > 44,
                  (slice(10, 40), 3), (slice(None), slice(2, 5)), (), Ellipsis]:
        np.testing.assert_array_equal(lazy[index], reference[index], err_msg=str(index))
    np.testing.assert_array_equal(np.asarray(lazy), reference)
    np.testing.assert_array_equal(np.concatenate(list(lazy.iter_batches(9))), reference)
    with pytest.raises(IndexError):
        lazy[50]
    # Other HDF5 tools see one (virtual) dataset.
    with h5py.File(cache.path, "r") as f:
        ds = f["entries"][plan.key]["features"]
        assert ds.is_virtual and ds.shape == (50, 12)
        np.testing.assert_array_equal(ds[()], reference)


def test_merge_refuses_an_incomplete_set_and_names_the_missing_shards(tmp_path) -> None:
    x, cache = _x(50), FeatureCache(tmp_path / "f.h5")
    plan = plan_shards(NumpyExtractor(batch_size=4), x, cache, n_shards=4)
    extract_shard(NumpyExtractor(batch_size=4), x, plan, 0)
    with pytest.raises(Interrupt):
        extract_shard(interrupt_after(NumpyExtractor(batch_size=4), 1), x, plan, 2)
    with pytest.raises(exc.ShardsIncompleteError) as info:
        merge_shards(cache, plan)
    assert info.value.missing == (1, 2, 3)
    message = str(info.value)
    assert "3 of the 4 shards" in message and "shards [1, 2, 3]" in message
    assert "shard 1 (images 16..27)" in message and "is missing" in message
    assert "shard 2 (images 28..39)" in message and "unfinished (4 of 12 images)" in message
    assert "Run `extract_distributed`" in message
    assert not cache.path.exists() or cache.entries(include_incomplete=True) == []
    with pytest.raises(exc.InvalidInputError, match="`labels` must have one label per image"):
        merge_shards(cache, plan, labels=[1, 2])
    with pytest.raises(exc.InvalidTypeError, match="`plan` must be a ShardPlan"):
        merge_shards(cache, "plan")
    with pytest.raises(exc.InvalidInputError, match="`plan` was made for the cache"):
        merge_shards(tmp_path / "other.h5", plan)


def _merged(tmp_path: Path, n_shards: int = 3):
    x, cache = _x(50), FeatureCache(tmp_path / "f.h5")
    plan = plan_shards(NumpyExtractor(batch_size=4), x, cache, n_shards=n_shards)
    for i in range(n_shards):
        extract_shard(NumpyExtractor(batch_size=4), x, plan, i)
    merge_shards(cache, plan)
    return x, cache, plan


def test_a_lost_shard_is_never_served(tmp_path) -> None:
    x, cache, plan = _merged(tmp_path)
    lazy = cache.load(plan.key, lazy=True)
    plan.shards[1].path.unlink()
    for call in (lambda: cache.load(plan.key), lambda: cache.load(plan.key, lazy=True),
                 lambda: cache.extract(NumpyExtractor(batch_size=4), x), lambda: lazy[25:30]):
        with pytest.raises(exc.ShardsMissingError) as info:
            call()
        assert info.value.missing == (1,)
        assert isinstance(info.value, exc.CacheCorruptedError)
        message = str(info.value)
        assert "shard 1 (images 20..35)" in message and "shard-00001-of-00003.h5" in message
        assert "is missing" in message and "never served filled in" in message
    np.testing.assert_array_equal(lazy[:20], _reference(x)[:20])  # other shards still read
    # extract_distributed re-extracts only the lost shard, without a cluster if not needed.
    ext = NumpyExtractor(batch_size=4)
    calls = count_calls(ext)
    with pytest.raises(exc.MissingDependencyError):  # the shard needs a cluster: none here
        _no_dask(lambda: extract_distributed(ext, x, cache))
    extract_shard(ext, x, plan, 1)
    assert calls == [0]
    np.testing.assert_array_equal(extract_distributed(ext, x, cache), _reference(x))
    assert calls == [0]


def _no_dask(fn):
    saved = {k: sys.modules.get(k) for k in ("distributed",)}
    sys.modules["distributed"] = None  # type: ignore[assignment]
    try:
        return fn()
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_a_damaged_shard_is_refused_and_repair_recovers(tmp_path) -> None:
    x, cache, plan = _merged(tmp_path)
    path = plan.shards[2].path
    with h5py.File(path, "r") as f:
        offset = f["entries"][plan.shards[2].key]["features"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + 8)
        fh.write(b"\xff" * 16)
    with pytest.raises(exc.ShardsMissingError, match=r"shard 2 .*cannot be read") as info:
        cache.load(plan.key)
    assert info.value.missing == (2,)
    report = cache.repair()
    assert report["dropped"] == [plan.key] and len(report["shard_backups"]) == 1
    assert cache.entries() == [] and plan.pending() == [2]
    assert Path(report["shard_backups"][0]).exists()  # the damaged file is kept aside
    extract_shard(NumpyExtractor(batch_size=4), x, plan, 2)
    merge_shards(cache, plan)
    np.testing.assert_array_equal(cache.load(plan.key), _reference(x))
    # repair keeps an intact sharded entry as it is.
    assert cache.repair()["kept"] == [plan.key]
    np.testing.assert_array_equal(cache.load(plan.key), _reference(x))


def test_delete_removes_the_shard_files(tmp_path) -> None:
    x, cache, plan = _merged(tmp_path)
    other = cache.extract(NumpyExtractor(grid=3), x)
    cache.delete(plan.key)
    assert not plan.directory.exists()
    assert [e.key for e in cache.entries()] == [cache.key(NumpyExtractor(grid=3), x)]
    np.testing.assert_array_equal(cache.extract(NumpyExtractor(grid=3), x), other)
    # An unfinished sharded extraction (never merged) is deleted too.
    plan = plan_shards(NumpyExtractor(batch_size=4), x, cache, n_shards=2)
    extract_shard(NumpyExtractor(batch_size=4), x, plan, 0)
    cache.delete(plan.key)
    assert not plan.directory.exists()
    with pytest.raises(exc.InvalidInputError, match="No entry"):
        cache.delete(plan.key)


def test_the_cache_folder_can_be_moved(tmp_path) -> None:
    x, cache, plan = _merged(tmp_path / "a")
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = FeatureCache(tmp_path / "b" / "f.h5")
    np.testing.assert_array_equal(moved.load(plan.key), _reference(x))
    with h5py.File(moved.path, "r") as f:  # relative source paths
        np.testing.assert_array_equal(f["entries"][plan.key]["features"][()], _reference(x))


def test_a_complete_ordinary_entry_is_kept_by_the_merge(tmp_path) -> None:
    x, cache = _x(50), FeatureCache(tmp_path / "f.h5")
    cache.extract(NumpyExtractor(batch_size=4), x)
    plan = plan_shards(NumpyExtractor(batch_size=4), x, cache, n_shards=2)
    for i in range(2):
        extract_shard(NumpyExtractor(batch_size=4), x, plan, i)
    merge_shards(cache, plan, labels=np.ones(50, int))
    (entry,) = cache.entries()
    assert entry.n_shards == 0 and entry.has_labels


def test_extract_shard_checks_its_arguments(tmp_path) -> None:
    x, cache = _x(50), FeatureCache(tmp_path / "f.h5")
    plan = plan_shards(NumpyExtractor(batch_size=4), x, cache, n_shards=2)
    with pytest.raises(exc.InvalidInputError, match=r"`index` must be an int in 0\.\.1"):
        extract_shard(NumpyExtractor(), x, plan, 2)
    with pytest.raises(exc.InvalidInputError, match="`images` are not the images the plan"):
        extract_shard(NumpyExtractor(), _x(50, seed=1), plan, 0)
    with pytest.raises(exc.CacheError, match="fingerprint .* differs"):
        extract_shard(NumpyExtractor(grid=3), x, plan, 0)
    with pytest.raises(exc.InvalidTypeError, match="`plan` must be a ShardPlan"):
        extract_shard(NumpyExtractor(), x, None, 0)
    assert plan.pending() == [0, 1]  # nothing was written


def test_streams_h5py_datasets_and_folders_read_only_their_range(tmp_path) -> None:
    from PIL import Image

    from transferkit.datasets import load_image_folder

    stream = ImageStream(synthetic_images, 30, (8, 8), fingerprint="synthetic-8px")
    x = synthetic_images(0, 30)
    with h5py.File(tmp_path / "images.h5", "w") as f:
        f["x"] = x
    for c, name in enumerate(["cat", "dog"]):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i in range(15):
            Image.fromarray(x[15 * c + i]).save(tmp_path / "folder" / name / f"{i:02d}.png")
    folder = load_image_folder(tmp_path / "folder", image_size=None)
    with h5py.File(tmp_path / "images.h5", "r") as f:
        for k, images in enumerate([stream, f["x"], folder]):
            cache = FeatureCache(tmp_path / f"c{k}.h5")
            plan = plan_shards(NumpyExtractor(batch_size=4), images, cache, n_shards=3)
            for i in range(3):
                extract_shard(NumpyExtractor(batch_size=4), images, plan, i)
            merge_shards(cache, plan)
            expected = _reference(np.asarray(images[0:30]))
            np.testing.assert_array_equal(cache.load(plan.key), expected, err_msg=str(k))
            assert plan.key == cache.key(NumpyExtractor(), images)


def test_import_transferkit_imports_neither_dask_nor_tensorflow() -> None:
    code = (
        "import sys, transferkit, transferkit.distributed\n"
        "assert transferkit.extract_distributed is transferkit.distributed.extract_distributed\n"
        "bad = [m for m in ('dask', 'distributed', 'tensorflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------- Dask
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"client": object(), "address": "tcp://x:1"}, exc.InvalidInputError,
         "at most one of `client` and `address`"),
        ({"client": object()}, exc.InvalidTypeError, "`client` must be a dask.distributed"),
        ({"address": 8786}, exc.InvalidTypeError, "`address` must be a scheduler address"),
        ({"retries": -1}, exc.InvalidInputError, "`retries` must be a non-negative integer"),
        ({"n_workers": 0}, exc.InvalidInputError, "`n_workers`"),
        ({"threads_per_worker": "2"}, exc.InvalidTypeError, "`threads_per_worker`"),
        ({"tf_threads": 0}, exc.InvalidInputError, "`tf_threads`"),
        ({"n_shards": 0}, exc.InvalidInputError, "`n_shards`"),
        ({"lazy": "yes"}, exc.InvalidTypeError, "`lazy` must be True or False"),
        ({"labels": [1, 2]}, exc.InvalidInputError, "`labels` must have one label"),
    ],
)
def test_extract_distributed_bad_arguments(tmp_path, kwargs, error, match) -> None:
    pytest.importorskip("distributed")
    with pytest.raises(error, match=match):
        extract_distributed(NumpyExtractor(), _x(10), tmp_path / "f.h5", **kwargs)
    assert not (tmp_path / "f.h5.shards").exists()


def test_unreachable_scheduler_is_named(tmp_path, monkeypatch) -> None:
    pytest.importorskip("distributed")
    monkeypatch.setattr(dist._dask, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(exc.InvalidInputError, match="could not connect to 'tcp://127.0.0.1:9'"):
        extract_distributed(NumpyExtractor(), _x(10), tmp_path / "f.h5", n_shards=2,
                            address="tcp://127.0.0.1:9")


def test_missing_dask_says_what_to_install(tmp_path) -> None:
    with pytest.raises(exc.MissingDependencyError, match=r"transferkit\[distributed\]"):
        _no_dask(lambda: extract_distributed(NumpyExtractor(), _x(10), tmp_path / "f.h5"))


def test_local_cluster_runs_the_shards_on_both_workers(client, tmp_path, monkeypatch) -> None:
    x, log = _x(64), tmp_path / "attempts.log"
    ext = RecordingExtractor(batch_size=4, delay=0.02, log=str(log))
    cache = FeatureCache(tmp_path / "f.h5")
    stream = ImageStream(lambda a, b: x[a:b], 64, (8, 8), fingerprint="x64",
                         labels=np.arange(64) % 2)
    out = extract_distributed(ext, stream, cache, client=client, n_shards=4)
    np.testing.assert_array_equal(out, FeatureCache(tmp_path / "ref.h5").extract(
        NumpyExtractor(batch_size=4), x))
    attempts = _attempts(log)
    assert len(attempts) == 4 and all(a[5] == 1 for a in attempts)  # in Dask workers
    assert len({a[0] for a in attempts}) == 2  # both worker processes took shards
    (entry,) = cache.entries()
    assert entry.n_shards == 4 and entry.key == cache.key(ext, stream) and entry.has_labels
    np.testing.assert_array_equal(cache.labels(entry.key), np.arange(64) % 2)
    # Done: a second call reads the merged entry and submits nothing.
    np.testing.assert_array_equal(extract_distributed(ext, stream, cache, client=client), out)
    assert len(_attempts(log)) == 4
    # The default shard count is twice the cluster's worker threads; a relative cache
    # path is the client's (the workers run in other folders).
    monkeypatch.chdir(tmp_path)
    lazy = extract_distributed(ext, x, "g.h5", address=client.scheduler.address, lazy=True)
    (entry,) = FeatureCache(tmp_path / "g.h5").entries()
    assert entry.n_shards == 4 and lazy.shape == (64, 12)
    assert len(list((tmp_path / "g.h5.shards" / entry.key).glob("shard-*-of-00004.h5"))) == 4


def test_a_failing_shard_is_retried_then_named_and_the_others_are_kept(client, tmp_path) -> None:
    x, log = _x(48), tmp_path / "attempts.log"
    x[[0, 12, 36], 0, 0, 0] = 0
    x[24, 0, 0, 0] = 7  # the first image of shard 2 (of 4): that shard always fails
    ext = FailingExtractor(batch_size=4, log=str(log), poison=7)
    cache = FeatureCache(tmp_path / "f.h5")
    with pytest.raises(exc.ShardsIncompleteError) as info:
        extract_distributed(ext, x, cache, client=client, n_shards=4, retries=1)
    assert info.value.missing == (2,)
    message = str(info.value)
    assert "1 of the 4 shards" in message and "shard 2 (images 24..35)" in message
    assert "this shard always fails" in message and "after 1 retries" in message
    assert "call `extract_distributed` again to resume" in message
    plan = plan_shards(ext, x, cache)
    assert plan.pending() == [2]
    shard2 = _shards.shard_data_fingerprint(plan.data_fingerprint, 24, 36)[:12]
    assert sum(1 for a in _attempts(log) if a[1] == shard2) == 2  # tried, then retried once
    assert cache.entries() == []


def test_a_killed_worker_does_not_corrupt_the_result_its_shard_resumes(client, tmp_path) -> None:
    x, log, marker = _x(160), tmp_path / "attempts.log", tmp_path / "killed"
    ext = KillOnceExtractor(batch_size=4, delay=0.03, log=str(log), marker=str(marker),
                            kill_at=3, settle=1.0)
    cache = FeatureCache(tmp_path / "f.h5")
    before = set(client.scheduler_info()["workers"])
    out = extract_distributed(ext, x, cache, client=client, n_shards=4, retries=0)
    # A worker process was SIGKILLed at the 4th batch of a shard, after 3 were flushed.
    killed_pid, killed_shard, killed_at = marker.read_text().split()
    assert int(killed_at) == 12
    attempts = [a for a in _attempts(log) if a[1] == killed_shard]
    assert [a[3] for a in attempts] == [0, 12]  # resumed at image 12, not started over
    assert attempts[0][0] == int(killed_pid) and attempts[1][0] != int(killed_pid)
    assert len(_attempts(log)) == 5  # the three other shards ran once each
    print(f"worker pid {killed_pid} SIGKILLed at image {killed_at} of shard {killed_shard}; "
          f"attempts (pid, start): {[(a[0], a[3]) for a in attempts]}")
    # The result equals a single-process extraction, row for row.
    reference = FeatureCache(tmp_path / "ref.h5").extract(NumpyExtractor(batch_size=4), x)
    np.testing.assert_array_equal(out, reference)
    np.testing.assert_array_equal(cache.load(cache.key(ext, x)), reference)
    # The nanny restarted the killed worker.
    deadline = time.time() + 60
    while len(client.scheduler_info()["workers"]) < 2 and time.time() < deadline:
        time.sleep(0.2)
    workers = set(client.scheduler_info()["workers"])
    assert len(workers) == 2 and workers != before


def test_default_local_cluster_sizes_tensorflow_threads(tmp_path, pythonpath) -> None:
    pytest.importorskip("distributed")
    x, log = _x(32), tmp_path / "attempts.log"
    ext = RecordingExtractor(batch_size=4, log=str(log))
    out = extract_distributed(ext, x, tmp_path / "f.h5", n_workers=2, n_shards=2)
    np.testing.assert_array_equal(out, _reference(x))
    expected = str(max(1, dist._dask.cpu_count() // 2))
    attempts = _attempts(log)
    assert len(attempts) == 2 and all(a[4] == expected and a[5] == 1 for a in attempts)


def test_cli_extract_with_shards_runs_a_local_cluster(tmp_path, pythonpath) -> None:
    """`transferkit extract --shards 2 --workers 2`: a real (TF) backbone in two workers."""
    pytest.importorskip("distributed")
    import contextlib
    import io

    from PIL import Image

    from transferkit import cli
    from transferkit.datasets import load_image_folder

    x = make_images(16, size=32, seed=5)
    for c, name in enumerate(["a", "b"]):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(x[8 * c + i]).save(tmp_path / "photos" / name / f"{i}.png")
    argv = ["extract", "--image-folder", str(tmp_path / "photos"), "--image-size", "32",
            "--extractor", "vgg16", "--weights", "none", "--layer", "block1_pool",
            "--batch-size", "4", "--cache", str(tmp_path / "f.h5")]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([*argv, "--shards", "2", "--workers", "2", "--progress", "off"])
    assert code == 0, err.getvalue()
    key = out.getvalue().strip().splitlines()[-1].split()[-1]
    cache = FeatureCache(tmp_path / "f.h5")
    (entry,) = cache.entries()
    assert entry.key == key and entry.n_shards == 2 and entry.class_names == ["a", "b"]
    from transferkit import create_extractor

    vgg = create_extractor("vgg16", weights=None, layer="block1_pool", batch_size=4)
    images = load_image_folder(tmp_path / "photos", image_size=(32, 32))
    assert key == cache.key(vgg, images)
    # (TensorFlow in a worker runs one thread, here two: equal up to rounding)
    assert_features_close(cache.load(key), vgg.transform(np.asarray(images)))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert cli.main([*argv, "--workers", "2", "--scheduler", "tcp://x:1"]) == 2  # usage
    assert "Pass one of the two" in err.getvalue()



def test_shards_of_image_lists_hf_datasets_and_py_datasets(tmp_path) -> None:
    """Other sources split into shards, and each shard's part pickles for a remote worker."""
    import pickle

    import keras
    import tensorflow as tf
    from PIL import Image

    from transferkit.datasets import as_image_source, from_keras_data, load_image_list
    from transferkit.distributed._shard import shard_payload

    x = synthetic_images(0, 12)
    for i in range(12):
        Image.fromarray(x[i]).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "list.csv").write_text(
        "path,label\n" + "".join(f"{i:02d}.png,{i % 2}\n" for i in range(12)))

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[4 * i: 4 * i + 4]

    sources = {"list": load_image_list(tmp_path / "list.csv", image_size=None),
               "pydataset": Batches()}
    datasets = pytest.importorskip("datasets")
    sources["hf"] = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(im) for im in x]},
        features=datasets.Features({"image": datasets.Image()}))
    for name, images in sources.items():
        cache = FeatureCache(tmp_path / f"{name}.h5")
        plan = plan_shards(NumpyExtractor(batch_size=4), images, cache, n_shards=3)
        for i in range(3):
            extract_shard(NumpyExtractor(batch_size=4), images, plan, i)
        merge_shards(cache, plan)
        np.testing.assert_array_equal(cache.load(plan.key), _reference(x), err_msg=name)
        if name != "pydataset":  # (this test's PyDataset class is local: not picklable)
            part, lo, hi = pickle.loads(pickle.dumps(
                shard_payload(as_image_source(images), 4, 8)))
            np.testing.assert_array_equal(np.asarray(part[lo:hi]), x[4:8], err_msg=name)
    with pytest.raises(exc.InvalidTypeError, match="cannot be sent to another process"):
        shard_payload(from_keras_data(tf.data.Dataset.from_tensor_slices(x)), 0, 4)
