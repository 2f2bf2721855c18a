"""The embedding-conditioned latent denoiser of CCLD: a UNet attending to one joint-embedding token.

The condition is an L2-normalised CLOOB/CLIP embedding (B, D) seen as a one-token sequence (B, 1, D);
when D differs from the UNet's cross-attention width, diffusers' `encoder_hid_proj` (a learned linear
map) bridges them. The null condition for classifier-free guidance is the zero vector.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from diffusers import UNet2DConditionModel

from artdiff.core.denoisers import ContinuousCosineDenoiser, DiscreteDenoiser
from artdiff.core.schedules import alphas_cumprod, ddpm_betas


@dataclass(frozen=True)
class EmbeddingUNetSpec:
    """Widths and depth of the denoising UNet; every level but the first attends to the embedding."""

    block_out_channels: tuple[int, ...] = (64, 128, 256)
    layers_per_block: int = 2
    cross_attention_dim: int = 256
    attention_head_dim: int = 8
    norm_num_groups: int = 32


UNET_PRESETS = {
    "tiny": EmbeddingUNetSpec(block_out_channels=(16, 32), layers_per_block=1, cross_attention_dim=32,
                              attention_head_dim=4, norm_num_groups=8),
    # For 16x16x4 latents of 64 px art, trainable on 2 CPU cores within the hour: about 6.7M parameters
    # (0.5 s per step of 32 there); shipped in fp16 it stays within the 40 MB asset budget.
    "mini": EmbeddingUNetSpec(block_out_channels=(64, 128, 128), layers_per_block=1, cross_attention_dim=128,
                              attention_head_dim=32, norm_num_groups=32),
    # The distilled student of the write-ups (~105M) and the teacher class (~1.2B), for GPU benchmarks.
    "student-105m": EmbeddingUNetSpec(block_out_channels=(192, 384, 576, 768), layers_per_block=2,
                                      cross_attention_dim=768, attention_head_dim=64),
    "ccld-1.2b": EmbeddingUNetSpec(block_out_channels=(512, 1024, 1536, 2048), layers_per_block=3,
                                   cross_attention_dim=1024, attention_head_dim=64),
}


def unet_preset(name: str) -> EmbeddingUNetSpec:
    """A named UNet spec, or a clear error listing the names."""
    if name not in UNET_PRESETS:
        raise ValueError(f"unknown UNet preset {name!r}; choose one of {', '.join(UNET_PRESETS)}")
    return UNET_PRESETS[name]


def build_embedding_unet(spec: EmbeddingUNetSpec, *, embed_dim: int, latent_channels: int = 4,
                         sample_size: int = 16) -> UNet2DConditionModel:
    """A random UNet2DConditionModel that attends to a (B, 1, embed_dim) condition."""
    levels = len(spec.block_out_channels)
    project = embed_dim != spec.cross_attention_dim
    fields = asdict(spec)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=latent_channels, out_channels=latent_channels,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        encoder_hid_dim=embed_dim if project else None, encoder_hid_dim_type="text_proj" if project else None,
        **fields)


def embedding_network(unet: UNet2DConditionModel, *, time_scale: float = 1.0):
    """network(x_in, t, embedding) for the denoiser adapters: the embedding becomes a one-token sequence."""

    def network(x_in: torch.Tensor, t: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return unet(x_in, t * time_scale, encoder_hidden_states=embedding[:, None, :].to(x_in.dtype)).sample

    return network


def make_denoiser(unet: UNet2DConditionModel, *, parameterization: str, schedule: dict) -> torch.nn.Module:
    """D(x, sigma, embedding=...) -> x0 for the schedule recorded in the model's artdiff.json."""
    if schedule["type"] == "cosine":
        # v-diffusion's continuous time t in [0, 1] is fed to the UNet's timestep embedding as 1000 t.
        return ContinuousCosineDenoiser(embedding_network(unet, time_scale=1000.0), parameterization=parameterization)
    betas = ddpm_betas(schedule.get("beta_schedule", "scaled_linear"),
                       num_train_timesteps=schedule.get("num_train_timesteps", 1000),
                       beta_start=schedule.get("beta_start", 0.00085), beta_end=schedule.get("beta_end", 0.012))
    return DiscreteDenoiser(embedding_network(unet), alphas_cumprod(betas), parameterization=parameterization)
