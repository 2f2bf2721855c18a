"""Sample an embedding-conditioned latent model: weighted embeddings -> guided sampler -> VAE decode."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from artdiff.core.guidance import GuidanceConfig, WeightedCond, classifier_free
from artdiff.core.samplers import SAMPLERS
from artdiff.core.schedules import append_zero, cosine_sigmas, discrete_timesteps, karras_sigmas, sigmas_at
from artdiff.errors import NonFiniteError, UserError
from artdiff.generate.options import sampler_eta
from artdiff.generate.sampling_guards import (
    check_conditions,
    check_finite,
    check_images,
    check_steps,
    scale_hints,
)
from artdiff.models.embedding_ldm import make_denoiser
from artdiff.models.latents import TILE_THRESHOLD, Latents
from artdiff.utils import memory

PromptSet = list[tuple[torch.Tensor, float]]  # (embedding (1, D), weight) pairs mixed into one image


def sampling_sigmas(denoiser: torch.nn.Module, schedule: dict, steps: int, *, karras: bool = False) -> torch.Tensor:
    """The sigmas a sampler walks: trailing DDPM timesteps (or Karras) for discrete models, even cosine time else."""
    check_steps(steps, None if schedule["type"] == "cosine" else len(denoiser.sigma_table))
    if schedule["type"] == "cosine":
        sigmas = cosine_sigmas(steps)
        return karras_sigmas(steps, float(sigmas[-2]), float(sigmas[0])) if karras else sigmas
    if karras:
        return karras_sigmas(steps, denoiser.sigma_min, denoiser.sigma_max)
    timesteps = discrete_timesteps(steps, num_train_timesteps=len(denoiser.sigma_table), spacing="trailing")
    return append_zero(sigmas_at(timesteps, denoiser.sigma_table))


def _batches(prompt_sets: list[PromptSet], batch_size: int) -> list[list[int]]:
    """Indices of consecutive images whose prompt sets have the same weights, so one guided forward serves them."""
    groups: list[list[int]] = []
    for index, prompt_set in enumerate(prompt_sets):
        weights = [w for _, w in prompt_set]
        if groups and len(groups[-1]) < batch_size and [w for _, w in prompt_sets[groups[-1][0]]] == weights:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


@torch.no_grad()
def sample_from_embeddings(unet: torch.nn.Module, latents: Latents, schedule: dict, parameterization: str,
                           prompt_sets: list[PromptSet], *, cfg_scale: float, steps: int, seed: int, latent_size: int,
                           sampler: str = "dpm++2m", karras: bool = False, eta: float | None = None, batch_size: int = 8,
                           callback=None, hints: Sequence[str] = (), guidance=None) -> torch.Tensor:
    """Images (N, 3, H, W) in [0, 1]; image i draws its noise from generator seed + i, whatever N or the batch.

    Each prompt set mixes its embeddings as CCLD does: uncond + cfg_scale * sum_i w_i (cond_i - uncond),
    with the zero vector as the unconditional embedding. hints: the caller's likely causes should the sample
    turn NaN, put first in the NonFiniteError's message. Raises UserError before allocating when the request
    cannot fit in the device's memory. guidance: a generate.clip_setup.ClipGuidance whose gradient, taken through
    the VAE decoder, shifts every step's (guided) x0 latent; --cfg 0 leaves the prompts to it alone.
    """
    eta = sampler_eta(sampler, eta)  # None: the sampler's own default, as generate uses
    check_finite(cfg_scale=cfg_scale, eta=eta)
    weights = [w for prompt_set in prompt_sets for _, w in prompt_set]
    if not all(math.isfinite(w) for w in weights):
        raise UserError(f"prompt weights {weights}: every weight must be a finite number")
    hints = [*hints, *scale_hints(cfg_scale, weights)]
    check_conditions({f"prompt {i + 1}": e for i, prompt_set in enumerate(prompt_sets) for e, _ in prompt_set}, hints)
    denoiser = _denoiser(unet, parameterization, schedule)
    sigmas = sampling_sigmas(denoiser, schedule, steps, karras=karras)
    channels = unet.config.in_channels
    groups = _batches(prompt_sets, batch_size)
    memory.check_generation_fits(unet.config, latents.vae.config, device=unet.device,
                                 batch=max(len(g) for g in groups) if groups else 1,
                                 copies=1 + max((len(p) for p in prompt_sets), default=1),
                                 height=latent_size * latents.factor, width=latent_size * latents.factor,
                                 factor=latents.factor, dtype_bytes=unet.dtype.itemsize, kept_images=len(prompt_sets),
                                 tile_threshold=TILE_THRESHOLD)
    options = {"eta": eta} if sampler in ("ddim", "euler_a") else {}
    images = []
    for group in groups:
        generators = [torch.Generator().manual_seed(seed + i) for i in group]
        noise = torch.cat([torch.randn((1, channels, latent_size, latent_size), generator=g) for g in generators])
        terms = len(prompt_sets[group[0]])
        conds = [WeightedCond({"embedding": torch.cat([prompt_sets[i][k][0].reshape(1, -1) for i in group]).float()},
                              prompt_sets[group[0]][k][1]) for k in range(terms)]
        uncond = {"embedding": torch.zeros_like(conds[0].cond["embedding"])}
        model_fn = classifier_free(denoiser, conds, uncond, GuidanceConfig(scale=cfg_scale))
        if guidance is not None:
            guidance.begin_batch([seed + i for i in group])
            model_fn = guidance.wrap(model_fn, sigmas=sigmas, generators=generators, clamp=None,
                                     timestep_of=timestep_of(denoiser), decode=latents.decode_unclamped)
        try:
            x = SAMPLERS[sampler](model_fn, noise * sigmas[0].to(noise.dtype), sigmas, generator=generators,
                                  callback=callback, **options)
        except NonFiniteError as error:
            raise error.with_hints(hints) from None
        images.append(check_images(latents.decode(x), hints))
    return torch.cat(images)


def timestep_of(denoiser: torch.nn.Module):
    """sigma -> the model's timestep on a 0..999 scale (Disco's per-timestep schedules read it)."""
    if hasattr(denoiser, "sigma_to_t"):
        return denoiser.sigma_to_t
    return lambda sigma: torch.atan(sigma.double()) * (2 / math.pi) * 999  # continuous cosine time t in [0, 1]


def _denoiser(unet: torch.nn.Module, parameterization: str, schedule: dict) -> torch.nn.Module:
    """make_denoiser, with a schedule that cannot be sampled reported as the model's, not as a bug."""
    try:
        return make_denoiser(unet, parameterization=parameterization, schedule=schedule)
    except ValueError as error:  # a second line of defence: the loader validates artdiff.json's schedule first
        raise UserError(f"the model's schedule (artdiff.json) cannot be sampled: {error}") from None
