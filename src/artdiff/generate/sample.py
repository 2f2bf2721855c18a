"""Sample an embedding-conditioned latent model: weighted embeddings -> guided sampler -> VAE decode."""

from __future__ import annotations

import torch

from artdiff.core.guidance import GuidanceConfig, WeightedCond, classifier_free
from artdiff.core.samplers import SAMPLERS
from artdiff.core.schedules import append_zero, cosine_sigmas, discrete_timesteps, karras_sigmas, sigmas_at
from artdiff.models.embedding_ldm import make_denoiser
from artdiff.models.latents import Latents

PromptSet = list[tuple[torch.Tensor, float]]  # (embedding (1, D), weight) pairs mixed into one image


def sampling_sigmas(denoiser: torch.nn.Module, schedule: dict, steps: int, *, karras: bool = False) -> torch.Tensor:
    """The sigmas a sampler walks: trailing DDPM timesteps (or Karras) for discrete models, even cosine time else."""
    if schedule["type"] == "cosine":
        sigmas = cosine_sigmas(steps)
        return karras_sigmas(steps, float(sigmas[-2]), float(sigmas[0])) if karras else sigmas
    if karras:
        return karras_sigmas(steps, denoiser.sigma_min, denoiser.sigma_max)
    timesteps = discrete_timesteps(steps, num_train_timesteps=len(denoiser.sigma_table), spacing="trailing")
    return append_zero(sigmas_at(timesteps, denoiser.sigma_table))


@torch.no_grad()
def sample_from_embeddings(unet: torch.nn.Module, latents: Latents, schedule: dict, parameterization: str,
                           prompt_sets: list[PromptSet], *, cfg_scale: float, steps: int, seed: int, latent_size: int,
                           sampler: str = "dpm++2m", karras: bool = False, eta: float = 0.0,
                           callback=None) -> torch.Tensor:
    """Images (N, 3, H, W) in [0, 1]; image i uses generator seed + i, so it does not depend on N.

    Each prompt set mixes its embeddings as CCLD does: uncond + cfg_scale * sum_i w_i (cond_i - uncond),
    with the zero vector as the unconditional embedding.
    """
    denoiser = make_denoiser(unet, parameterization=parameterization, schedule=schedule)
    sigmas = sampling_sigmas(denoiser, schedule, steps, karras=karras)
    channels = unet.config.in_channels
    images = []
    for index, prompt_set in enumerate(prompt_sets):
        generator = torch.Generator().manual_seed(seed + index)
        noise = torch.randn((1, channels, latent_size, latent_size), generator=generator)
        conds = [WeightedCond({"embedding": e.reshape(1, -1).float()}, w) for e, w in prompt_set]
        uncond = {"embedding": torch.zeros_like(conds[0].cond["embedding"])}
        model_fn = classifier_free(denoiser, conds, uncond, GuidanceConfig(scale=cfg_scale))
        options = {"eta": eta} if sampler in ("ddim", "euler_a") else {}
        x = SAMPLERS[sampler](model_fn, noise * sigmas[0].to(noise.dtype), sigmas, generator=generator,
                              callback=callback, **options)
        images.append(latents.decode(x))
    return torch.cat(images)
