"""Options of `artdiff prepare` (kept apart from the pipeline so the command line imports nothing heavy)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from artdiff.config import check_all, option

CropMode = Literal["center", "focal", "pad", "buckets"]
CaptionSource = Literal["auto", "filename", "sidecar", "metadata", "none"]
Kernel = Literal["lanczos", "bicubic", "bilinear", "area", "nearest"]
DEFAULT_PROVENANCE = ["license", "licence", "rights", "source", "url", "credit", "title", "artist", "date"]


def parse_size(value: object) -> tuple[int, int]:
    """Read 256, "256", "320x256" or [320, 256] as (width, height)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        width, height = value
    elif isinstance(value, int):
        width = height = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(value))
        if not match:
            raise ValueError("expected a size such as 256 or 320x256 (width x height)")
        width = int(match.group(1))
        height = int(match.group(2) or width)
    if int(width) < 8 or int(height) < 8:
        raise ValueError("sizes must be at least 8 pixels")
    return int(width), int(height)


def parse_bytes(value: object) -> int:
    """Read 536870912, "512M", "2G" or "100k" (binary units) as a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*", str(value))
        if not match:
            raise ValueError("expected a size such as 512M, 2G or a number of bytes")
        size = int(float(match.group(1)) * 1024 ** " KMGT".index((match.group(2) or " ").upper()))
    if size < 1:
        raise ValueError("the size must be at least one byte")
    return size


def check_color(text: str, flag: str) -> None:
    """Refuse a colour Pillow cannot read (names, #rgb, #rrggbb, rgb(...), hsl(...)), naming the flag."""
    from PIL import ImageColor  # imported here: the command line's --help must stay light

    try:
        ImageColor.getrgb(text)
    except (ValueError, AttributeError):
        raise ValueError(f"{flag} {text!r} is not a colour; use a name such as white or a hex code such as "
                         "#808080") from None


@dataclass
class PrepareConfig:
    """How a folder of artwork becomes a dataset."""

    src: Path = option(Path("."), "folder of images to read (never modified)", cli=False)
    dst: Path = option(Path("dataset"), "dataset folder to write", cli=False)
    size: tuple[int, int] = option((256, 256), "output size: 256 or WxH; for buckets, the pixel area to match",
                                   parse=parse_size, metavar="SIZE", shown_default="256")
    crop: CropMode = option("center", "center crop, focal (most salient window), pad (letterbox) or buckets")
    kernel: Kernel = option("lanczos", "resize kernel")
    antialias: bool = option(True, "antialias when shrinking (--no-antialias matches models trained without it)")
    background: str = option("white", "colour behind transparent pixels (name or #rrggbb)")
    pad_color: str = option("black", "letterbox colour for --crop pad (name or #rrggbb)")
    focal_debug: bool = option(False, "with --crop focal, write DST/focal-debug/ images showing the chosen window")
    bucket_step: int = option(64, "bucket sides are multiples of this")
    bucket_max_ratio: float = option(2.0, "widest bucket aspect ratio (long side / short side)")
    split: bool = option(False, "cut images much larger than the target into overlapping tiles instead of shrinking")
    split_threshold: float = option(2.0, "split when the image's shorter side is at least this many times the target's")
    split_overlap: float = option(0.25, "fraction of a tile shared with its neighbour")
    max_tiles: int = option(64, "most tiles per image; a larger image is shrunk first so it fits")
    flip: bool = option(False, "also write a mirrored copy of every output")
    captions: CaptionSource = option("auto", "caption source; auto = sidecar .txt/.caption, else metadata, else file name")
    filename_regex: str | None = option(None, "regex whose matches, joined by spaces, form a filename caption",
                                        metavar="REGEX")
    metadata: Path | None = option(None, "CSV/TSV/JSONL of per-image metadata (e.g. WikiArt artist, style, genre)",
                                   metavar="FILE")
    metadata_key: str = option("filename", "metadata column that names each image file")
    caption_template: str = option("{caption}", "how metadata columns form a caption, e.g. '{style} painting by {artist}'")
    provenance_columns: list[str] = option(help="metadata column copied into each record's provenance (repeatable)",
                                           flag="--provenance-column", default_factory=lambda: list(DEFAULT_PROVENANCE))
    license: str | None = option(None, "licence recorded for every image (a metadata column wins)")
    dedup: bool = option(True, "drop exact and near duplicates")
    near_dup_threshold: int = option(4, "largest perceptual-hash distance (of 64 bits) counted as a near duplicate")
    min_size: int | None = option(None, "skip images whose shorter side is smaller (default: half the target's)")
    max_pixels: int = option(178_956_970, "skip images with more pixels than this (decompression bombs)")
    max_file_size: int = option(512 * 1024**2, "skip files larger than this (e.g. 512M, 2G), judged before reading",
                                parse=parse_bytes, metavar="SIZE", shown_default="512M")
    format: Literal["png", "jpg", "webp"] = option("png", "output image format")
    quality: int = option(95, "JPEG/WebP quality")
    workers: int = option(0, "worker processes (0 = one per core)")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        self.src, self.dst = Path(self.src), Path(self.dst)
        self.size = parse_size(self.size)
        self.max_file_size = parse_bytes(self.max_file_size)
        if self.metadata is not None:
            self.metadata = Path(self.metadata)
        checks = [
            (self.bucket_step >= 8, "--bucket-step must be at least 8"),
            (self.bucket_max_ratio >= 1.0, "--bucket-max-ratio must be at least 1"),
            (self.split_threshold >= 1.0, "--split-threshold must be at least 1"),
            (0.0 <= self.split_overlap < 0.95, "--split-overlap must be in [0, 0.95)"),
            (self.max_tiles >= 1, "--max-tiles must be at least 1"),
            (self.near_dup_threshold >= 0, "--near-dup-threshold must be at least 0"),
            (self.max_pixels > 0, "--max-pixels must be positive"),
            (1 <= self.quality <= 100, "--quality must be in 1..100"),
            (self.workers >= 0, "--workers must be 0 (all cores) or more"),
            (self.min_size is None or self.min_size >= 1, "--min-size must be at least 1"),
        ]
        check_all(checks)
        check_color(self.background, "--background")
        check_color(self.pad_color, "--pad-color")
        if self.captions == "metadata" and self.metadata is None:
            raise ValueError("--captions metadata needs --metadata FILE")
        if self.filename_regex is not None:
            try:
                re.compile(self.filename_regex)
            except re.error as error:
                raise ValueError(f"--filename-regex {self.filename_regex!r} is not a valid regex: {error}") from None
        if not self.antialias and self.kernel in ("lanczos", "area"):
            raise ValueError(f"--kernel {self.kernel} always antialiases; use bicubic, bilinear or nearest "
                             "with --no-antialias")

    @property
    def smallest_side(self) -> int:
        """Images with a shorter side below this are skipped as too small."""
        return self.min_size if self.min_size is not None else max(1, min(self.size) // 2)
