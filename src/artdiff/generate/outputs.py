"""Where generated images go and how: batches written as they finish, under A1111's NNNNN-SEED.png names.

A1111's scheme (modules/images.save_image): a five-digit running index over the folder, then the seed; the
next index is one more than the highest already there, and an existing file is never replaced, so a second
run into the same folder adds to it. Image i of a run uses seed + i whatever the batch size.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from artdiff.errors import UserError
from artdiff.generate.sampling_guards import check_images
from artdiff.utils.pngmeta import save_png_with_metadata
from artdiff.utils.progress import ProgressBar

INDEX = re.compile(r"^(\d{5,})-")  # A1111's running index at the start of a file name


def check_out_folder(out: Path, flag: str = "--out") -> None:
    """Refuse an --out that is a file, or lies under one, before any work starts."""
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                raise UserError(f"{flag} {out}: {folder} is a file; pass a folder for the images (it is created "
                                "if missing)")
            return


def next_index(out: Path) -> int:
    """One more than the highest running index of a file in `out` (0 for a new or empty folder)."""
    highest = -1
    if out.is_dir():
        for entry in os.scandir(out):
            match = INDEX.match(entry.name)
            if match:
                highest = max(highest, int(match.group(1)))
    return highest + 1


class OutputFolder:
    """Saves images under the next free NNNNN-SEED.png names; the folder is created only when one is written."""

    def __init__(self, out: Path) -> None:
        check_out_folder(out)
        self.out = out
        self.index: int | None = None  # read from the folder at the first save, so a failed run creates nothing

    def save(self, image: torch.Tensor, seed: int, *, parameters: str, sidecar: dict[str, Any]) -> Path:
        """Write one image (3, H, W) in [0, 1] with its infotext and sidecar; never replace a file."""
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        if self.index is None:
            self.index = next_index(self.out)
        while True:  # another run writing into the folder may take a name first: move on to the next index
            path = self.out / f"{self.index:05d}-{seed}.png"
            self.index += 1
            try:
                return save_png_with_metadata(Image.fromarray(pixels), path, parameters=parameters,
                                              sidecar={**sidecar, "file": path.name}, replace=False)
            except FileExistsError:
                continue


def run_batches(*, n: int, batch_size: int, first_seed: int, steps: int, folder: OutputFolder,
                sample: Callable[[list[int], Callable], torch.Tensor], save: Callable[[int, torch.Tensor], Path],
                hints: list[str], what: str = "image") -> list[Path]:
    """Sample seeds first_seed .. first_seed + n - 1 in batches and save each image as soon as its batch is done.

    `sample(seeds, callback)` returns images (B, 3, H, W) in [0, 1]; `save(seed, image)` writes one. A bar shows
    image j of n and step i of `steps`. A failing batch writes nothing; the images before it stay, and are counted.
    """
    paths: list[Path] = []
    with ProgressBar(total=n * steps, desc=f"{what} 1/{n}", unit="step") as bar:
        try:
            for start in range(0, n, batch_size):
                seeds = [first_seed + i for i in range(start, min(n, start + batch_size))]
                shown = f"{start + 1}" if len(seeds) == 1 else f"{start + 1}-{start + len(seeds)}"
                bar.describe(f"{what} {shown}/{n}")
                done = [0]

                def callback(step: Any, seeds: list[int] = seeds, done: list[int] = done) -> None:
                    done[0] += 1
                    bar.update(len(seeds))
                    bar.status(step=f"{done[0]}/{steps}")

                images = sample(seeds, callback)
                check_images(images, hints)  # whatever `sample` is: nothing black is written
                bar.update(max(0, steps - done[0]) * len(seeds))  # img2img runs fewer steps than asked
                paths.extend(save(seed, image) for seed, image in zip(seeds, images))
        except BaseException:
            if paths:
                print(f"{len(paths)} {what}s were written to {folder.out} before this stopped", file=sys.stderr)
            raise
    return paths
