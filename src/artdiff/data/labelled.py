"""Load a labelled dataset (manifest records with "labels") as tensors, for the judge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from artdiff.data.manifest import read_manifest
from artdiff.errors import UserError
from artdiff.utils.images import ImageReadError, read_rgb


def load_labelled(data: Path, image_size: int, vocab: dict[str, list[str]] | None = None
                  ) -> tuple[torch.Tensor, dict[str, list[str]], dict[str, torch.Tensor]]:
    """Images as uint8 (N, 3, S, S), the label vocabularies, and class indices per kind (-100 = unlabelled).

    With `vocab` (a trained judge's), labels are indexed into it and a label it does not know is an error.
    """
    records = [r for r in read_manifest(data) if r.get("labels")]
    if not records:
        raise UserError(f"{data} has no labelled images (records need a 'labels' field, as artdiff synth writes)")
    if vocab is None:
        kinds = sorted({kind for r in records for kind in r["labels"]})
        vocab = {kind: sorted({r["labels"][kind] for r in records if kind in r["labels"]}) for kind in kinds}
    targets = {}
    for kind, classes in vocab.items():
        unknown = sorted({r["labels"][kind] for r in records if r["labels"].get(kind, classes[0]) not in classes})
        if unknown:
            raise UserError(f"{data}: {kind} label(s) {', '.join(unknown)} are not among {', '.join(classes)}")
        targets[kind] = torch.tensor([classes.index(r["labels"][kind]) if kind in r["labels"] else -100
                                      for r in records])
    images = np.stack([_load(Path(data) / r["image"], image_size) for r in records])  # (N, S, S, 3)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), vocab, targets


def _load(path: Path, size: int) -> np.ndarray:
    try:
        image = read_rgb(path).image  # checked first: a FIFO, a device or a bomb is refused unopened
    except (OSError, ImageReadError) as error:
        raise UserError(f"cannot read {path}: {error}; re-run `artdiff synth` or `artdiff prepare`") from None
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image)
