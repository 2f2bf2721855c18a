"""Stable Diffusion sampling through artdiff's engine, step for step as diffusers' pipeline does it.

Timesteps follow each scheduler family's spacing rules from the model's scheduler config, the initial noise
is drawn per image as (1, 4, h, w) from generator seed + i, and CFG batches [negative, prompt] in one
forward, so a DDIM, Euler or DPM++ 2M run matches StableDiffusionPipeline with that scheduler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from artdiff.core.denoisers import DiscreteDenoiser
from artdiff.core.guidance import GuidanceConfig, WeightedCond, classifier_free
from artdiff.core.samplers import SAMPLERS
from artdiff.core.schedules import (
    alphas_cumprod,
    append_zero,
    ddpm_betas,
    discrete_timesteps,
    dpm_solver_timesteps,
    karras_sigmas,
    sigmas_at,
)
from artdiff.errors import NonFiniteError, UserError
from artdiff.generate.options import sampler_eta
from artdiff.generate.sampling_guards import (
    check_conditions,
    check_finite,
    check_images,
    check_steps,
    scale_hints,
)
from artdiff.models.latents import TILE_THRESHOLD, Latents
from artdiff.models.stable_diffusion import StableDiffusion
from artdiff.utils import memory

# Samplers whose diffusers counterpart works in variance-preserving coordinates: their initial noise has
# std sqrt(sigma_0^2 + 1) in artdiff's variance-exploding coordinates. Euler-family schedulers start at
# sigma_0 instead, except with "leading" spacing, where diffusers also uses sqrt(sigma_0^2 + 1).
VP_SAMPLERS = ("ddim", "ddpm", "dpm++2m", "plms")


def sd_denoiser(model: StableDiffusion) -> DiscreteDenoiser:
    """D(x, sigma, encoder_hidden_states=...) -> x0 for the model's UNet and training schedule."""
    s = model.schedule
    try:
        betas = ddpm_betas(s["beta_schedule"], num_train_timesteps=s["num_train_timesteps"],
                           beta_start=s["beta_start"], beta_end=s["beta_end"])
    except ValueError as error:  # a second line of defence: the loader validates the scheduler config first
        raise UserError(f"{model.path}: its scheduler config cannot be sampled: {error}") from None
    unet = model.unet
    network = lambda x, t, **cond: unet(x, t, **cond, return_dict=False)[0]  # noqa: E731
    return DiscreteDenoiser(network, alphas_cumprod(betas), parameterization=model.parameterization)


def sd_sigmas(denoiser: DiscreteDenoiser, schedule: dict, steps: int, sampler: str, *, karras: bool = False
              ) -> torch.Tensor:
    """Descending sigmas ending at the final one: the spacing of the scheduler diffusers pairs with `sampler`."""
    table, n_train = denoiser.sigma_table, schedule["num_train_timesteps"]
    check_steps(steps, n_train)
    if karras:  # karras_sigmas ends with 0 already; a second 0 made every sampler divide by sigma = 0
        return karras_sigmas(steps, denoiser.sigma_min, denoiser.sigma_max)
    spacing, offset = schedule.get("timestep_spacing", "leading"), schedule.get("steps_offset", 0)
    if sampler == "dpm++2m":
        timesteps = dpm_solver_timesteps(steps, num_train_timesteps=n_train, spacing=spacing, steps_offset=offset)
    else:  # DDIM rounds a linspace spacing; Euler keeps it fractional
        timesteps = discrete_timesteps(steps, num_train_timesteps=n_train, spacing=spacing, steps_offset=offset,
                                       round_linspace=sampler in VP_SAMPLERS)
    sigmas = sigmas_at(timesteps, table)
    if sampler == "ddim" and not schedule.get("set_alpha_to_one", True):
        return torch.cat([sigmas, table[:1]])  # DDIMScheduler's last step lands on alphas_cumprod[0]
    return append_zero(sigmas)


def initial_noise_scale(sigma_0: float, sampler: str, spacing: str) -> float:
    """The std of the starting sample in VE coordinates, as diffusers' init_noise_sigma implies."""
    if sampler in VP_SAMPLERS or spacing == "leading":
        return math.sqrt(sigma_0**2 + 1)
    return sigma_0


