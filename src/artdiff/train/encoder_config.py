"""Options of `artdiff train encoder`, in a module light enough for `--help` (no torch, no transformers)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from artdiff.config import check_all, option
from artdiff.errors import UserError
from artdiff.train.loop_config import warmup_warning

Loss = Literal["clip", "cloob"]
LOSSES: tuple[str, ...] = get_args(Loss)
# Peak learning rates measured on the 64 px synthetic set (benchmarks/encoder_training.py): CLIP gained from
# 2e-3 over 1e-3; CLOOB at 3e-3 collapsed every embedding to one point in an earlier run, so it stays at 1e-3.
DEFAULT_LR: dict[str, float] = {"clip": 2e-3, "cloob": 1e-3}
CLIP_LOGIT_SCALE_MAX = 100.0  # CLIP clips its learned multiplier here "to prevent training instability"
# The same values as core/contrastive.py's CLOOB_INV_TAU and CLOOB_HOPFIELD_BETA (a test keeps them equal);
# written out here so that `--help` need not import torch.
CLOOB_INV_TAU, CLOOB_HOPFIELD_BETA = 30.0, 8.0
PRESET_NAMES = ("tiny", "mini")  # models/specs.py's CLIP_PRESETS (a test keeps them equal)
# Old spellings of renamed options: read from earlier train_config.yaml / run.json files and accepted as flags.
RENAMED = {"steps": "max_steps", "warmup": "warmup_steps"}


@dataclass
class EncoderTrainConfig:
    """How a joint encoder is trained from scratch (Radford et al. 2021; Fürst et al. 2021)."""

    data: Path = option(Path("synth"), "dataset with captions (manifest records with 'caption'), e.g. from "
                                       "artdiff synth", cli=False)
    out: Path = option(Path("encoder"), "folder to write the encoder to (a CLIP model folder)")
    loss: Loss = option("cloob", "objective: clip (InfoNCE, learned temperature) or cloob (InfoLOOB on "
                                 "Hopfield retrievals, fixed temperature)")
    preset: str = option("mini", f"architecture preset: {', '.join(PRESET_NAMES)}")
    # A ClipSpec (models/specs.py) or its plain data; checked and turned into a ClipSpec when the config is built.
    spec: Any = option(None, "architecture given in full, instead of the preset (YAML config only)", cli=False)
    # 800 x 256 pairs (about 10 passes over 20,000 images) train the mini preset in about 8 minutes on 2 cores.
    max_steps: int = option(800, "optimizer steps")
    # Contrastive losses see batch_size - 1 negatives per pair; 256 covers the synthetic set's 96 label mixes.
    batch_size: int = option(256, "image-caption pairs per step")
    lr: float | None = option(None, "peak learning rate", shown_default=", ".join(
        f"{k} {v:g}" for k, v in DEFAULT_LR.items()))
    warmup_steps: int = option(50, "steps of linear warmup before the cosine decay")
    weight_decay: float = option(0.1, "AdamW weight decay on weight matrices (not on norms, biases, scale)")
    inv_tau: float = option(CLOOB_INV_TAU, "CLOOB: fixed inverse temperature 1/tau")
    hopfield_beta: float = option(CLOOB_HOPFIELD_BETA, "CLOOB: Hopfield retrieval inverse temperature beta")
    # From scratch both towers' embeddings start nearly collapsed, and retrievals across modalities carry no
    # pairing signal until the towers align: without this phase CLOOB stalled at chance style accuracy.
    hopfield_start: int = option(100, "CLOOB: step at which the Hopfield retrievals start; before it, plain "
                                      "InfoLOOB (the paper's ablation without them) aligns the two towers")
    logit_scale: float = option(1 / 0.07, "CLIP: initial logit scale 1/tau (learned, clamped at 100)")
    vocab_size: int = option(4096, "largest tokenizer vocabulary (fewer entries when the captions need fewer)")
    val_fraction: float = option(0.05, "share of pairs held out to measure the validation loss")
    log_every: int = option(50, "steps between lines of train_log.jsonl")
    checkpoint_every: int = option(200, "save a checkpoint to OUT.partial every N steps (also on Ctrl-C); the same "
                                        "command resumes from it")
    seed: int = option(0, "seed of the split, initialisation, batch order and flips")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        self.data, self.out = Path(self.data), Path(self.out)
        if self.loss not in LOSSES:
            raise UserError(f"unknown encoder loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        if self.preset not in PRESET_NAMES:
            raise UserError(f"unknown encoder preset {self.preset!r}; use one of {', '.join(PRESET_NAMES)}")
        if self.lr is None:  # resolved here so train_config.yaml records the rate actually used
            self.lr = DEFAULT_LR[self.loss]
        if self.spec is not None:
            # transformers: imported when a config is built, never for --help
            from artdiff.models.specs import ClipSpec

            self.spec = self.spec if isinstance(self.spec, ClipSpec) else ClipSpec.from_dict(self.spec)
        numbers = (self.lr, self.weight_decay, self.inv_tau, self.hopfield_beta, self.logit_scale, self.val_fraction)
        checks = [
            (all(math.isfinite(float(v)) for v in numbers), "--lr, --weight-decay, --inv-tau, --hopfield-beta, "
                                                             "--logit-scale and --val-fraction must be finite"),
            (1 <= self.max_steps <= 10**9, "--max-steps must be 1 to 1,000,000,000"),
            (self.batch_size >= 2, "--batch-size must be at least 2 (contrastive losses need negatives)"),
            (self.lr > 0 and min(self.warmup_steps, self.weight_decay, self.hopfield_start) >= 0,
             "--lr must be positive, --warmup-steps, --weight-decay and --hopfield-start 0 or more"),
            (self.inv_tau > 0 and self.hopfield_beta > 0, "--inv-tau and --hopfield-beta must be positive"),
            (0 < self.logit_scale <= CLIP_LOGIT_SCALE_MAX, "--logit-scale must be in (0, 100]"),
            (0 <= self.val_fraction < 1, "--val-fraction must be in [0, 1)"),
            (self.log_every >= 1 and self.checkpoint_every >= 1, "--log-every and --checkpoint-every must be at "
                                                                  "least 1"),
            (0 <= self.seed < 2**63, f"--seed must be 0 to {2**63 - 1} (torch's generators take 63 bits)"),
        ]
        check_all(checks)

    def warmup_warning(self) -> str | None:
        """One line when the warmup is longer than the run, so the peak --lr is never reached."""
        return warmup_warning(self.warmup_steps, self.max_steps)


def renamed_options(options: dict) -> dict:
    """Options saved by an earlier artdiff under the old names, under the current ones."""
    return {RENAMED.get(k, k): v for k, v in options.items()}
