"""Run prepare in-process on small folders and read what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from artdiff.data.prepare import PrepareResult, prepare_folder
from artdiff.data.prepare_config import PrepareConfig


def run(src: Path, dst: Path, **options) -> PrepareResult:
    """Prepare src into dst serially, without a progress bar."""
    options.setdefault("size", 32)
    options.setdefault("workers", 1)
    options.setdefault("progress", False)
    return prepare_folder(PrepareConfig(src=src, dst=dst, **options))


def records(dst: Path) -> list[dict]:
    """The manifest's records."""
    return [json.loads(line) for line in (dst / "manifest.jsonl").read_text().splitlines()]


def report(dst: Path) -> dict:
    """The run's report."""
    return json.loads((dst / "report.json").read_text())


def pixels(dst: Path, record: dict) -> np.ndarray:
    """An output image as an int array (H, W, 3)."""
    return np.asarray(Image.open(dst / record["image"]).convert("RGB")).astype(int)


def by_source(dst: Path) -> dict[str, dict]:
    """Records keyed by source path (first output of each source)."""
    out: dict[str, dict] = {}
    for record in records(dst):
        out.setdefault(record["source"], record)
    return out
