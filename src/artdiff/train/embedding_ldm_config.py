"""Options of `artdiff train embedding-ldm`, light enough for `--help` (no torch, no diffusers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from artdiff.config import option
from artdiff.train.loop_config import LoopConfig


@dataclass
class EmbeddingLDMConfig(LoopConfig):
    """The CCLD recipe; the loop's options come with it."""

    data: Path = option(Path("data"), "dataset folder (images + manifest.jsonl); captions only for --condition text",
                        cli=False)
    encoder: str | None = option(None, "joint encoder folder or hub id (default: the shipped CLOOB encoder)")
    vae: Path | None = option(None, "autoencoder folder from `artdiff train vae` (required unless --init has one)")
    init: Path | None = option(None, "fine-tune this embedding-ldm model directory instead of starting fresh")
    preset: str = option("mini", "UNet size: tiny, mini, student-105m, ccld-1.2b")
    size: int = option(64, "training image side in pixels")
    condition: Literal["image", "text", "mixed"] = option("image", "condition on image embeddings (caption-free), "
                                                                   "caption embeddings, or either at random")
    cond_dropout: float = option(0.2, "probability of the null (zero) condition, for classifier-free guidance")
    objective: Literal["v", "eps"] = option("v", "what the UNet predicts")
    schedule: Literal["discrete", "cosine"] = option("cosine", "DDPM timesteps (SD's scaled-linear betas) or "
                                                               "v-diffusion's continuous cosine")
    lr: float = option(2e-4, "peak learning rate (AdamW)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.data = Path(self.data)
        from artdiff.models.embedding_ldm import (
            unet_preset,  # diffusers: when a config is built, never for --help
        )

        unet_preset(self.preset)  # a clear error for an unknown name
        if not 0 <= self.cond_dropout < 1:
            raise ValueError("--cond-dropout must be in [0, 1)")
        if self.vae is None and self.init is None:
            raise ValueError("--vae is required (train one with `artdiff train vae`), or --init a model that has one")
