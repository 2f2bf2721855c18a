"""Stable Diffusion latents of a dataset, cached once per data, VAE and size (shared by textual inversion and LoRA)."""

from __future__ import annotations

from pathlib import Path

import torch

from artdiff.data.cache import cached_features, fingerprint_folder
from artdiff.data.dataset import ImageDataset
from artdiff.models.stable_diffusion import StableDiffusion


def cached_sd_latents(sd: StableDiffusion, data: ImageDataset, data_dir: Path, size: int, *,
                      progress: bool) -> dict[str, torch.Tensor]:
    """Posterior mean and std of every image's latent, scaled by the model's latent scale."""
    vae, scale = sd.vae, sd.latent_scale

    @torch.no_grad()
    def compute(indices: list[int]) -> dict[str, torch.Tensor]:
        posterior = vae.encode(data.images(indices) * 2 - 1).latent_dist
        return {"latent_mean": posterior.mean * scale, "latent_std": posterior.std * scale}

    folder = Path(sd.path)  # a diffusers folder, or a single checkpoint file identified by its hash
    vae_identity = fingerprint_folder(folder / "vae") if folder.is_dir() else sd.hash
    identity = {"kind": "sd-latents", "size": size, "scale": scale, "vae": vae_identity}
    return cached_features(data_dir, identity, compute, len(data), batch_size=8, show_progress=progress)
