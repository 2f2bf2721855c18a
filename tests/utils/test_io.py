"""Atomic writes leave either the old file or the whole new one, with ordinary permissions."""

import os

import pytest

from artdiff.utils.io import JsonlAppender, atomic_path, atomic_write_text, read_jsonl


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o644


def test_journal_survives_a_torn_last_line(tmp_path):
    with JsonlAppender(tmp_path / "j.jsonl") as journal:
        journal.append({"a": 1})
        journal.append({"b": 2})
    with open(tmp_path / "j.jsonl", "a") as handle:
        handle.write('{"c": ')  # a crash in the middle of an append
    assert read_jsonl(tmp_path / "j.jsonl") == [{"a": 1}, {"b": 2}]
