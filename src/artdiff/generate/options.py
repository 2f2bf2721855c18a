"""One `artdiff generate` request, whatever the model kind, and what it produced."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from artdiff.config import option

Sampler = Literal["dpm++2m", "euler", "euler_a", "heun", "ddim", "ddpm", "plms"]


@dataclass
class GenerateOptions:
    """One generation request; options a model kind cannot use are refused with a one-line reason."""

    prompts: list[str] = option(help="text prompts: TEXT or TEXT:WEIGHT for embedding models, one A1111-syntax "
                                     "prompt for Stable Diffusion", cli=False, default_factory=list)
    images: list[str] = option(help="image prompt PATH or PATH:WEIGHT (repeatable)", flag="--image",
                               default_factory=list)
    embeddings: list[str] = option(help="embedding models: FILE[:WEIGHT] from `artdiff embed`; Stable Diffusion: a "
                                        "textual-inversion FILE[:TOKEN] (repeatable)", flag="--embedding",
                                   default_factory=list)
    negative: str = option("", "negative prompt (Stable Diffusion)")
    apply_overrides: bool = option(False, "let --embedding files made with --override-token replace their word "
                                          "(Stable Diffusion; without it they are refused)")
    model: str | None = option(None, "model directory, hub id or SD .safetensors/.ckpt file "
                                     "(default: the shipped artdiff-mini)")
    model_config: str | None = option(None, "SD .safetensors/.ckpt file: diffusers configs to build it with, a "
                                            "folder or sd15 | sd21 | sd21-base (default: detected from the file)",
                                      metavar="DIR")
    tokenizer: str | None = option(None, "SD .safetensors/.ckpt file: CLIP tokenizer folder or diffusers SD "
                                         "folder (default: the local Hugging Face cache)", metavar="DIR")
    cfg: float | None = option(None, "classifier-free guidance scale (default: 3 for embedding models, "
                                     "7.5 for Stable Diffusion)", shown_default="per model")
    rescale: float = option(0.0, "guidance rescale phi (Lin et al. 2023); 0.7 suits v-prediction models")
    steps: int = option(50, "sampling steps")
    sampler: Sampler = option("dpm++2m", "sampler")
    karras: bool = option(False, "Karras et al. (2022) sigma spacing")
    eta: float = option(0.0, "noise of ddim / euler_a steps")
    seed: int = option(0, "image i uses seed + i, whatever -n is")
    n: int = option(4, "number of images", flag="-n")
    size: int | None = option(None, "square image side in pixels (default: the model's training size)")
    width: int | None = option(None, "image width in pixels (Stable Diffusion; a multiple of 8)")
    height: int | None = option(None, "image height in pixels (Stable Diffusion; a multiple of 8)")
    init_image: str | None = option(None, "start from this image (img2img, Stable Diffusion)")
    strength: float = option(0.75, "how much of --init-image to repaint: 0 keeps it, 1 ignores it")
    lora: list[str] = option(help="LoRA FILE_OR_DIR[:SCALE] (default scale 1) on the UNet and, when the file has "
                                  "its layers, the text encoder: diffusers, kohya or A1111 files (Stable Diffusion; "
                                  "repeatable)", flag="--lora", metavar="FILE[:SCALE]", default_factory=list)
    out: Path = option(Path("outputs/generate"), "folder for the images and their JSON sidecars")

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.n < 1 or self.steps < 1:
            raise ValueError("-n and --steps must be at least 1")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError("--strength must be between 0 and 1")
        if self.cfg is not None and self.cfg < 0:
            raise ValueError("--cfg must not be negative")


@dataclass
class GenerateResult:
    """Where the images are and how fast they came."""

    paths: list[Path]
    seconds: float
    model: str
    prompt: str = ""

    def to_json(self) -> dict:
        """Plain data for --json."""
        return {"images": [str(p) for p in self.paths], "seconds": round(self.seconds, 3), "model": self.model,
                "prompt": self.prompt, "images_per_s": round(len(self.paths) / self.seconds, 3) if self.seconds else None}
