"""What makes an encoder run resumable: its batch order's state and the folder it keeps beside its output.

OUT.partial/ holds run.json (the options and a fingerprint of the data it was started with), tokenizer/
(trained once on the training captions) and checkpoints/step-N (train/checkpoint.py). It is removed once
OUT is complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from artdiff.errors import UserError
from artdiff.train.checkpoint import changed_options
from artdiff.train.encoder_config import renamed_options
from artdiff.utils.io import atomic_write_json

# Options that may differ when an interrupted run is resumed: they do not change the trained weights (the
# data is compared by its fingerprint, so the same folder may be given by another path).
RESUMABLE_CHANGES = ("progress", "checkpoint_every", "data", "out")


def partial_dir(out: Path) -> Path:
    return out.with_name(f"{out.name}.partial")


def data_fingerprint(images: Tensor, captions: list[str]) -> dict:
    """Enough of the data to tell that a resumed run sees the same pairs in the same order (about 0.5 s for
    20,000 images of 64 px)."""
    pixels = hashlib.sha256(memoryview(images.contiguous().numpy()).cast("B")).hexdigest()
    text = hashlib.sha256("\n".join(captions).encode("utf-8")).hexdigest()
    return {"pairs": len(captions), "images_sha256": pixels, "captions_sha256": text}


def open_run(partial: Path, options: dict, fingerprint: dict) -> None:
    """Start a run folder, or check that the one there was started with these options and this data."""
    run_file = partial / "run.json"
    if not run_file.is_file():
        partial.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_file, {"options": options, "data": fingerprint})
        return
    saved = json.loads(run_file.read_text())
    changed = changed_options(renamed_options(saved["options"]), options, RESUMABLE_CHANGES)
    differences = [f"options ({', '.join(changed)})"] if changed else []
    if saved["data"] != fingerprint:
        differences.append("data")
    if differences:
        raise UserError(f"{partial} holds an unfinished run started with different {' and '.join(differences)}; "
                        f"run it with the same to resume, or delete {partial} to start over")


def run_tokenizer(partial: Path, build: Callable[[Path], object]) -> Path:
    """The run's tokenizer folder, built by `build(folder)` the first time (a resumed run must not retrain it)."""
    folder = partial / "tokenizer"
    if not (folder / "vocab.json").is_file():
        staging = Path(tempfile.mkdtemp(prefix=".tokenizer.", dir=partial))
        try:
            build(staging)
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


class EpochBatches:
    """Batches forever, each pass a fresh permutation (no pair meets itself as a negative); resumable."""

    def __init__(self, indices: Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.indices, self.batch_size, self.generator = indices, batch_size, generator
        self.shuffled = indices[:0]
        self.start = 0

    def next(self) -> Tensor:
        if self.start + self.batch_size > len(self.shuffled):  # drawn when needed, so resumes draw alike
            self.shuffled = self.indices[torch.randperm(len(self.indices), generator=self.generator)]
            self.start = 0
        batch = self.shuffled[self.start:self.start + self.batch_size]
        self.start += self.batch_size
        return batch

    def state(self) -> tuple[Tensor, int]:
        return self.shuffled.clone(), self.start

    def load_state(self, shuffled: Tensor, start: int) -> None:
        self.shuffled, self.start = shuffled, start
