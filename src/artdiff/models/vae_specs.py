"""AutoencoderKL architectures (Rombach et al. 2022) as typed specs with named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from diffusers import AutoencoderKL


@dataclass(frozen=True)
class VaeSpec:
    """A diffusers AutoencoderKL: each block after the first halves the resolution."""

    block_out_channels: tuple[int, ...] = (64, 128, 128)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 32

    @property
    def downsample_factor(self) -> int:
        """Pixels per latent along each side."""
        return 2 ** (len(self.block_out_channels) - 1)


VAE_PRESETS = {
    "tiny": VaeSpec(block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=8),
    # 64 px art -> 16x16x4 latents; about 3M parameters, trainable on 2 CPU cores in minutes.
    "mini": VaeSpec(block_out_channels=(32, 64, 128), layers_per_block=1, latent_channels=4, norm_num_groups=16),
    # Stable Diffusion's autoencoder (f = 8), for random-weight benchmarks and fine-tuning.
    "sd": VaeSpec(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32),
}


def vae_preset(name: str) -> VaeSpec:
    """A named VAE spec, or a clear error listing the names."""
    if name not in VAE_PRESETS:
        raise ValueError(f"unknown VAE preset {name!r}; choose one of {', '.join(VAE_PRESETS)}")
    return VAE_PRESETS[name]


def build_vae(spec: VaeSpec) -> AutoencoderKL:
    """A randomly initialised AutoencoderKL of the spec."""
    levels = len(spec.block_out_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
                         up_block_types=("UpDecoderBlock2D",) * levels, **asdict(spec))
