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
                           sampler: str = "dpm++2m", karras: bool = False, eta: float = 0.0, batch_size: int = 8,
                           callback=None) -> torch.Tensor:
    """Images (N, 3, H, W) in [0, 1]; image i draws its noise from generator seed + i, whatever N or the batch.

    Each prompt set mixes its embeddings as CCLD does: uncond + cfg_scale * sum_i w_i (cond_i - uncond),
    with the zero vector as the unconditional embedding.
    """
    denoiser = make_denoiser(unet, parameterization=parameterization, schedule=schedule)
    sigmas = sampling_sigmas(denoiser, schedule, steps, karras=karras)
    channels = unet.config.in_channels
    options = {"eta": eta} if sampler in ("ddim", "euler_a") else {}
    images = []
    for group in _batches(prompt_sets, batch_size):
        generators = [torch.Generator().manual_seed(seed + i) for i in group]
        noise = torch.cat([torch.randn((1, channels, latent_size, latent_size), generator=g) for g in generators])
        terms = len(prompt_sets[group[0]])
        conds = [WeightedCond({"embedding": torch.cat([prompt_sets[i][k][0].reshape(1, -1) for i in group]).float()},
                              prompt_sets[group[0]][k][1]) for k in range(terms)]
        uncond = {"embedding": torch.zeros_like(conds[0].cond["embedding"])}
        model_fn = classifier_free(denoiser, conds, uncond, GuidanceConfig(scale=cfg_scale))
        x = SAMPLERS[sampler](model_fn, noise * sigmas[0].to(noise.dtype), sigmas, generator=generators,
                              callback=callback, **options)
        images.append(latents.decode(x))
    return torch.cat(images)
