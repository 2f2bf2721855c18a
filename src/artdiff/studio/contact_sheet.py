"""Contact sheets: a grid of images with captions underneath, for looking at a dataset or a run."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from artdiff.utils.io import atomic_path

MAX_LABEL_LINES = 4
LINE_HEIGHT = 12


def label_lines(caption: str, cell: int) -> list[str]:
    """A caption wrapped to the cell's width, at most MAX_LABEL_LINES lines, the last ending in '...' if cut."""
    lines = textwrap.wrap(caption, width=max(8, cell // 6))
    if len(lines) <= MAX_LABEL_LINES:
        return lines
    kept = lines[:MAX_LABEL_LINES]
    kept[-1] = kept[-1][:max(1, max(8, cell // 6) - 3)].rstrip() + "..."
    return kept


def contact_sheet(images: list[Path], captions: list[str], out: Path, *, cell: int = 160, columns: int = 6,
                  title: str = "") -> Path:
    """Write a grid of thumbnails, each with its caption wrapped under it, as one PNG."""
    if not images:
        raise ValueError("no images to show")
    font = ImageFont.load_default()
    rows = math.ceil(len(images) / columns)
    labels = [label_lines(caption, cell) for caption in captions]
    # Room for the longest label (at least two lines, so sheets of short captions keep one layout).
    label_height = 4 + LINE_HEIGHT * max(2, *(len(lines) for lines in labels))
    title_height = 24 if title else 0
    sheet = Image.new("RGB", (columns * cell, title_height + rows * (cell + label_height)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((6, 6), title, fill="black", font=font)
    for index, (path, lines) in enumerate(zip(images, labels, strict=True)):
        with Image.open(path) as image:
            thumb = image.convert("RGB")
            thumb.thumbnail((cell - 8, cell - 8), Image.Resampling.LANCZOS)
        x = (index % columns) * cell
        y = title_height + (index // columns) * (cell + label_height)
        sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        for line_number, line in enumerate(lines):
            draw.text((x + 4, y + cell + line_number * LINE_HEIGHT), line, fill="black", font=font)
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out
