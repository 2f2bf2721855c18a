"""Options of `artdiff train vae`, light enough for `--help` (no torch, no diffusers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from artdiff.config import option
from artdiff.train.loop_config import LoopConfig


@dataclass
class VaeTrainConfig(LoopConfig):
    """The autoencoder recipe; the loop's options come with it."""

    data: Path = option(Path("data"), "dataset folder (images + manifest.jsonl)", cli=False)
    preset: str = option("mini", "architecture: tiny, mini or sd")
    size: int = option(64, "training image side in pixels")
    kl_weight: float = option(1e-6, "weight of the KL term (small: a near-deterministic autoencoder, as in SD)")
    adversarial_weight: float = option(0.0, "weight of the patch-adversarial term (0 disables it)")
    adversarial_start: int = option(0, "step at which the adversarial term starts")
    scale_images: int = option(512, "images encoded to measure the latent scale")
    lr: float = option(4.5e-4, "peak learning rate (AdamW)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.data = Path(self.data)
        from artdiff.models.vae_specs import vae_preset  # diffusers: when a config is built, never for --help

        factor = vae_preset(self.preset).downsample_factor  # also a clear error for an unknown name
        if self.size % factor:
            raise ValueError(f"--size must be a multiple of {factor} for preset {self.preset}")
