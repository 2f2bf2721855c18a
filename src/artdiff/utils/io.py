"""Atomic file writes (temp file + rename) and JSON Lines helpers."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from artdiff.errors import UserError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` and rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The suffix is kept so that writers which pick a format from it (PIL) still work.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{path.suffix}.tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes so that readers see either the old file or the whole new one."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    """Write indented JSON atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Write JSON Lines atomically, one record per line."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read JSON Lines; a torn last line (an interrupted append) is ignored."""
    records = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                break  # an append cut off by a crash: the work it described is redone
            raise
    return records


class JsonlAppender:
    """Append records to a journal, one flushed line each, keeping the file open between appends.

    Lines are flushed, not fsynced: they survive the process being killed, and a line torn by a
    power cut is dropped by read_jsonl, so that work is simply redone.
    """

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as a line and flush it."""
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        """Close the journal."""
        self.handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_new_folder(out: Path) -> None:
    """Refuse an OUT that is a file or a non-empty folder: writers never replace what is there (anyone's files)."""
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise UserError(f"{out} already exists{' as a file' if out.is_file() else ' and is not empty'}; pass a new "
                        "folder for the converted model (or remove it first)")


def publish_folder(tmp: Path, out: Path) -> None:
    """Rename a finished folder written beside OUT into place, checking again that nothing appeared there."""
    check_new_folder(out)
    if out.is_dir():
        out.rmdir()  # empty, as checked; os.replace cannot put a folder over a folder
    os.replace(tmp, out)
