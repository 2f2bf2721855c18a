"""Pixels to latents and back through a diffusers AutoencoderKL, with the latent scale the model was trained with."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL

TILE_THRESHOLD = 1024  # decode in tiles above this many pixels per side, to bound memory


class Latents:
    """Encode images in [0, 1] to scaled latents and decode them back (Rombach et al. 2022)."""

    def __init__(self, vae: AutoencoderKL, *, scale: float) -> None:
        self.vae = vae
        self.scale = scale  # 1 / std of the training latents, measured on the data (never a constant)

    @property
    def factor(self) -> int:
        """Pixels per latent along each side."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode(self, images: torch.Tensor, *, generator: torch.Generator | None = None,
               sample: bool = True) -> torch.Tensor:
        """Scaled latents (B, C, H/f, W/f) of images (B, 3, H, W) in [0, 1]; the posterior mean if not sampling."""
        if images.shape[-1] % self.factor or images.shape[-2] % self.factor:
            raise ValueError(f"image sides must be multiples of {self.factor}, got {tuple(images.shape[-2:])}")
        posterior = self.vae.encode(images.to(self.vae.dtype) * 2 - 1).latent_dist
        latents = posterior.sample(generator) if sample else posterior.mean
        return latents * self.scale

    def decode(self, latents: torch.Tensor, *, tiled: bool | None = None) -> torch.Tensor:
        """Images in [0, 1] from scaled latents; large outputs are decoded in overlapping tiles."""
        side = max(latents.shape[-2:]) * self.factor
        use_tiles = tiled if tiled is not None else side > TILE_THRESHOLD
        if use_tiles:
            self.vae.enable_tiling()
        try:
            images = self.vae.decode(latents.to(self.vae.dtype) / self.scale).sample
        finally:
            if use_tiles:
                self.vae.disable_tiling()
        return ((images.float() + 1) / 2).clamp(0, 1)


    def decode_unclamped(self, latents: torch.Tensor) -> torch.Tensor:
        """The VAE's own output in about [-1, 1], unclamped and differentiable (CLIP guidance decodes inside the
        gradient, where a clamp would stop it on every saturated pixel and hide what the range loss penalises)."""
        return self.vae.decode(latents.to(self.vae.dtype) / self.scale).sample.float()


@torch.no_grad()
def measure_latent_scale(vae: AutoencoderKL, batches, *, generator: torch.Generator | None = None) -> float:
    """1 / std of sampled latents over the given image batches (in [0, 1]), as CCLD measures it."""
    total, total_sq, count = 0.0, 0.0, 0
    for images in batches:
        latents = vae.encode(images.to(vae.dtype) * 2 - 1).latent_dist.sample(generator).double()
        total += float(latents.sum())
        total_sq += float((latents**2).sum())
        count += latents.numel()
    if count == 0:
        raise ValueError("no images to measure the latent scale on")
    variance = total_sq / count - (total / count) ** 2
    return 1.0 / max(variance, 1e-12) ** 0.5
