"""Options of `artdiff train textual-inversion`, light enough for `--help` (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from artdiff.config import check_all, option
from artdiff.train.loop_config import LoopConfig
from artdiff.train.lr_schedule_string import parse_lr_schedule
from artdiff.train.ti_templates import NAME, TEMPLATES, resolve_template, uses

MAX_VECTORS = 16


@dataclass
class TextualInversionConfig(LoopConfig):
    """A1111's textual-inversion options; the loop's defaults are set to A1111's (batch 1, no decay, no clip)."""

    data: Path = option(Path("data"), "dataset folder (images + manifest.jsonl; captions are the [filewords])",
                        cli=False)
    model: str | None = option(None, "Stable Diffusion folder (diffusers layout) or a hub id in the local cache")
    token: str | None = option(None, "the new prompt word, e.g. <wildsmith> (with --override-token: the files' name)")
    vectors: int | None = option(None, f"vectors per token, 1-{MAX_VECTORS} (default 1; with --override-token "
                                       "the word's token count)")
    init_text: str | None = option(None, "start from this text's token embeddings spread over the vectors "
                                         "(A1111; default '*'; '' starts from zeros)")
    template: str = option("style-filewords", f"prompt templates: {', '.join(TEMPLATES)}, or a file with one "
                                              "template per line ([name] = the token, [filewords] = the caption)")
    lr_schedule: str = option("0.005", "A1111 learning-rate string: RATE:UNTIL_STEP entries, e.g. "
                                       "'0.005:100, 1e-3:1000, 1e-5'; a single rate is constant")
    override_token: str | None = option(None, "learn new vectors for this existing word instead of adding a token")
    size: int | None = option(None, "training image side in pixels (default: the model's native size)")
    latent_sampling: Literal["once", "deterministic", "random"] = option(
        "once", "A1111: one posterior sample per image, the posterior mean, or a new sample every step")
    shuffle_tags: bool = option(False, "shuffle the comma-separated tags of [filewords] in every prompt (A1111)")
    tag_dropout: float = option(0.0, "drop each [filewords] tag with this probability (A1111)")
    preview_prompt: str = option("a painting by [name]", "prompt of the 2 fixed-seed previews every --sample-every")
    # The loop's options with A1111's defaults.
    lr: float = option(0.005, "peak learning rate: set from --lr-schedule (its largest rate)", cli=False)
    max_steps: int = option(3000, "optimizer steps (a schedule whose last entry has a step stops there, as A1111)")
    batch_size: int = option(1, "examples per optimizer step, over all processes and accumulation steps")
    weight_decay: float = option(0.0, "AdamW weight decay (A1111: 0)")
    warmup_steps: int = option(0, "linear warmup from 0 to the scheduled rate (A1111: none)")
    grad_clip: float = option(0.0, "clip the gradient norm to this (0 disables, as A1111's default)")
    ema_decay: float = option(0.0, "EMA of the vectors, used for previews and the saved files (0 disables)")

    def __post_init__(self) -> None:
        schedule = parse_lr_schedule(self.lr_schedule)
        self.lr = schedule.peak  # the base rate the loop scales; lr_factor() turns it into the schedule
        if schedule.end_step is not None:
            self.max_steps = min(self.max_steps, schedule.end_step)
        super().__post_init__()
        self.data = Path(self.data)
        word, self.token = (self.override_token or "").strip(), self.token or None
        checks = [
            (bool(str(self.model or "").strip()), "--model is required: a Stable Diffusion folder or hub id"),
            (self.override_token is None or bool(word), "--override-token needs a word"),
            (bool(word or self.token), "--token is required, e.g. --token '<wildsmith>' (or --override-token)"),
            (not any(c.isspace() for c in self.token or ""), f"--token {self.token!r} must be one word, no spaces"),
            (not self.token or bool(file_stem(self.token)), f"--token {self.token!r} needs a letter or digit"),
            (self.vectors is None or 1 <= self.vectors <= MAX_VECTORS,
             f"--vectors must be between 1 and {MAX_VECTORS}, got {self.vectors}"),
            (not (word and self.init_text is not None), "--init-text does not apply with --override-token: "
                                                        "the word's own rows are the start"),
            (0 <= self.tag_dropout < 1, "--tag-dropout must be in [0, 1)"),
            (self.size is None or self.size >= 8, "--size must be at least 8 pixels"),
        ]
        check_all(checks)
        if not uses(resolve_template(self.template), NAME):
            raise ValueError(f"template {self.template!r} never says [name], so the embedding would not train; "
                             "use style-filewords, style, subject or subject-filewords")

    def lr_factor(self, step: int) -> float:
        """Multiplier of --lr after `step` optimizer steps: the schedule string's rate (times any warmup)."""
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return parse_lr_schedule(self.lr_schedule).rate_at(step) / self.lr * warmup


def file_stem(token: str) -> str:
    """A1111's file name for an embedding: the token with only letters, digits and "._- " kept."""
    return "".join(c for c in token if c.isalnum() or c in "._- ").strip()
