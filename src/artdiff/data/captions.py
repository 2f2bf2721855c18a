"""Captions from filenames (A1111's [filewords] rule), sidecar files, or a CSV/JSONL metadata table."""

from __future__ import annotations

import csv
import json
import re
import string
import sys
from dataclasses import dataclass
from pathlib import Path

from artdiff.errors import UserError
from artdiff.utils.images import ImageReadError, open_regular_file

SIDECAR_EXTENSIONS = (".txt", ".caption")
SIDECAR_MAX_BYTES = 64 * 1024  # a caption is a line or a paragraph; more is read no further
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A1111 strips leading numbering such as "00012-" or "3 " (modules/textual_inversion/dataset.py).
LEADING_NUMBERS = re.compile(r"^[-\d]+\s*")
# Copy markers and trailing numbering left by file managers: "name (2)", "name_copy", "name-01".
TRAILING_NUMBERS = re.compile(r"(\s*\(\d+\)|[\s_-]+copy|[\s_-]+\d+)+$", re.IGNORECASE)
SEPARATORS = re.compile(r"[_\-.+]+")


def filename_caption(path: Path, word_regex: re.Pattern[str] | None = None) -> str:
    """Caption from a file name: extension, numbering and separators removed (A1111 [filewords])."""
    text = LEADING_NUMBERS.sub("", Path(path).stem)
    if word_regex is not None:
        return " ".join(word_regex.findall(text)).strip()
    text = TRAILING_NUMBERS.sub("", text)
    return " ".join(SEPARATORS.sub(" ", text).split())


def sidecar_caption(path: Path) -> str | None:
    """Caption from `name.txt` or `name.caption` beside the image, if there is one."""
    for extension in SIDECAR_EXTENSIONS:
        sidecar = Path(path).with_suffix(extension)
        try:
            with open_regular_file(sidecar, max_bytes=None) as handle:  # never a FIFO or a device
                data = handle.read(SIDECAR_MAX_BYTES)
        except FileNotFoundError:
            continue
        except (OSError, ImageReadError):
            return None  # unreadable, empty or not a file: the next caption source applies
        text = CONTROL_CHARACTERS.sub(" ", data.decode("utf-8", errors="replace"))
        return " ".join(text.split())
    return None


@dataclass
class MetadataTable:
    """Rows of a CSV or JSONL file keyed by the image they describe (relative path, file name or stem)."""

    rows: dict[str, dict[str, str]]
    columns: list[str]

    @classmethod
    def load(cls, path: Path, key_column: str) -> MetadataTable:
        """Read a .csv/.tsv or .jsonl table; `key_column` names the image file of each row."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"metadata file {path} does not exist")
        if not path.is_file():
            raise UserError(f"metadata file {path} is not a regular file; pass a .csv, .tsv or .jsonl file")
        records = _read_records(path)
        columns = sorted({c for r in records for c in r})
        if records and key_column not in columns:
            raise UserError(f"metadata file {path} has no column {key_column!r} (columns: {', '.join(columns)}); "
                            "name the column that holds file names with --metadata-key")
        rows: dict[str, dict[str, str]] = {}
        for record in records:
            key = str(record.get(key_column, "")).strip().replace("\\", "/")
            if key:
                rows[key] = {k: "" if v is None else str(v) for k, v in record.items()}
        return cls(rows=rows, columns=columns)

    def lookup(self, relative_path: str) -> dict[str, str] | None:
        """The row for an image, matched by relative path, then file name, then stem."""
        name = relative_path.rsplit("/", 1)[-1]
        for key in (relative_path, name, name.rsplit(".", 1)[0]):
            if key in self.rows:
                return self.rows[key]
        return None

    def __post_init__(self) -> None:
        # Index file names and stems too, so a row keyed "Impressionism/monet.jpg" finds "monet.jpg".
        for key, row in list(self.rows.items()):
            name = key.rsplit("/", 1)[-1]
            self.rows.setdefault(name, row)
            self.rows.setdefault(name.rsplit(".", 1)[0], row)


def _read_records(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise UserError(f"metadata file {path} line {number} is not valid JSON") from None
                if not isinstance(record, dict):
                    raise UserError(f"metadata file {path} line {number} is not a JSON object")
                records.append(record)
        return records
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    records, ragged = [], []
    try:
        for row in reader:
            if row.pop(None, None) is not None:  # more fields than the header names: the extras have no column
                ragged.append(reader.line_num)
            records.append(row)  # fewer fields than the header: the missing ones are None, read as empty
    except csv.Error as error:
        raise UserError(f"metadata file {path} line {reader.line_num}: {error}; fix the line or remove it") from None
    if ragged:
        print(f"artdiff: metadata file {path}: {len(ragged)} row(s) have more fields than the header (first at "
              f"line {ragged[0]}); the extra values are ignored", file=sys.stderr)
    return records


def template_fields(template: str) -> list[str]:
    """Column names a caption template such as "{style} painting by {artist}" uses."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as error:
        raise UserError(f"caption template {template!r} is malformed: {error}") from None


def fill_template(template: str, row: dict[str, str]) -> str:
    """Fill a template from a row; columns written like_this become words, empty ones vanish cleanly."""
    values = {name: row.get(name, "").replace("_", " ").replace("-", " ").strip() for name in template_fields(template)}
    text = template.format(**values)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:])", r"\1", text)  # " ," left by an empty value
    text = re.sub(r"([,;:])(\s*[,;:])+", r"\1", text)
    return text.strip(" ,;:")
