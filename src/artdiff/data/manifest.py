"""The dataset layout every command reads: DIR/images/… and DIR/manifest.jsonl, one record per image."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from artdiff.errors import UserError
from artdiff.utils.io import write_jsonl

MANIFEST_NAME = "manifest.jsonl"
REPORT_NAME = "report.json"
IMAGES_DIR = "images"
FIX = "fix or remove the line, or re-make the dataset with `artdiff prepare`"


def write_manifest(dataset_dir: Path, records: list[dict[str, Any]]) -> Path:
    """Write the manifest atomically; each record's "image" is a path relative to the dataset."""
    path = Path(dataset_dir) / MANIFEST_NAME
    write_jsonl(path, records)
    return path


def read_manifest(dataset_dir: Path) -> list[dict[str, Any]]:
    """Read a dataset's records, checked: a bad line, or an image outside the dataset, is an error naming it."""
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise UserError(f"{dataset_dir} is not an artdiff dataset (no {MANIFEST_NAME}); "
                        "make one with `artdiff prepare SRC DST`")
    root = Path(dataset_dir).resolve()
    records = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if line.strip():
            records.append(_check_record(_parse(line, f"{path}:{number}"), root, f"{path}:{number}"))
    return records


def _parse(line: bytes, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{where}: the line is not UTF-8 text; {FIX}") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{where}: the line is not valid JSON ({error.msg}, column {error.colno}); {FIX}") from None
    if not isinstance(record, dict):
        raise UserError(f"{where}: the line is not a JSON object with an 'image' field; {FIX}")
    return record


def _check_record(record: dict[str, Any], root: Path, where: str) -> dict[str, Any]:
    """Check the fields every reader relies on; `image` must name a file inside the dataset folder."""
    if "image" not in record:
        raise UserError(f"{where}: the record has no 'image' (the image's path inside the dataset); {FIX}")
    image = record["image"]
    if not isinstance(image, str) or not image.strip() or "\0" in image:
        raise UserError(f"{where}: 'image' must be a relative path such as images/a.png, not {image!r}; {FIX}")
    if PurePosixPath(image).is_absolute() or PureWindowsPath(image).is_absolute() or PureWindowsPath(image).drive \
            or not (root / image).resolve().is_relative_to(root):
        # Resolved, so that neither "../x" nor a link inside the dataset can reach other files on the machine.
        raise UserError(f"{where}: image {image!r} is outside the dataset {root}; a manifest may only name files "
                        f"inside its own folder; {FIX}")
    caption = record.get("caption")
    if caption is not None and not isinstance(caption, str):
        raise UserError(f"{where}: 'caption' must be text, not {type(caption).__name__}; {FIX}")
    labels = record.get("labels")
    if labels is not None and not (isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values())):
        raise UserError(f"{where}: 'labels' must be an object of text labels such as {{\"style\": \"rothko\"}}; {FIX}")
    return record

