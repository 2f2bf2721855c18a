"""Builders of small test images in every format and mode artdiff must read."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def pattern(width: int, height: int, seed: int = 0) -> Image.Image:
    """A distinct, detailed RGB image: smooth gradients plus random blocks, different for each seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin((x + y) / (4 + seed % 7))], -1)
    blocks = rng.random((max(1, height // 8), max(1, width // 8), 3)).repeat(8, 0).repeat(8, 1)
    blocks = np.pad(blocks, ((0, height - blocks.shape[0]), (0, width - blocks.shape[1]), (0, 0)), mode="edge")
    array = (0.5 * base + 0.5 * blocks[:height, :width]) * 255
    return Image.fromarray(array.clip(0, 255).astype(np.uint8), "RGB")


def solid(width: int, height: int, color: tuple[int, int, int]) -> Image.Image:
    """A single-colour RGB image."""
    return Image.new("RGB", (width, height), color)


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    """Save an image, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def bomb_png(path: Path, width: int = 40000, height: int = 40000) -> Path:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(  # noqa: E731
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = zlib.compress(b"\x00" * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under a folder, to show it was not modified."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
