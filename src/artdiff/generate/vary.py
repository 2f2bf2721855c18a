"""`artdiff vary IMAGE --model M`: variations of an image with an image-variation model (sd-image-variations).

The image is embedded under the model's preprocessing contract (the published model: squashed to 224 px
without antialiasing), its CLIP image embedding conditions the UNet, zeros are the unconditional input, and
sampling is sd_sample's, so DDIM, Euler and DPM++ 2M match StableDiffusionImageVariationPipeline given the
same pixels. Image i uses seed + i whatever -n or the batch size is.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from artdiff import __version__
from artdiff.generate.input_images import read_input_image
from artdiff.generate.options import GenerateResult, recorded_eta, resolve_seed, sampler_eta
from artdiff.generate.outputs import OutputFolder, run_batches
from artdiff.generate.sd_generate import output_size
from artdiff.generate.sd_sample import sample_sd
from artdiff.generate.vary_options import VaryOptions
from artdiff.models.image_variation import ImageVariation, load_image_variation
from artdiff.utils.pngmeta import infotext, model_display_name, sampling_fields


def sample_variations(model: ImageVariation, condition: torch.Tensor, *, seeds: list[int], height: int, width: int,
                      steps: int, cfg_scale: float, sampler: str = "dpm++2m", karras: bool = False, eta: float | None = None,
                      callback=None) -> torch.Tensor:
    """Decoded images (N, 3, H, W) in [0, 1] for one image condition (1, 1, D); the null condition is zeros."""
    return sample_sd(model, condition, torch.zeros_like(condition), seeds=seeds, height=height, width=width,
                     steps=steps, cfg_scale=cfg_scale, sampler=sampler, karras=karras, eta=eta, callback=callback)


def vary(options: VaryOptions) -> GenerateResult:
    """Check every input, then sample -n variations in batches and write each with infotext and a JSON sidecar.

    Args:
        options: the request; image i uses seed + i.

    Returns:
        Where the PNGs are, how long sampling took, and the model folder.
    """
    folder = OutputFolder(options.out)
    source = read_input_image(options.image, what="image")
    image, source_hash = source.image, source.sha256
    model = load_image_variation(options.model)
    width, height = output_size(model, options)
    eta, seed = sampler_eta(options.sampler, options.eta), resolve_seed(options.seed)
    started = time.perf_counter()
    with torch.inference_mode():
        condition = model.condition(image)  # (1, 1, D)

    def sample(seeds: list[int], callback) -> torch.Tensor:
        return sample_variations(model, condition, seeds=seeds, height=height, width=width, steps=options.steps,
                                 cfg_scale=options.cfg, sampler=options.sampler, karras=options.karras, eta=eta,
                                 callback=callback)

    extra = {**sampling_fields(options.sampler, karras=options.karras, eta=eta),
             "Variation of": Path(options.image).name, "Image hash": source_hash[:10]}
    common = {"artdiff_version": __version__, "torch_version": torch.__version__, "model": str(model.path),
              "model_hash": model.hash, "kind": "image-variation",
              "request": {**asdict(options), "out": str(options.out), "seed": seed, "eta": recorded_eta(options.sampler, eta)},
              "size": [width, height], "image_sha256": source_hash, "preprocessing": model.preprocessing.to_dict(),
              "schedule": model.schedule, "parameterization": model.parameterization}

    def save(image_seed: int, pixels: torch.Tensor) -> Path:
        parameters = infotext("", steps=options.steps, sampler=options.sampler, cfg_scale=options.cfg,
                              seed=image_seed, size=(width, height), model_name=model_display_name(model.path),
                              model_hash=model.hash, extra=extra)
        return folder.save(pixels, image_seed, parameters=parameters, sidecar={**common, "seed": image_seed})

    hints = [f"--cfg {options.cfg:g}"] if options.cfg > 30 else []
    paths = run_batches(n=options.n, batch_size=options.batch_size, first_seed=seed, steps=options.steps,
                        folder=folder, sample=sample, save=save, hints=hints, what="variation")
    return GenerateResult(paths, time.perf_counter() - started, str(model.path), str(options.image), seed=seed,
                          cfg=options.cfg)
