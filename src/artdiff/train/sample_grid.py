"""Write a batch of images as one grid PNG (the fixed-seed samples of a run)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from artdiff.utils.io import atomic_path


def save_grid(images: torch.Tensor, path: Path, *, columns: int | None = None, pad: int = 2) -> Path:
    """Tile images (N, 3, H, W) in [0, 1] into a grid with `pad` white pixels between them; write it atomically."""
    n, _, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, dtype=np.uint8)
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for i, image in enumerate(pixels):
        top, left = pad + (i // columns) * (h + pad), pad + (i % columns) * (w + pad)
        grid[top:top + h, left:left + w] = image
    with atomic_path(Path(path)) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return Path(path)