def per_image_noise(seeds: list[int], shape: tuple[int, int, int]) -> tuple[torch.Tensor, list[torch.Generator]]:
    """Noise (N, C, h, w) with image i drawn alone from its own generator, and those generators (for later steps)."""
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    return torch.cat([torch.randn((1, *shape), generator=g) for g in generators]), generators


@torch.inference_mode()
def sample_sd(model: StableDiffusion, cond: torch.Tensor, uncond: torch.Tensor, *, seeds: list[int], height: int,
              width: int, steps: int, cfg_scale: float, sampler: str = "dpm++2m", rescale: float = 0.0,
              karras: bool = False, eta: float | None = None, init_latents: torch.Tensor | None = None,
              strength: float = 1.0, callback=None, hints: Sequence[str] = ()) -> torch.Tensor:
    """Decoded images (N, 3, H, W) in [0, 1] for text embeddings cond/uncond (1, L, D) shared by the N seeds.

    With init_latents (N, 4, h, w) and strength < 1, sampling starts part-way, from the init image noised to
    that level (img2img, as diffusers' StableDiffusionImg2ImgPipeline). hints: the caller's likely causes
    should the sample turn NaN (e.g. "a LoRA scale of 1e30"), put first in the NonFiniteError's message.
    Raises UserError before allocating when the request cannot fit in the device's memory.
    """
    eta = sampler_eta(sampler, eta)  # None: the sampler's own default, as generate and vary use
    check_finite(cfg_scale=cfg_scale, rescale=rescale, eta=eta, strength=strength)
    hints = [*hints, *scale_hints(cfg_scale)]
    check_conditions({"the prompt": cond, "the negative prompt": uncond}, hints)
    denoiser = sd_denoiser(model)
    sigmas = sd_sigmas(denoiser, model.schedule, steps, sampler, karras=karras)
    factor, channels = model.vae_factor, model.unet.config.in_channels
    device, dtype = model.unet.device, model.unet.dtype
    memory.check_generation_fits(model.unet.config, model.vae.config, device=device, batch=len(seeds), copies=2,
                                 height=height, width=width, factor=factor, dtype_bytes=dtype.itemsize,
                                 tile_threshold=TILE_THRESHOLD)
    noise, generators = per_image_noise(seeds, (channels, height // factor, width // factor))
    noise = noise.to(device, dtype)
    if init_latents is not None and strength < 1.0:
        start = steps - min(int(steps * strength), steps)  # diffusers' get_timesteps
        sigmas = sigmas[start:]
        x = init_latents.to(device, dtype) + noise * float(sigmas[0])
    else:
        x = noise * initial_noise_scale(float(sigmas[0]), sampler, model.schedule.get("timestep_spacing", "leading"))
    batch = len(seeds)
    conds = [WeightedCond({"encoder_hidden_states": cond.to(device, dtype).expand(batch, -1, -1)}, 1.0)]
    model_fn = classifier_free(denoiser, conds, {"encoder_hidden_states": uncond.to(device, dtype).expand(batch, -1, -1)},
                               GuidanceConfig(scale=cfg_scale, rescale=rescale))
    options = {"eta": eta} if sampler in ("ddim", "euler_a") else {}
    try:
        x = SAMPLERS[sampler](model_fn, x, sigmas.to(device), generator=generators, callback=callback, **options)
    except NonFiniteError as error:
        raise error.with_hints(hints) from None
    x = x / math.sqrt(float(sigmas[-1]) ** 2 + 1)  # back to VP coordinates when the last sigma is not 0
    return check_images(decode_latents(model, x), hints)


def decode_latents(model: StableDiffusion, latents: torch.Tensor) -> torch.Tensor:
    """VAE decode with the model's latent scale, to [0, 1] float32 on the CPU.

    One image at a time, and in tiles above TILE_THRESHOLD px: the full-resolution decode is the peak of a
    generation, and this keeps it at one image's (or one tile's) worth.
    """
    codec = Latents(model.vae, scale=model.latent_scale)
    return torch.cat([codec.decode(latents[i:i + 1]).cpu() for i in range(latents.shape[0])])


def encode_image_latents(model: StableDiffusion, images: torch.Tensor) -> torch.Tensor:
    """Init-image latents (mean of the posterior, scaled), from (N, 3, H, W) pixels in [0, 1]."""
    vae = model.vae
    posterior = vae.encode((images * 2 - 1).to(vae.device, vae.dtype)).latent_dist
    return posterior.mean * model.latent_scale
