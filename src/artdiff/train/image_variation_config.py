"""Options of `artdiff train image-variation`, light enough for `--help` (no torch, no diffusers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from artdiff.config import option
from artdiff.train.loop_config import LoopConfig


@dataclass
class ImageVariationConfig(LoopConfig):
    """The image-variation recipe; the loop's options come with it."""

    data: Path = option(Path("data"), "dataset folder (images + manifest.jsonl)", cli=False)
    init: str | None = option(None, "Stable Diffusion folder or hub id (its unet, vae and scheduler), or an "
                                    "image-variation model to train further (required)")
    image_encoder: str | None = option(None, "CLIP image encoder: a CLIPVisionModelWithProjection or CLIPModel "
                                             "folder or hub id (default: --init's image_encoder/)")
    stage: Literal["attn", "full"] = option("attn", "attn: only the UNet's cross-attention and the projection "
                                                    "(published stage 1); full: the whole UNet (stage 2)")
    size: int = option(512, "training image side in pixels")
    cond_dropout: float = option(0.1, "probability of the null (zero) condition, for classifier-free guidance")
    # False reproduces the published model (kornia resize without antialiasing); the contract is saved either way.
    encoder_antialias: bool = option(False, "antialias when resizing images for the image encoder (ignored when "
                                            "--init is an image-variation model: its contract is kept)")
    lr: float = option(1e-5, "peak learning rate (AdamW); the published stage 1 used 1e-5")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.data = Path(self.data)
        if not self.init:
            raise ValueError("--init is required: a Stable Diffusion folder or hub id (e.g. "
                             "stable-diffusion-v1-5/stable-diffusion-v1-5)")
        if not 0 <= self.cond_dropout < 1:
            raise ValueError("--cond-dropout must be in [0, 1)")
        if self.size < 8:
            raise ValueError("--size must be at least 8")
