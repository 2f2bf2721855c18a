"""The per-image work of `artdiff prepare`: scan (hash, size, pHash) and transform one source into outputs."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from artdiff.data import crops
from artdiff.data.dedup import perceptual_hash
from artdiff.data.prepare_config import PrepareConfig
from artdiff.utils.images import (
    ImageReadError,
    open_image,
    open_regular_file,
    parse_color,
    pixel_limit,
    read_rgb,
    resize,
)
from artdiff.utils.io import atomic_path

FOCAL_DEBUG_DIR = "focal-debug"


@dataclass
class ScanResult:
    """What the first pass learns about one file, cheaply (JPEGs are decoded at 1/8 scale)."""

    key: str  # path relative to SRC, with "/"
    bytes: int
    mtime_ns: int
    sha256: str = ""
    phash: int = 0
    width: int = 0
    height: int = 0
    reason: str | None = None  # why it cannot be used, if it cannot
    detail: str = ""


def scan_file(src: Path, key: str, max_pixels: int, max_bytes: int | None = None) -> ScanResult:
    """Hash a file and read its size and perceptual hash; never raises for a bad file.

    The file's stat is checked first (regular, not empty, at most `max_bytes`) and its header (at most
    `max_pixels`) before any pixel is decoded; it is hashed in chunks, so memory stays bounded.
    """
    path = src / key
    try:
        stat = os.stat(path)
    except OSError as error:
        return ScanResult(key, 0, 0, reason="unreadable", detail=error.strerror or str(error))
    result = ScanResult(key, stat.st_size, stat.st_mtime_ns)
    try:
        with open_regular_file(path, max_bytes=max_bytes) as handle:
            result.sha256 = _sha256(handle)
            handle.seek(0)
            _read_header_and_phash(result, handle, max_pixels)
    except ImageReadError as error:
        result.reason, result.detail = error.reason, error.detail
    except OSError as error:
        result.reason, result.detail = "unreadable", error.strerror or str(error)
    return result


def _sha256(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _read_header_and_phash(result: ScanResult, handle: BinaryIO, max_pixels: int) -> None:
    """Fill in size and pHash; a file that cannot be decoded raises ImageReadError."""
    image = open_image(handle, max_pixels=max_pixels)  # the header alone: refuses a bomb before decoding
    try:
        with pixel_limit(max_pixels):
            result.width, result.height = _oriented_size(image)
            image.draft("RGB", (64, 64))  # JPEG only: decode at reduced scale, plenty for a 32x32 hash
            result.phash = perceptual_hash(image)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError("truncated", str(error)) from None


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    """Image size after EXIF orientation (tags 5-8 swap width and height)."""
    orientation = image.getexif().get(0x0112, 1)
    width, height = image.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


@dataclass
class SourceJob:
    """One kept source and what its records carry."""

    key: str
    sha256: str
    caption: str
    caption_source: str
    provenance: dict[str, str] = field(default_factory=dict)


@dataclass
class SourceOutcome:
    """The records written for one source, or why it was skipped."""

    key: str
    sha256: str
    records: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    detail: str = ""


def output_stem(key: str, sha256: str) -> str:
    """A stable, filesystem-safe output name: the source's name plus a hash prefix that keeps it unique."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(key).stem).strip("_")[:60] or "image"
    return f"{stem}-{sha256[:10]}"


def process_source(cfg: PrepareConfig, job: SourceJob) -> SourceOutcome:
    """Decode one source, cut it into its outputs, and write them atomically."""
    outcome = SourceOutcome(job.key, job.sha256)
    try:
        decoded = read_rgb(cfg.src / job.key, background=parse_color(cfg.background), max_pixels=cfg.max_pixels,
                           max_bytes=cfg.max_file_size)
    except ImageReadError as error:
        outcome.reason, outcome.detail = error.reason, error.detail
        return outcome
    except OSError as error:
        outcome.reason, outcome.detail = "unreadable", error.strerror or str(error)
        return outcome
    image = decoded.image
    if min(image.size) < cfg.smallest_side:
        outcome.reason = "too-small"
        outcome.detail = f"{image.size[0]}x{image.size[1]}, shorter side under {cfg.smallest_side} px"
        return outcome
    stem = output_stem(job.key, job.sha256)
    base = {"source": job.key, "source_sha256": job.sha256, "source_mode": decoded.source_mode,
            "original_size": list(image.size), "caption": job.caption, "caption_source": job.caption_source}
    if job.provenance:
        base["provenance"] = job.provenance
    for variant, box, extra in _variants(cfg, image, stem):
        name = stem + (f"-t{extra['tile']:03d}" if "tile" in extra else "")
        outcome.records.append(_write(cfg, variant, name, {**base, "crop_box": list(box), **extra}, flip=False))
        if cfg.flip:
            mirrored = variant.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            outcome.records.append(_write(cfg, mirrored, name + "-flip", {**base, "crop_box": list(box), **extra},
                                          flip=True))
    return outcome


