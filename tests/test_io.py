"""Atomic writes (fastdeberta.io): complete or untouched, never partial; normal permissions."""

from __future__ import annotations

import os
import stat

import pytest

from fastdeberta.io import atomic_folder, atomic_path, atomic_write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "vectors.npy"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.npy"]


def test_a_completed_write_replaces_the_file(tmp_path):
    target = tmp_path / "sub" / "config.json"
    atomic_write_text(target, "{}")
    atomic_write_text(target, '{"a": 1}')
    assert target.read_text() == '{"a": 1}'
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json"]


def test_written_files_and_folders_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
        with atomic_folder(tmp_path / "model") as folder:
            (folder / "w").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755


def test_folder_is_swapped_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    with atomic_folder(target) as folder:
        (folder / "a").write_text("1")
    with pytest.raises(ValueError), atomic_folder(target) as folder:
        (folder / "b").write_text("2")
        raise ValueError("weights failed")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic_folder(target) as folder:
        (folder / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]      # no temporary or old copy left
