"""A file written whole or not at all, synced with its folder."""
import os
import stat

import pytest

from pipeline import atomic_write
from pipeline.atomic_write import write_atomically


def test_the_text_replaces_the_file_and_nothing_else_is_left_in_the_folder(tmp_path):
    path = tmp_path / "state" / "cache.json"
    write_atomically(path, "[1]")
    write_atomically(path, '["é"]\r\n')
    assert path.read_bytes() == '["é"]\r\n'.encode()
    assert [p.name for p in path.parent.iterdir()] == ["cache.json"]


def test_the_file_is_synced_before_it_replaces_the_old_one_and_the_folder_after(tmp_path, monkeypatch):
    done = []
    sync, replace = os.fsync, os.replace

    def fsync(descriptor):
        done.append("sync folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "sync file")
        sync(descriptor)

    def replaced(source, target):
        done.append("replace")
        replace(source, target)

    monkeypatch.setattr(atomic_write.os, "fsync", fsync)
    monkeypatch.setattr(atomic_write.os, "replace", replaced)
    write_atomically(tmp_path / "checkpoint.json", "{}")
    assert done == ["sync file", "replace", "sync folder"]


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / "builds.csv"
    path.write_text("old\n")

    def disk_full(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_write.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["builds.csv"]
