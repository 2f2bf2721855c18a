"""`artdiff vary IMAGE --model M`: variations of an image with an image-variation model (sd-image-variations).

The image is embedded under the model's preprocessing contract (the published model: squashed to 224 px
without antialiasing), its CLIP image embedding conditions the UNet, zeros are the unconditional input, and
sampling is sd_sample's, so DDIM, Euler and DPM++ 2M match StableDiffusionImageVariationPipeline given the
same pixels. Image i uses seed + i whatever -n is.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from artdiff import __version__
from artdiff.config import option
from artdiff.errors import UserError
from artdiff.generate.options import GenerateResult, Sampler
from artdiff.generate.sd_generate import output_size
from artdiff.generate.sd_sample import sample_sd
from artdiff.models.image_variation import ImageVariation, load_image_variation
from artdiff.utils.images import ImageReadError, decode_rgb
from artdiff.utils.pngmeta import infotext, save_png_with_metadata


@dataclass
class VaryOptions:
    """One variations request."""

    image: str = option(help="the image to make variations of", cli=False)
    model: str | None = option(None, "image-variation model folder or hub id, e.g. "
                                     "lambdalabs/sd-image-variations-diffusers (required)")
    n: int = option(4, "number of variations", flag="-n")
    # The model card's and its training repository's scale; diffusers' pipeline defaults to 7.5.
    cfg: float = option(3.0, "classifier-free guidance scale")
    steps: int = option(50, "sampling steps")
    sampler: Sampler = option("dpm++2m", "sampler")
    karras: bool = option(False, "Karras et al. (2022) sigma spacing")
    eta: float = option(0.0, "noise of ddim / euler_a steps")
    seed: int = option(0, "image i uses seed + i, whatever -n is")
    size: int | None = option(None, "square image side in pixels (default: the model's training size)")
    width: int | None = option(None, "image width in pixels (a multiple of 8)")
    height: int | None = option(None, "image height in pixels (a multiple of 8)")
    out: Path = option(Path("outputs/vary"), "folder for the images and their JSON sidecars")

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if not self.model:
            raise ValueError("--model is required: an image-variation model folder or hub id, e.g. "
                             "lambdalabs/sd-image-variations-diffusers")
        if self.n < 1 or self.steps < 1:
            raise ValueError("-n and --steps must be at least 1")
        if self.cfg < 0:
            raise ValueError("--cfg must not be negative")


def read_image(path: str) -> Image.Image:
    """The image as RGB, or a one-line error naming the file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"image {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder; pass one image file") from None
    except OSError as error:
        raise UserError(f"image {path} cannot be read ({error.strerror or error})") from None
    try:
        return decode_rgb(data).image
    except ImageReadError as error:
        raise UserError(f"image {path} cannot be read ({error})") from None


def sample_variations(model: ImageVariation, condition: torch.Tensor, *, seeds: list[int], height: int, width: int,
                      steps: int, cfg_scale: float, sampler: str = "dpm++2m", karras: bool = False, eta: float = 0.0,
                      callback=None) -> torch.Tensor:
    """Decoded images (N, 3, H, W) in [0, 1] for one image condition (1, 1, D); the null condition is zeros."""
    return sample_sd(model, condition, torch.zeros_like(condition), seeds=seeds, height=height, width=width,
                     steps=steps, cfg_scale=cfg_scale, sampler=sampler, karras=karras, eta=eta, callback=callback)


def vary(options: VaryOptions) -> GenerateResult:
    """Check every input, then sample -n variations and write each with infotext and a JSON sidecar.

    Args:
        options: the request; image i uses seed + i.

    Returns:
        Where the PNGs are, how long sampling took, and the model folder.
    """
    image = read_image(options.image)
    model = load_image_variation(options.model)
    width, height = output_size(model, options)
    started = time.perf_counter()
    with torch.inference_mode():
        condition = model.condition(image)  # (1, 1, D)
    seeds = [options.seed + i for i in range(options.n)]
    images = sample_variations(model, condition, seeds=seeds, height=height, width=width, steps=options.steps,
                               cfg_scale=options.cfg, sampler=options.sampler, karras=options.karras, eta=options.eta)
    seconds = time.perf_counter() - started
    source_hash = hashlib.sha256(Path(options.image).read_bytes()).hexdigest()
    paths = []
    for seed, pixels in zip(seeds, images):
        array = (pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        parameters = infotext("", steps=options.steps, sampler=options.sampler, cfg_scale=options.cfg, seed=seed,
                              size=(width, height), model_name=model.path.name, model_hash=model.hash,
                              extra={"Variation of": Path(options.image).name, "Image hash": source_hash[:10]})
        sidecar = {"artdiff_version": __version__, "torch_version": torch.__version__, "model": str(model.path),
                   "model_hash": model.hash, "kind": "image-variation",
                   "request": {**asdict(options), "out": str(options.out)}, "seed": seed, "size": [width, height],
                   "image_sha256": source_hash, "preprocessing": model.preprocessing.to_dict(),
                   "schedule": model.schedule, "parameterization": model.parameterization}
        paths.append(save_png_with_metadata(Image.fromarray(array), options.out / f"{seed:06d}.png",
                                            parameters=parameters, sidecar=sidecar))
    return GenerateResult(paths, seconds, str(model.path), str(options.image))
