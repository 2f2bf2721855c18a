"""`artdiff embed FOLDER`: the mean image embedding of a folder, a reusable style vector for --embedding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from artdiff.errors import UserError
from artdiff.models.encoders import JointEncoder
from artdiff.utils.images import ImageReadError, decode_rgb, is_image_path
from artdiff.utils.io import atomic_path


@dataclass
class EmbedResult:
    """The saved style vector and what went into it."""

    out: Path
    images: int
    skipped: list[str]
    dim: int

    def to_json(self) -> dict:
        """Plain data for --json."""
        return {"out": str(self.out), "images": self.images, "skipped": self.skipped, "dim": self.dim}


@torch.no_grad()
def embed_folder(folder: Path, encoder: JointEncoder, out: Path, *, batch_size: int = 32) -> EmbedResult:
    """Average the unit image embeddings of every readable image under `folder` and renormalise the mean."""
    paths = sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image_path(p)) if Path(folder).is_dir() \
        else []
    if not paths:
        raise UserError(f"no images in {folder}")
    total, count, skipped = torch.zeros(encoder.dim), 0, []
    for start in range(0, len(paths), batch_size):
        batch = []
        for path in paths[start:start + batch_size]:
            try:
                image = decode_rgb(path.read_bytes()).image
            except (OSError, ImageReadError):
                skipped.append(str(path))
                continue
            batch.append(image)
        if batch:  # PIL images of any size: the encoder's contract resizes and crops each one
            total += encoder.embed_images(batch).sum(0)
            count += len(batch)
    if count == 0:
        raise UserError(f"none of the {len(paths)} images in {folder} could be read")
    mean = F.normalize(total / count, dim=0)  # the model was trained on unit embeddings
    with atomic_path(Path(out)) as tmp:
        save_file({"embedding": mean.contiguous()}, str(tmp),
                  metadata={"images": str(count), "encoder": encoder.name,
                            "preprocessing": str(encoder.preprocessing.to_dict())})
    return EmbedResult(Path(out), count, skipped, encoder.dim)
