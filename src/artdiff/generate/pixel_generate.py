"""`artdiff generate` for unconditional pixel models: improved/guided-diffusion UNets, respaced DDPM/DDIM and more.

The sampling follows improved-diffusion (Nichol & Dhariwal 2021) and clip-diffusion-art: `--respacing` in
improved-diffusion's syntax picks the timesteps (`ddim50` reproduces clip-diffusion-art's default; without it the
steps trail from the last timestep, t = T-1, as for every artdiff model), DDPM uses the model's learned-range
variance, DDIM takes `--eta`, and `--skip-steps` starts part-way (from `--init-image` noised to that step, as the
crowsonkb fork's skip_timesteps does). Image i uses seed + i whatever the batch, and every image carries its parameters.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from artdiff import __version__
from artdiff.core.respacing import space_timesteps
from artdiff.errors import UserError
from artdiff.generate.clip_options import guidance_fields
from artdiff.generate.input_images import read_input_image
from artdiff.generate.options import (
    DEFAULT_STEPS,
    DEFAULT_STRENGTH,
    GenerateOptions,
    GenerateResult,
    check_eta,
    pixel_sampler,
    recorded_eta,
    resolve_seed,
    sampler_eta,
)
from artdiff.generate.outputs import OutputFolder, run_batches
from artdiff.generate.pixel_sample import sample_pixels
from artdiff.generate.progress_frames import ProgressFrames
from artdiff.generate.sampling_guards import check_steps
from artdiff.models.pixel.pixel_model import PixelModel, check_makeable_size, load_pixel_model
from artdiff.utils import memory
from artdiff.utils.images import resize
from artdiff.utils.pngmeta import infotext, model_display_name, sampling_fields


@dataclass(frozen=True)
class PixelPlan:
    """The sampling a request resolves to on one model: what runs, recorded in every image."""

    sampler: str
    steps: int  # the schedule's step count (the respaced count with --respacing), before skip_steps
    skip_steps: int
    strength: float | None  # the --strength the skipped steps come from (with --init-image), recorded as A1111 does
    eta: float
    timesteps: list[int] | None  # the kept training timesteps of --respacing, ascending
    size: int


def _check_pixel_options(options: GenerateOptions) -> None:
    """Refuse the options only prompt-conditioned models have, each with what a pixel model offers instead."""
    guided = options.clip_guidance  # prompts and --image become CLIP guidance targets
    if not guided and options.clip_options_given():
        raise UserError(f"{options.clip_options_given()[0]} sets up CLIP guidance; add --clip-guidance (with a "
                        "text prompt or --image to steer towards)")
    for flag, given, instead in (
            ("a text prompt", options.prompts and not guided, "they sample without one; add --clip-guidance to "
                                                             "steer by the prompt"),
            ("--image", options.images and not guided, "start from an image with --init-image (and --skip-steps or "
                                                      "--strength), or add --clip-guidance to steer towards it"),
            ("--embedding", options.embeddings, "they take no embedding"),
            ("--negative", options.negative, "they take no prompt"),
            ("--cfg", options.cfg is not None, "there is no condition to guide towards"),
            ("--raw-weights", options.raw_weights, "they take no prompt weights"),
            ("--rescale", options.rescale, "there is no guidance to rescale"),
            ("--clip-skip", options.clip_skip != 1, "they have no text encoder"),
            ("--lora", options.lora, "LoRA adapts Stable Diffusion models"),
            ("--apply-overrides", options.apply_overrides, "they take no embedding files"),
            ("--width/--height", options.width or options.height, "these models make square images: --size"),
            ("--model-config/--tokenizer", options.model_config or options.tokenizer,
             "an original OpenAI file is described by --flags")):
        if given:
            raise UserError(f"{flag} is for embedding and Stable Diffusion models; unconditional pixel models: "
                            f"{instead}")


def plan_sampling(options: GenerateOptions, model: PixelModel) -> PixelPlan:
    """Resolve sampler, step count, skipped steps, eta and size for this model, or refuse in one line."""
    train_steps = int(model.schedule["num_train_timesteps"])
    timesteps = None
    if options.respacing is not None:
        try:
            timesteps = space_timesteps(train_steps, options.respacing)
        except ValueError as error:
            text = str(error)  # core's message names "respacing 'X'" first; here it is the flag
            raise UserError(f"--{text}" if text.startswith("respacing ") else f"--respacing: {text}") from None
        steps = len(timesteps)
        if options.steps is not None and options.steps != steps:
            raise UserError(f"--steps {options.steps} and --respacing {options.respacing} ({steps} steps) disagree; "
                            "--respacing sets the step count: drop --steps")
    else:
        steps = DEFAULT_STEPS if options.steps is None else options.steps
        check_steps(steps, train_steps)
    sampler = pixel_sampler(options.sampler, options.respacing)
    if options.eta is not None:
        try:
            check_eta(sampler, options.eta)
        except ValueError as error:
            raise UserError(str(error)) from None
    skip, strength = _skip_steps(options, steps)
    return PixelPlan(sampler, steps, skip, strength, sampler_eta(sampler, options.eta), timesteps,
                     _size(options, model))


def _skip_steps(options: GenerateOptions, steps: int) -> tuple[int, float | None]:
    """--skip-steps, else with --init-image the steps --strength leaves out: steps - int(steps * strength).

    Returns the skipped steps and the strength they come from, recorded as A1111's Denoising strength (None when
    --skip-steps alone decides). A --strength given beside --skip-steps must leave out the same steps.
    """
    skip, strength = options.skip_steps, options.strength
    if options.init_image and not skip:
        strength = DEFAULT_STRENGTH if strength is None else strength
        skip = steps - int(steps * strength)
        if skip >= steps:
            raise UserError(f"--strength {strength:g} leaves none of the {steps} steps to run; use a strength "
                            f"of at least {1 / steps:.3g}")
    elif skip and strength is not None:
        from_strength = steps - int(steps * strength)
        if skip != from_strength:
            raise UserError(f"--skip-steps {skip} and --strength {strength:g} ({from_strength} of {steps} steps "
                            "skipped) disagree; give one of them")
    if skip >= steps:
        raise UserError(f"--skip-steps {skip} leaves none of the {steps} steps to run; use 0 to {steps - 1}")
    return skip, strength if options.init_image else None


def _size(options: GenerateOptions, model: PixelModel) -> int:
    """--size, else the model's own; a UNet2DModel is convolutional, so any side it can make works."""
    size = options.size or model.image_size
    check_makeable_size(model.unet, size, what="--size" if options.size else "the model's size")
    return size


