"""Options of `artdiff train judge`, light enough for `--help` (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from artdiff.config import option
from artdiff.train.loop_config import LoopConfig


@dataclass
class JudgeTrainConfig(LoopConfig):
    """How the judge is trained; the loop's options come with it (--max-steps, when given, wins over --epochs)."""

    data: Path = option(Path("synth"), "labelled dataset (manifest records with 'labels'), e.g. from artdiff synth",
                        cli=False)
    image_size: int = option(32, "judge input size (32 px keeps style, palette and ground apart; 4x cheaper than 64)")
    epochs: int = option(10, "passes over the training images, unless --max-steps is given")
    max_steps: int | None = option(None, "optimizer steps (default: as many as --epochs passes take)")
    val_fraction: float = option(0.1, "share of images held out to measure accuracy")
    batch_size: int = option(128, "images per step")
    lr: float = option(3e-3, "peak learning rate (AdamW, cosine decay after warmup)")
    weight_decay: float = option(0.05, "AdamW weight decay")
    warmup_steps: int = option(100, "linear warmup from 0 to --lr")
    ema_decay: float = option(0.0, "EMA of the weights (off: a classifier this small does not need it)")
    checkpoint_every: int = option(200, "save a full checkpoint every N steps (also on Ctrl-C)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.data = Path(self.data)
        if not 0 < self.val_fraction < 1:
            raise ValueError("--val-fraction must be between 0 and 1")
        if self.epochs < 1:
            raise ValueError("--epochs must be at least 1")
        if self.image_size < 8:  # three stride-2 stages
            raise ValueError("--image-size must be at least 8")
