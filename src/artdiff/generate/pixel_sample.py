"""Sample OpenAI-style pixel UNets (improved/guided-diffusion, as diffusers UNet2DModel) with any of our samplers.

The network sees improved-diffusion's inputs exactly: the variance-preserving sample, the ORIGINAL integer
timestep (times 1000 / T with rescale_timesteps) and its class label; its output is eps (or x0), with the
learned-range variance channels after them (Nichol & Dhariwal 2021). Respaced DDPM and DDIM follow
improved-diffusion's p_sample / ddim_sample step for step (tests/core/test_respaced_sampling.py); skip_steps and
init images follow the crowsonkb fork that clip-diffusion-art samples with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from artdiff.core.denoisers import DiscreteDenoiser, clamp_denoised
from artdiff.core.respacing import space_timesteps
from artdiff.core.samplers import SAMPLERS
from artdiff.core.schedules import alphas_cumprod, append_zero, ddpm_betas
from artdiff.errors import NonFiniteError, UserError
from artdiff.generate.options import sampler_eta
from artdiff.generate.sample import sampling_sigmas
from artdiff.generate.sampling_guards import check_finite
from artdiff.models.model_info import DEFAULT_VARIANCE, ModelInfo
from artdiff.models.pixel.pixel_model import check_makeable_size
from artdiff.utils import memory

# artdiff.json without "variance": improved-diffusion's default (learn_sigma and sigma_small off), as
# PixelModel.variance, model_info and training read it
DDPM_VARIANCE = {"learned_range": "learned", "fixed_small": "fixed_small", "fixed_large": "fixed_large"}


def _field(info: ModelInfo, name: str, default):
    """A pixel model's own artdiff.json field (image_size, variance, rescale_timesteps), kept in info.extra."""
    return info.extra.get(name, default)


