"""`--save-progress`: every step's predicted image as frames and a GIF beside the image (clip-diffusion-art's view).

Latent models' predictions are decoded through their VAE at each step.

Frames are the sampler's x0 prediction at each step (clamped to the image range), kept as 8-bit pixels while the
batch samples and written next to NNNNN-SEED.png as NNNNN-SEED-progress/step-NNN.png and NNNNN-SEED-progress.gif,
each written atomically (a folder renamed into place, a file renamed into place).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from artdiff.errors import UserError
from artdiff.utils.io import atomic_path, publish_folder

MAX_FRAME_BYTES = 2 * 2**30  # frames of one batch held in memory; past this the run is refused before it starts
FRAME_MS, LAST_FRAME_MS = 80, 1500  # the animation's pace; the finished image is held


class ProgressFrames:
    """Collect each step's x0 for every image of a batch, then write one image's frames and animation."""

    def __init__(self, steps: int, *, size: int | tuple[int, int], batch: int = 1) -> None:
        height, width = (size, size) if isinstance(size, int) else size
        needed = steps * batch * 3 * height * width
        if needed > MAX_FRAME_BYTES:
            raise UserError(f"--save-progress would hold {needed / 2**30:.1f} GiB of frames ({steps} steps of "
                            f"{batch} {width}x{height} images); use fewer steps, a smaller --batch-size or size")
        self.frames: dict[int, list[np.ndarray]] = {}

    def recording(self, seeds: list[int], callback, decode=None):
        """A sampler callback that keeps each image's x0 and then calls `callback`.

        decode maps a latent model's x0 to [-1, 1] pixels (None: the sampler's x0 is already pixels).
        """
        for seed in seeds:
            self.frames[seed] = []

        def record(step) -> None:
            x0 = step.denoised.detach() if decode is None else decode(step.denoised.detach())
            pixels = ((x0.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            for seed, image in zip(seeds, pixels.permute(0, 2, 3, 1).cpu().numpy()):
                self.frames[seed].append(image)
            if callback is not None:
                callback(step)

        return record

    def write(self, seed: int, image_path: Path) -> tuple[Path, Path]:
        """Write the frames of `seed` beside its image; returns (frames folder, GIF). The frames are then freed."""
        frames = self.frames.pop(seed, [])
        if not frames:
            raise ValueError(f"no frames were recorded for seed {seed}")
        folder = image_path.with_name(f"{image_path.stem}-progress")
        gif = image_path.with_name(f"{image_path.stem}-progress.gif")
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=image_path.parent))
        try:
            for i, frame in enumerate(frames):
                Image.fromarray(frame).save(tmp / f"step-{i:03d}.png")
            publish_folder(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        pictures = [Image.fromarray(frame) for frame in frames]
        with atomic_path(gif) as part:
            pictures[0].save(part, format="GIF", save_all=True, append_images=pictures[1:], loop=0,
                             duration=[FRAME_MS] * (len(pictures) - 1) + [LAST_FRAME_MS])
        return folder, gif
