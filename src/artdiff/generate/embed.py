"""`artdiff embed FOLDER`: the mean image embedding of a folder, a reusable style vector for --embedding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from artdiff.data.sources import list_images
from artdiff.errors import UserError
from artdiff.models.encoders import JointEncoder
from artdiff.utils.images import ImageReadError, read_rgb
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


def check_paths(folder: Path, out: Path) -> None:
    """Refuse a missing folder or an --out that names a folder, before any model loads."""
    if not folder.exists():
        raise UserError(f"folder {folder} does not exist; pass a folder of images")
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; put the images in a folder and pass that")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name the file to write, e.g. {out / 'style.safetensors'}")


@torch.no_grad()
def embed_folder(folder: Path, encoder: JointEncoder, out: Path, *, batch_size: int = 32) -> EmbedResult:
    """Average the unit image embeddings of every readable image under `folder` and renormalise the mean.

    The folder is read as `artdiff prepare` reads it: hidden files and folders are left out, and FIFOs,
    devices and oversized files are skipped without being opened.
    """
    folder, out = Path(folder), Path(out)
    check_paths(folder, out)
    listing = list_images(folder)
    if not listing.keys:
        raise UserError(f"no images in {folder} (hidden files and folders are left out)")
    total, count, skipped = torch.zeros(encoder.dim), 0, [shown for shown, _, _ in listing.skipped]
    for start in range(0, len(listing.keys), batch_size):
        batch = []
        for key in listing.keys[start:start + batch_size]:
            try:
                image = read_rgb(folder / key).image
            except (OSError, ImageReadError):
                skipped.append(key)
                continue
            batch.append(image)
        if batch:  # PIL images of any size: the encoder's contract resizes and crops each one
            total += encoder.embed_images(batch).sum(0)
            count += len(batch)
    if count == 0:
        raise UserError(f"none of the {len(listing.keys)} images in {folder} could be read")
    mean = F.normalize(total / count, dim=0)  # the model was trained on unit embeddings
    with atomic_path(out) as tmp:
        save_file({"embedding": mean.contiguous()}, str(tmp),
                  metadata={"images": str(count), "encoder": encoder.name,
                            "preprocessing": str(encoder.preprocessing.to_dict())})
    return EmbedResult(out, count, skipped, encoder.dim)
