"""Images of a dataset folder (images + manifest.jsonl) as tensors, loaded on demand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from artdiff.data.manifest import read_manifest
from artdiff.errors import UserError
from artdiff.utils.images import ImageReadError, read_rgb


class ImageDataset:
    """The manifest's images as float tensors in [0, 1], resized (antialiased) and centre-cropped to `size`."""

    def __init__(self, root: Path, *, size: int, preload_limit_bytes: int = 1 << 30) -> None:
        self.root = Path(root)
        self.records = read_manifest(self.root)
        if not self.records:
            raise UserError(f"{root} has no images (its manifest is empty)")
        self.size = size
        self._cache: torch.Tensor | None = None
        if len(self.records) * size * size * 3 <= preload_limit_bytes:
            self._cache = torch.stack([self._load(i) for i in range(len(self.records))])  # uint8 (N, 3, S, S)

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, index: int) -> torch.Tensor:
        path = self.root / self.records[index]["image"]
        try:
            image = read_rgb(path).image  # checked first: a FIFO, a device or a bomb is refused unopened
        except (OSError, ImageReadError) as error:
            raise UserError(f"cannot read {path}: {error}; re-run `artdiff prepare` on the source") from None
        scale = self.size / min(image.size)
        if image.size != (self.size, self.size):
            w, h = max(self.size, round(image.width * scale)), max(self.size, round(image.height * scale))
            image = image.resize((w, h), Image.Resampling.LANCZOS)
            left, top = (w - self.size) // 2, (h - self.size) // 2
            image = image.crop((left, top, left + self.size, top + self.size))
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()

    def images(self, indices: list[int]) -> torch.Tensor:
        """Float images (B, 3, S, S) in [0, 1]."""
        batch = self._cache[indices] if self._cache is not None else torch.stack([self._load(i) for i in indices])
        return batch.float() / 255
