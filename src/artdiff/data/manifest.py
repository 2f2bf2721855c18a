"""The dataset layout every command reads: DIR/images/… and DIR/manifest.jsonl, one record per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artdiff.errors import UserError
from artdiff.utils.io import read_jsonl, write_jsonl

MANIFEST_NAME = "manifest.jsonl"
REPORT_NAME = "report.json"
IMAGES_DIR = "images"


def write_manifest(dataset_dir: Path, records: list[dict[str, Any]]) -> Path:
    """Write the manifest atomically; each record's "image" is a path relative to the dataset."""
    path = Path(dataset_dir) / MANIFEST_NAME
    write_jsonl(path, records)
    return path


def read_manifest(dataset_dir: Path) -> list[dict[str, Any]]:
    """Read a dataset's records, with a clear error when the folder is not a dataset."""
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise UserError(f"{dataset_dir} is not an artdiff dataset (no {MANIFEST_NAME}); "
                        "make one with `artdiff prepare SRC DST`")
    return read_jsonl(path)