def make_pixel_denoiser(unet: torch.nn.Module, info: ModelInfo) -> DiscreteDenoiser:
    """D(x, sigma, class_labels=None) -> x0 over the model's DDPM schedule, its variance channels kept for ddpm."""
    schedule = info.schedule or {}
    if schedule.get("type") != "discrete":
        raise UserError(f"the model's schedule {schedule.get('type')!r} (artdiff.json) is not discrete; a pixel "
                        "model is sampled on DDPM betas")
    try:
        betas = ddpm_betas(schedule.get("beta_schedule", "linear"),
                           num_train_timesteps=schedule.get("num_train_timesteps", 1000),
                           beta_start=schedule.get("beta_start", 1e-4), beta_end=schedule.get("beta_end", 0.02))
    except ValueError as error:
        raise UserError(f"the model's schedule (artdiff.json) cannot be sampled: {error}") from None
    variance = _field(info, "variance", DEFAULT_VARIANCE)
    learned = variance == "learned_range"
    channels = unet.config.in_channels
    if unet.config.out_channels != channels * (2 if learned else 1):
        raise UserError(f"artdiff.json says variance {variance} but the UNet has {unet.config.out_channels} output "
                        f"channels for {channels} input ones ({2 * channels} with learned_range, {channels} without); "
                        "the flags (--learn_sigma) do not match the weights")
    # improved-diffusion's rescale_timesteps feeds t * 1000 / T: the same integers when T = 1000
    time_scale = 1000 / len(betas) if _field(info, "rescale_timesteps", False) else 1.0
    dtype = unet.dtype

    def network(x_in: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        # The sampler's state stays float32; a half-precision UNet sees its own dtype (as use_fp16 does inside).
        t = t * time_scale if time_scale != 1.0 else t
        return unet(x_in.to(dtype), t, class_labels=class_labels).sample.to(x_in.dtype)

    parameterization = info.parameterization or "eps"
    denoiser = DiscreteDenoiser(network, alphas_cumprod(betas), parameterization=parameterization,
                                learned_variance=learned)
    return denoiser.to(unet.device)  # its sigma table, where the sampler's sigmas are


def pixel_sigmas(denoiser: DiscreteDenoiser, *, steps: int, respacing: str | None = None, skip_steps: int = 0,
                 karras: bool = False) -> torch.Tensor:
    """The sigmas to walk, descending, then 0: generate's trailing spacing (or Karras), or a respacing's kept steps.

    With `respacing` (improved-diffusion's syntax: ddimN, N, a,b,c) its kept timesteps set the count and `steps`
    is not used. skip_steps drops the first (noisiest) steps, as the fork's skip_timesteps does.
    """
    if respacing is None:
        sigmas = sampling_sigmas(denoiser, {"type": "discrete"}, steps, karras=karras)
    else:
        if karras:
            raise UserError(f"--karras spaces its own sigmas and --respacing {respacing} keeps set timesteps; use one")
        try:
            kept = space_timesteps(len(denoiser.sigma_table), respacing)
        except ValueError as error:
            raise UserError(f"--{error}") from None
        # Table entries themselves: the denoiser maps each one to its integer timestep exactly.
        sigmas = append_zero(denoiser.sigma_table[kept].flip(0))
    count = len(sigmas) - 1
    if isinstance(skip_steps, bool) or not isinstance(skip_steps, int) or not 0 <= skip_steps < count:
        raise UserError(f"--skip-steps {skip_steps!r}: sampling has {count} steps here; skip from 0 to {count - 1}")
    return sigmas[skip_steps:]


def _size(unet: torch.nn.Module, info: ModelInfo, size: int | tuple[int, int] | None) -> tuple[int, int]:
    """(height, width): the model's image size by default; other sizes must pass every downsampling evenly."""
    if size is None:
        size = _field(info, "image_size", None) or unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else size
    for side in (height, width):
        check_makeable_size(unet, side)
    return height, width


def _labels(unet: torch.nn.Module, info: ModelInfo, labels: torch.Tensor | None, batch: int) -> dict:
    """The network's class_labels condition, checked against the model's classes."""
    conditioning = info.conditioning or {}
    classes = conditioning.get("num_classes") if conditioning.get("type") == "class-label" else None
    if classes is None:
        if labels is not None:
            raise UserError("class labels were given but this model is not class-conditional; drop them")
        return {}
    if labels is None:
        raise UserError(f"this model is class-conditional ({classes} classes): give a class label (0 to "
                        f"{classes - 1}) per image")
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.dtype.is_floating_point or len(labels) != batch:
        raise UserError(f"class labels must be {batch} whole numbers, one per image, got {labels.tolist()}")
    if int(labels.min()) < 0 or int(labels.max()) >= classes:
        raise UserError(f"class labels {labels.tolist()}: this model has classes 0 to {classes - 1}")
    return {"class_labels": labels.long().to(unet.device)}


def _start(noise: torch.Tensor, sigma: float, *, init: torch.Tensor | None, skipped: bool) -> torch.Tensor:
    """The first sample in variance-exploding coordinates, where improved-diffusion and the fork start.

    With an init image: q_sample(init, t_start, noise) = init + sigma * noise. Skipping steps without one: the
    fork's q_sample of zeros, sigma * noise. Otherwise pure VP noise, noise * sqrt(1 + sigma^2).
    """
    if init is not None:
        return init + sigma * noise
    return noise * (sigma if skipped else math.sqrt(1 + sigma**2))


def _init(init_images: torch.Tensor | None, batch: int, height: int, width: int, device) -> torch.Tensor | None:
    """init images (B or 1, 3, H, W) in [0, 1] as the model's [-1, 1] pixels."""
    if init_images is None:
        return None
    init = torch.as_tensor(init_images)
    if init.ndim != 4 or init.shape[0] not in (1, batch) or tuple(init.shape[1:]) != (3, height, width):
        raise UserError(f"init images must be ({batch}, 3, {height}, {width}) in [0, 1], got {tuple(init.shape)}")
    if not bool(torch.isfinite(init).all()):
        raise UserError("the init image holds NaN or infinite values")
    return (init.to(device, torch.float32).clamp(0, 1) * 2 - 1).expand(batch, -1, -1, -1)


def sample_pixels(unet: torch.nn.Module, info: ModelInfo, *, seeds: list[int], steps: int = 50, sampler: str = "ddim",
                  respacing: str | None = None, eta: float | None = None, clip_denoised: bool = True,
                  skip_steps: int = 0, init_images: torch.Tensor | None = None,
                  class_labels: torch.Tensor | None = None, size: int | tuple[int, int] | None = None,
                  callback=None, karras: bool = False, hints: Sequence[str] = (), guidance=None) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1], image i from torch.Generator().manual_seed(seeds[i]) whatever the batch.

    ddpm uses the model's variance (learned range, fixed small or fixed large); ddim and euler_a take eta
    (default 0 and 1). clip_denoised clamps each x0 to [-1, 1]; skip_steps starts later, from init_images
    (B or 1, 3, H, W in [0, 1]) when given. hints: the caller's likely causes, put first should sampling turn NaN.
    guidance: a generate.clip_setup.ClipGuidance, whose gradient shifts every step's x0 (image i's cutouts drawn
    from image i's generator).
    Raises UserError for a request the model or the device's memory cannot serve, before allocating.
    """
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if not seeds:
        raise UserError("no seeds: sample_pixels makes one image per seed")
    eta = sampler_eta(sampler, eta)
    check_finite(eta=eta)
    batch = len(seeds)
    height, width = _size(unet, info, size)
    denoiser = make_pixel_denoiser(unet, info)
    sigmas = pixel_sigmas(denoiser, steps=steps, respacing=respacing, skip_steps=skip_steps, karras=karras)
    cond = _labels(unet, info, class_labels, batch)
    init = _init(init_images, batch, height, width, unet.device)
    memory.check_pixel_sampling_fits(unet.config, device=unet.device, batch=batch, height=height, width=width,
                                     dtype_bytes=unet.dtype.itemsize)

    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    channels = unet.config.in_channels
    noise = torch.cat([torch.randn((1, channels, height, width), generator=g) for g in generators]).to(unet.device)
    x = _start(noise, float(sigmas[0]), init=init, skipped=skip_steps > 0)
    model_fn, variance_fn = denoiser, denoiser.raw
    if guidance is not None:  # it clamps the x0 the step uses itself, after differentiating the raw one
        wrap = dict(sigmas=sigmas, generators=generators, timestep_of=denoiser.sigma_to_t,
                    clamp=(-1.0, 1.0) if clip_denoised else None)
        model_fn, variance_fn = guidance.wrap(model_fn, **wrap), guidance.wrap(variance_fn, **wrap)
    elif clip_denoised:
        model_fn, variance_fn = clamp_denoised(model_fn), clamp_denoised(variance_fn)
    options: dict = {"eta": eta} if sampler in ("ddim", "euler_a") else {}
    if sampler == "ddpm":
        variance = DDPM_VARIANCE[_field(info, "variance", DEFAULT_VARIANCE)]
        options = {"variance": variance, "variance_fn": variance_fn if variance == "learned" else None}
    try:
        x = SAMPLERS[sampler](model_fn, x, sigmas.to(device=unet.device), generator=generators, callback=callback,
                              extra=cond, **options)
    except NonFiniteError as error:
        raise error.with_hints(hints) from None
    return ((x.float() + 1) / 2).clamp_(0, 1)  # every step's x was checked finite; the last one is x0
