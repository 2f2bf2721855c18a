"""`artdiff evaluate --model PIXEL_MODEL`: did an unconditional model learn the whole procedural art set?

An unconditional model has no prompt to obey, so it is judged on its distribution (issue 13's bars):
- style coverage: the shipped judge labels each of N samples (fixed seeds); every one of the 8 styles must be
  at least 6% of them, so the model learned every mode and not a few;
- FD-judge against N real procedural images of a seed no model was trained on, beside the real-vs-real
  baseline at the same N (judge_metrics.fd_judge); the ratio must be at most 2;
- speed: images per second of sampling.
Below MIN_BAR_SAMPLES samples the figures are reported but the bars are not judged (`passed` is null): with a
handful of images a 4-step random model can hold the FD bar and one image moves a style share by whole percents.
The sampling options are resolved and checked as `artdiff generate` resolves them for the same model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from artdiff.config import check_all
from artdiff.data.synthetic_labels import STYLES
from artdiff.errors import UserError
from artdiff.evaluate.judge_eval import load_checked_judge
from artdiff.evaluate.judge_metrics import fd_judge
from artdiff.evaluate.model_eval import REAL_SEED, real_images
from artdiff.generate.options import GenerateOptions, recorded_eta
from artdiff.generate.pixel_generate import PixelPlan, plan_sampling
from artdiff.generate.pixel_sample import sample_pixels
from artdiff.models.judge import Judge
from artdiff.models.pixel.pixel_model import PixelModel, load_pixel_model
from artdiff.utils.assets import SHIPPED_JUDGE, shipped

MIN_STYLE_SHARE = 0.06  # 8 styles: an even model gives each 12.5%; half that still counts as learned
MAX_FD_RATIO = 2.0
MIN_BAR_SAMPLES = 64  # fewer: the shares and FD are too noisy to judge (review of issue 13: ratio 1.88 at N=2)


@dataclass
class PixelEvalConfig:
    """Which model, how many samples, and how they are drawn (sample i uses seed + i)."""

    model: str
    judge: Path | None = None
    samples: int = 512
    steps: int | None = None  # None: generate's default (50), or the count --respacing keeps
    sampler: str | None = None  # None: generate's rule (ddim; ddpm for --respacing N or A,B,C)
    respacing: str | None = None
    eta: float | None = None
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        check_all([(2 <= self.samples <= 100_000, f"--samples must be 2 to 100,000 (got {self.samples}); FD needs "
                                                  "at least two images"),
                   (1 <= self.batch_size <= 4096, f"--batch-size must be 1 to 4096 (got {self.batch_size})")])
        self.generate_options()  # generate's own checks of steps, sampler, respacing and eta (ValueError)

    def generate_options(self) -> GenerateOptions:
        """The sampling part of this config as the `artdiff generate` request it stands for."""
        return GenerateOptions(model=self.model, steps=self.steps, sampler=self.sampler, respacing=self.respacing,
                               eta=self.eta, seed=self.seed)


@dataclass
class PixelEvalReport:
    """The figures of one evaluation and whether each bar holds."""

    style_shares: dict[str, float]
    fd: dict[str, float]
    images_per_s: float
    samples: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def min_style(self) -> tuple[str, float]:
        """The rarest style among the samples and its share."""
        name = min(self.style_shares, key=self.style_shares.__getitem__)
        return name, self.style_shares[name]

    @property
    def bars_meaningful(self) -> bool:
        """Whether there are enough samples (MIN_BAR_SAMPLES) for the bars to say anything."""
        return self.samples >= MIN_BAR_SAMPLES

    def bars(self) -> dict[str, bool]:
        """Issue 13's bars: every style at least 6% of the samples, FD-judge at most 2x the real-vs-real baseline."""
        return {f"every style >= {MIN_STYLE_SHARE:.0%}": self.min_style[1] >= MIN_STYLE_SHARE,
                f"FD ratio <= {MAX_FD_RATIO:g}": self.fd["ratio"] <= MAX_FD_RATIO}

    def to_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        name, share = self.min_style
        return {"samples": self.samples, "style_shares": {k: round(v, 4) for k, v in self.style_shares.items()},
                "min_style": {"style": name, "share": round(share, 4)}, "fd": self.fd,
                "images_per_s": round(self.images_per_s, 3), "bars": self.bars(),
                "bars_meaningful": self.bars_meaningful,
                "passed": all(self.bars().values()) if self.bars_meaningful else None, "settings": self.settings}


def style_shares(judge: Judge, images: torch.Tensor) -> dict[str, float]:
    """The share of images the judge calls each of the 8 styles (every style listed, absent ones at 0).

    A judge trained on a set lacking some styles has no class for them: those stay at 0, and the bar fails.
    """
    if "style" not in judge.spec.labels or not set(judge.spec.labels["style"]) <= set(STYLES):
        raise UserError("the judge has no head for the 8 procedural styles; use the shipped judge or one trained "
                        "with `artdiff train judge` on an `artdiff synth` set")
    predicted = judge.predict(images.float() / 255 if images.dtype == torch.uint8 else images.float())["style"]
    return {style: predicted.count(style) / len(predicted) for style in STYLES}


def as_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats as the 8-bit pixels a saved PNG holds, so samples are judged as real images are."""
    return (images * 255).round().clamp(0, 255).to(torch.uint8)


def sample_set(model: PixelModel, cfg: PixelEvalConfig, plan: PixelPlan) -> tuple[torch.Tensor, float]:
    """cfg.samples images (uint8 (N, 3, S, S)) at seeds seed..seed+N-1 as planned, and the seconds they took."""
    started, batches = time.perf_counter(), []
    for start in range(0, cfg.samples, cfg.batch_size):
        seeds = [cfg.seed + i for i in range(start, min(start + cfg.batch_size, cfg.samples))]
        with torch.no_grad():
            batches.append(as_uint8(sample_pixels(model.unet, model.info, seeds=seeds, steps=plan.steps,
                                                  sampler=plan.sampler, respacing=cfg.respacing, eta=plan.eta)))
    return torch.cat(batches), time.perf_counter() - started


def evaluate_pixel_model(cfg: PixelEvalConfig) -> PixelEvalReport:
    """Sample, label every sample's style, and measure FD-judge beside its real-vs-real baseline."""
    model = load_pixel_model(cfg.model)
    judge = load_checked_judge(cfg.judge or shipped(SHIPPED_JUDGE, "judge"))
    plan = plan_sampling(cfg.generate_options(), model)  # e.g. --steps that --respacing contradicts: one line
    generated, seconds = sample_set(model, cfg, plan)
    real, _ = real_images(2 * cfg.samples, model.image_size, seed=REAL_SEED)
    return PixelEvalReport(
        style_shares=style_shares(judge, generated), fd=fd_judge(judge, generated, real).to_json(),
        images_per_s=cfg.samples / seconds, samples=cfg.samples,
        settings={"model": str(model.path), "sampler": plan.sampler, "steps": plan.steps, "respacing": cfg.respacing,
                  "timesteps": plan.timesteps, "eta": recorded_eta(plan.sampler, plan.eta), "seed": cfg.seed, "real_seed": REAL_SEED, "image_size": model.image_size})
