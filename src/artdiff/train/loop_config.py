"""Options of the shared training loop (every `artdiff train METHOD` has these)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from artdiff.config import check_all, option

MAX_STEPS = 10**9  # far beyond any run; a larger count is a typo, not a plan

# Options that may change between an interrupted run and its resumption without changing the result.
RESUMABLE_CHANGES = ("max_steps", "checkpoint_every", "keep_checkpoints", "sample_every", "log_every", "progress",
                     "report_to", "out")


@dataclass
class LoopConfig:
    """How to optimise: batch, schedule, EMA, precision, checkpoints and samples."""

    out: Path = option(Path("runs/run"), "run folder: config, checkpoints, samples, logs and the final model")
    max_steps: int = option(1000, "optimizer steps")
    batch_size: int = option(32, "examples per optimizer step, over all processes and accumulation steps")
    grad_accum: int = option(1, "split each batch into this many micro-batches (same result, less memory)")
    lr: float = option(1e-4, "peak learning rate (AdamW)")
    weight_decay: float = option(0.01, "AdamW weight decay")
    warmup_steps: int = option(100, "linear warmup from 0 to --lr")
    lr_schedule: Literal["constant", "cosine", "linear"] = option("cosine", "decay after warmup")
    grad_clip: float = option(1.0, "clip the gradient norm to this (0 disables)")
    ema_decay: float = option(0.999, "EMA of the weights, used for samples and the final model (0 disables)")
    ema_warmup: bool = option(True, "ramp the EMA decay up from 0 (the average starts from the trained weights)")
    mixed_precision: Literal["no", "fp16", "bf16"] = option("no", "autocast precision (fp16 only on GPU; bf16 also on CPU)")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass to save memory")
    checkpoint_every: int = option(500, "save a full checkpoint every N steps (also on Ctrl-C)")
    keep_checkpoints: int = option(2, "keep the last K checkpoints")
    sample_every: int = option(0, "write a fixed-seed sample grid every N steps (0: one at the end; textual inversion and lora: none)")
    log_every: int = option(10, "log the loss every N steps")
    nan_patience: int = option(5, "stop after this many non-finite steps in a row (each is skipped)")
    seed: int = option(0, "seed of the data order, noise and initialisation")
    report_to: Literal["none", "tensorboard", "wandb"] = option("none", "tracker for the logs (through accelerate)")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        finite = all(math.isfinite(v) for v in (self.lr, self.weight_decay, self.grad_clip, self.ema_decay))
        checks = [
            (self.max_steps is None or 1 <= self.max_steps <= MAX_STEPS, f"--max-steps must be 1 to {MAX_STEPS:,}"),
            (self.batch_size >= 1 and self.grad_accum >= 1, "--batch-size and --grad-accum must be at least 1"),
            (self.batch_size % self.grad_accum == 0, "--batch-size must be a multiple of --grad-accum"),
            (math.isfinite(self.lr) and self.lr > 0, "--lr must be a positive number"),
            (finite, "--weight-decay, --grad-clip and --ema-decay must be finite numbers"),
            (self.weight_decay >= 0 and self.grad_clip >= 0, "--weight-decay and --grad-clip must be 0 or more"),
            (self.warmup_steps >= 0, "--warmup-steps must be 0 or more"),
            (0 <= self.ema_decay < 1, "--ema-decay must be in [0, 1)"),
            (self.checkpoint_every >= 1 and self.keep_checkpoints >= 1, "--checkpoint-every and --keep-checkpoints "
                                                                        "must be at least 1"),
            (self.log_every >= 1 and self.sample_every >= 0, "--log-every must be at least 1, --sample-every 0 "
                                                             "or more"),
            (self.nan_patience >= 1, "--nan-patience must be at least 1"),
            (0 <= self.seed < 2**63, f"--seed must be 0 to {2**63 - 1} (torch's generators take 63 bits)"),
        ]
        check_all(checks)

    def warmup_warning(self) -> str | None:
        """One line when the warmup is longer than the run, so the peak --lr is never reached."""
        return warmup_warning(self.warmup_steps, self.max_steps)

    def lr_factor(self, step: int) -> float:
        """Multiplier of --lr at a step: linear warmup, then constant, cosine or linear decay to 0 at max_steps."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)
        if self.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if self.lr_schedule == "linear":
            return max(0.0, 1 - progress)
        return 1.0


def warmup_warning(warmup_steps: int, max_steps: int | None) -> str | None:
    """One line when the warmup is longer than the run, so the peak --lr is never reached (every trainer)."""
    if max_steps is not None and warmup_steps > max_steps:
        return (f"warning: --warmup-steps {warmup_steps} exceeds --max-steps {max_steps}; the learning rate never "
                "reaches --lr")
    return None