def class_label_of(options: GenerateOptions, model: PixelModel, seed: int) -> int | None:
    """The class image `seed` is sampled with: --class-label, else one drawn from the seed (None: unconditional)."""
    if model.num_classes is None:
        return None
    if options.class_label is not None:
        return options.class_label
    generator = torch.Generator().manual_seed(seed)  # like guided-diffusion's random classes, but batch-independent
    return int(torch.randint(model.num_classes, (1,), generator=generator))


def _check_class_label(options: GenerateOptions, model: PixelModel) -> None:
    if options.class_label is None:
        return
    if model.num_classes is None:
        raise UserError(f"--class-label {options.class_label}: {model.path} is not class-conditional (it has no "
                        "class embedding); drop --class-label")
    if options.class_label >= model.num_classes:
        raise UserError(f"--class-label {options.class_label}: this model has {model.num_classes} classes, "
                        f"0 to {model.num_classes - 1}")


def _init_image(options: GenerateOptions, size: int) -> tuple[torch.Tensor | None, dict | None]:
    """--init-image as (1, 3, size, size) in [0, 1], resized with Lanczos as generate's img2img does, and its record."""
    if not options.init_image:
        return None, None
    read = read_input_image(options.init_image, what="--init-image")
    pixels = np.array(resize(read.image, (size, size), kernel="lanczos"))
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255, {"path": options.init_image,
                                                                          "sha256": read.sha256}


