"""Atomic writes: the old file or the whole new one, never half, no temporary left behind."""

from __future__ import annotations

import pytest

from transferkit._atomic import atomic_path, atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_the_whole_file(tmp_path) -> None:
    target = tmp_path / "sub" / "f.json"
    atomic_write_text(target, "one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path) -> None:
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk"), atomic_path(target, suffix=".keras") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".keras")
        tmp.write_text("half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