def _variants(cfg: PrepareConfig, image: Image.Image, stem: str):
    """Yield (output image, crop box in source pixels, extra record fields) for each output."""
    width, height = image.size
    target = cfg.size
    if cfg.split and min(width, height) >= cfg.split_threshold * min(target):
        yield from _tiles(cfg, image)
        return
    if cfg.crop == "pad":
        layout = crops.pad_layout(width, height, target)
        canvas = Image.new("RGB", target, parse_color(cfg.pad_color))
        inner = (layout[2] - layout[0], layout[3] - layout[1])
        canvas.paste(resize(image, inner, kernel=cfg.kernel, antialias=cfg.antialias), layout[:2])
        yield canvas, (0, 0, width, height), {"pad_box": list(layout)}
        return
    if cfg.crop == "buckets":
        buckets = crops.make_buckets(target[0] * target[1], step=cfg.bucket_step, max_ratio=cfg.bucket_max_ratio)
        target = crops.nearest_bucket(width, height, buckets)
    aspect = target[0] / target[1]
    if cfg.crop == "focal":
        box = crops.focal_box(image, aspect)
        if cfg.focal_debug:
            debug = crops.focal_debug_image(image, box)
            with atomic_path(cfg.dst / FOCAL_DEBUG_DIR / f"{stem}.jpg") as tmp:
                debug.convert("RGB").save(tmp, format="JPEG", quality=90)
    else:
        box = crops.center_box(width, height, aspect)
    extra = {"bucket": list(target)} if cfg.crop == "buckets" else {}
    yield resize(image, target, kernel=cfg.kernel, antialias=cfg.antialias, box=box), box, extra


def _tiles(cfg: PrepareConfig, image: Image.Image):
    """Overlapping target-size tiles at native resolution, after shrinking if there would be too many."""
    width, height = image.size
    scale = 1.0
    while True:
        w, h = round(width * scale), round(height * scale)
        boxes = crops.tile_boxes(w, h, cfg.size, cfg.split_overlap)
        if len(boxes) <= cfg.max_tiles or min(w, h) <= min(cfg.size):
            break
        scale *= 0.9
    work = image if scale == 1.0 else resize(image, (w, h), kernel=cfg.kernel, antialias=cfg.antialias)
    for index, box in enumerate(boxes):
        source_box = tuple(min(round(v / scale), limit) for v, limit in zip(box, (width, height) * 2, strict=True))
        yield work.crop(box), source_box, {"tile": index, "tile_scale": round(scale, 4)}


def _write(cfg: PrepareConfig, image: Image.Image, name: str, record: dict, *, flip: bool) -> dict:
    """Save one output atomically and return its manifest record."""
    extension = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}[cfg.format]
    relative = f"images/{name}{extension}"
    options: dict[str, Any] = {"png": {"format": "PNG", "optimize": False, "compress_level": 4},
                               "jpg": {"format": "JPEG", "quality": cfg.quality, "subsampling": 0},
                               "webp": {"format": "WEBP", "quality": cfg.quality}}[cfg.format]
    with atomic_path(cfg.dst / relative) as tmp:
        image.save(tmp, **options)
    return {"image": relative, "width": image.size[0], "height": image.size[1], **record, "flipped": flip}


def scan_to_dict(result: ScanResult) -> dict[str, Any]:
    """A ScanResult as JSON-safe data (the pHash as hex, since JSON numbers lose 64-bit precision)."""
    data = asdict(result)
    data["phash"] = f"{result.phash:016x}"
    return data


def scan_from_dict(data: dict[str, Any]) -> ScanResult:
    """Inverse of scan_to_dict."""
    return ScanResult(**{**data, "phash": int(data["phash"], 16)})