def generate_unconditional(options: GenerateOptions) -> GenerateResult:
    """Check every input, then sample -n images in batches and write each with A1111 infotext and a JSON sidecar."""
    _check_pixel_options(options)
    folder = OutputFolder(options.out)
    model = load_pixel_model(options.model, flags=options.flags)  # a folder, a run, or a file with --flags
    _check_class_label(options, model)
    plan = plan_sampling(options, model)
    memory.check_pixel_sampling_fits(model.unet.config, device=model.unet.device,
                                     batch=min(options.batch_size, options.n), height=plan.size, width=plan.size,
                                     dtype_bytes=model.unet.dtype.itemsize)
    init, init_record = _init_image(options, plan.size)
    guidance = None
    if options.clip_guidance:
        from artdiff.generate.clip_setup import setup_clip_guidance

        guidance = setup_clip_guidance(options, device=model.unet.device, steps=plan.steps - plan.skip_steps,
                                       init_image=init)
    progress = ProgressFrames(plan.steps - plan.skip_steps, size=plan.size,
                              batch=min(options.batch_size, options.n)) if options.save_progress else None
    seed = resolve_seed(options.seed)
    hints = [f"--flags {options.flags}"] if options.flags else []  # flags naming another network sample garbage
    started = time.perf_counter()

    def sample(seeds: list[int], callback) -> torch.Tensor:
        labels = [class_label_of(options, model, s) for s in seeds]
        if progress is not None:
            callback = progress.recording(seeds, callback)
        if guidance is not None:
            guidance.begin_batch(seeds)
        return sample_pixels(model.unet, model.info, seeds=seeds, steps=plan.steps, sampler=plan.sampler,
                             respacing=options.respacing, eta=plan.eta, clip_denoised=options.clip_denoised,
                             skip_steps=plan.skip_steps, karras=options.karras,
                             init_images=None if init is None else init.expand(len(seeds), -1, -1, -1),
                             class_labels=None if labels[0] is None else torch.tensor(labels), size=plan.size,
                             callback=callback, hints=hints, guidance=guidance)

    extra = {**sampling_fields(plan.sampler, karras=options.karras, eta=plan.eta),
             "Respacing": options.respacing, "Clip denoised": None if options.clip_denoised else False,
             "Skip steps": plan.skip_steps or None,
             "Denoising strength": plan.strength, **(guidance_fields(options, guidance) if guidance else {})}
    resolved = replace(options, sampler=plan.sampler, steps=plan.steps, skip_steps=plan.skip_steps)
    request = {**asdict(resolved), "out": str(options.out), "seed": seed, "eta": recorded_eta(plan.sampler, plan.eta)}
    common = {"artdiff_version": __version__, "torch_version": torch.__version__, "model": str(model.path),
              "model_hash": model.hash, "kind": "unconditional", "request": request, "size": [plan.size, plan.size],
              "sampler": plan.sampler, "steps": plan.steps, "eta": recorded_eta(plan.sampler, plan.eta),
              "respacing": options.respacing, "timesteps": plan.timesteps, "skip_steps": plan.skip_steps,
              "clip_denoised": options.clip_denoised, "init_image": init_record, "schedule": model.schedule,
              "variance": model.variance, "rescale_timesteps": model.rescale_timesteps,
              "parameterization": model.info.parameterization, "num_classes": model.num_classes,
              "source": model.info.extra.get("source"),
              "clip_guidance": guidance.record if guidance is not None else None}

    def save(image_seed: int, image: torch.Tensor) -> Path:
        label = class_label_of(options, model, image_seed)
        prompt = ", ".join(options.prompts) if guidance is not None else ""
        parameters = infotext(prompt, steps=plan.steps, sampler=plan.sampler, cfg_scale=None, seed=image_seed,
                              size=(plan.size, plan.size), model_name=model_display_name(model.path),
                              model_hash=model.hash, extra={**extra, "Class label": label})
        sidecar = {**common, "seed": image_seed, "class_label": label}
        if guidance is not None:  # what the guidance did for this image
            sidecar["clip_guidance"] = {**guidance.record, **guidance.image_stats(image_seed)}
        path = folder.save(image, image_seed, parameters=parameters, sidecar=sidecar)
        if progress is not None:
            progress.write(image_seed, path)
        return path

    paths = run_batches(n=options.n, batch_size=options.batch_size, first_seed=seed,
                        steps=plan.steps - plan.skip_steps, folder=folder, sample=sample, save=save,
                        hints=hints)
    return GenerateResult(paths, time.perf_counter() - started, str(model.path), "", seed=seed, cfg=None,
                          sampler=plan.sampler, steps=plan.steps)
