"""Options of `artdiff quickstart`, light enough for `--help` (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from artdiff.config import check_all, option


@dataclass
class QuickstartConfig:
    """Sizes and lengths of each stage; `--scale tiny` runs the same recipe in seconds, for a smoke test."""

    out: Path = option(Path("outputs/quickstart"), "folder for every stage's outputs", cli=False)
    scale: Literal["mini", "tiny"] = option("mini", "mini: the shipped recipe; tiny: a seconds-long smoke run")
    images: int = option(20000, "procedural training images")
    size: int = option(64, "image side in pixels")
    judge_epochs: int = option(10, "judge epochs")
    encoder_steps: int = option(1000, "encoder optimizer steps")
    vae_steps: int = option(1200, "autoencoder optimizer steps (batch 16)")
    ldm_steps: int = option(6500, "embedding-LDM optimizer steps (batch 32)")
    # pixel-mini in bf16 autocast: about 1.1 s per batch-32 step on 2 cores (fp32 takes twice that), so ~2 h.
    pixel_steps: int = option(6000, "unconditional pixel model optimizer steps (batch 32); 0 skips the pixel stage "
                                    "and its evaluation. The default takes about 2 h on 2 CPU cores (bf16, ~1.1 s "
                                    "per step), minutes on a GPU")
    pixel_samples: int = option(512, "samples the pixel model is judged on (style shares, FD-judge)")
    seed: int = option(0, "seed of every stage")
    progress: bool = option(True, "show progress bars")

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.scale == "tiny":  # the same stages at toy sizes
            self.images, self.size = min(self.images, 48), 16
            self.judge_epochs, self.encoder_steps, self.vae_steps, self.ldm_steps = 2, 2, 2, 2
            self.pixel_steps, self.pixel_samples = min(self.pixel_steps, 2), min(self.pixel_samples, 8)
        check_all([(self.pixel_steps >= 0, "--pixel-steps must be 0 (skip the pixel stage) or more"),
                   (self.pixel_samples >= 2, "--pixel-samples must be at least 2 (FD-judge needs two images)")])
