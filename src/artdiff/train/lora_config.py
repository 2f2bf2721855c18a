"""Options of `artdiff train lora`, light enough for `--help` (no torch, no peft)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from artdiff.config import check_all, option
from artdiff.train.loop_config import LoopConfig
from artdiff.train.ti_templates import FILEWORDS


@dataclass
class LoraTrainConfig(LoopConfig):
    """diffusers' LoRA options; the loop's options come with them."""

    data: Path = option(Path("data"), "dataset folder (images + manifest.jsonl with captions)", cli=False)
    model: str | None = option(None, "Stable Diffusion folder (diffusers layout) or a hub id in the local cache")
    rank: int = option(4, "LoRA rank r: the width of each low-rank update")
    alpha: float | None = option(None, "LoRA alpha: updates are scaled by alpha / rank (default: the rank, scale 1)")
    dropout: float = option(0.0, "dropout on the input of each LoRA branch")
    train_text_encoder: bool = option(False, "also put LoRA on the CLIP text encoder's q/k/v/out projections")
    caption_template: str = option(FILEWORDS, "each example's prompt, [filewords] = its manifest caption, e.g. "
                                              "'art by wildsmith, [filewords]'; or a file of such lines (one "
                                              "drawn per example)")
    caption_dropout: float = option(0.0, "train on the empty prompt with this probability (for guidance)")
    size: int | None = option(None, "training image side in pixels (default: the model's native size)")
    preview_prompt: str | None = option(None, "prompt of the 2 fixed-seed previews every --sample-every "
                                              "(default: the first example's prompt)")
    # The loop's options with diffusers' LoRA defaults.
    lr: float = option(1e-4, "peak learning rate (AdamW)")
    ema_decay: float = option(0.0, "EMA of the LoRA weights, used for previews and the saved file (0 disables)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.data = Path(self.data)
        checks = [
            (bool(str(self.model or "").strip()), "--model is required: a Stable Diffusion folder or hub id"),
            (self.rank >= 1, f"--rank must be at least 1, got {self.rank}"),
            (self.alpha is None or self.alpha > 0, f"--alpha must be positive, got {self.alpha}"),
            (0 <= self.dropout < 1, "--dropout must be in [0, 1)"),
            (0 <= self.caption_dropout < 1, "--caption-dropout must be in [0, 1)"),
            (self.size is None or self.size >= 8, "--size must be at least 8 pixels"),
            (bool(self.caption_template.strip()), "--caption-template must not be empty"),
        ]
        check_all(checks)

    @property
    def lora_alpha(self) -> float:
        """alpha, defaulting to the rank (scale 1), as diffusers' script sets lora_alpha=rank."""
        return float(self.alpha if self.alpha is not None else self.rank)
