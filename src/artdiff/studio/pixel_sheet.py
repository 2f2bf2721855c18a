"""A labelled sheet of an unconditional pixel model's samples at fixed seeds, each named by the judge's style."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from artdiff.evaluate.judge_eval import load_checked_judge
from artdiff.evaluate.pixel_eval import as_uint8
from artdiff.generate.pixel_sample import sample_pixels
from artdiff.models.pixel.pixel_model import load_pixel_model
from artdiff.studio.contact_sheet import contact_sheet
from artdiff.utils.assets import SHIPPED_JUDGE
from artdiff.utils.io import atomic_path


@dataclass
class PixelSheet:
    """The sheet and the samples behind it."""

    sheet: Path
    images: list[Path]
    styles: list[str]


def pixel_sheet(model_ref: str | Path, out: Path, *, seeds: list[int], steps: int = 25, sampler: str = "ddim",
                title: str = "") -> PixelSheet:
    """Sample one image per seed, save each as out/NNN-SEED.png, and lay them out labelled 'seed S: STYLE'.

    The style is what the shipped judge sees in the sample, so the sheet shows at a glance which of the 8
    procedural styles the model makes. It judges the 8-bit pixels the PNGs hold, as `artdiff evaluate` does.
    """
    model = load_pixel_model(model_ref)
    with torch.no_grad():
        images = as_uint8(sample_pixels(model.unet, model.info, seeds=seeds, steps=steps, sampler=sampler))
    styles = load_checked_judge(SHIPPED_JUDGE).predict(images.float() / 255)["style"]
    paths = []
    for index, (seed, image) in enumerate(zip(seeds, images, strict=True)):
        path = Path(out) / f"{index:03d}-{seed}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp, format="PNG")
        paths.append(path)
    sheet = contact_sheet(paths, [f"seed {seed}: {style}" for seed, style in zip(seeds, styles, strict=True)],
                          Path(out).with_suffix(".png"), cell=max(96, model.image_size * 2), columns=8,
                          title=title or f"{model.path.name}: {sampler}, {steps} steps, seeds {seeds[0]}+")
    return PixelSheet(sheet, paths, styles)
