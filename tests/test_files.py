"""Atomic writes: a reader sees the old file or the new one, and a failed write leaves no temporary file."""

from __future__ import annotations

import json

import pytest

from ftcore import files


def test_writes_replace_the_file_whole(tmp_path):
    path = tmp_path / "metrics.json"
    files.save_json({"a": 1}, path)
    files.save_json({"a": 2, "text": "中文"}, path)
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 2, "text": "中文"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "labels.json"
    files.save_text("old", path)

    def fails_halfway(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        files.atomic_write(path, fails_halfway)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.json"]


def test_the_file_and_its_directory_are_flushed(tmp_path, monkeypatch):
    flushed = []
    monkeypatch.setattr(files, "fsync", lambda p: flushed.append(str(p)))
    path = tmp_path / "a.txt"
    files.save_text("x", path)
    assert flushed == [str(tmp_path / ".a.txt.tmp"), str(tmp_path)]
