"""Turn `--clip-guidance` options into what the guidance wrapper needs: encoders, their prompt embeddings, a config.

Prompts are CCLD's weighted terms ("text:W", --image PATH:W; negative weights push away), embedded once per
encoder before sampling, so a bad prompt, image or encoder stops the run in one line before any step runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from artdiff.errors import UserError
from artdiff.generate.clip_guidance import ClipGuidanceConfig, EncoderPrompts, GuidanceStats, ModelFn, clip_guided
from artdiff.generate.clip_options import ClipGuidanceOptions
from artdiff.generate.guidance_schedules import validate
from artdiff.generate.input_images import read_input_image
from artdiff.generate.prompts import Prompt, parse_prompt
from artdiff.utils.assets import SHIPPED_ENCODER

MAX_ENCODER_WEIGHT = 100.0


@dataclass
class ClipGuidance:
    """The run's encoders with their prompts, the guidance config, and the counts of what it did."""

    prompts: list[EncoderPrompts]
    config: ClipGuidanceConfig
    record: dict  # encoders and prompts as the sidecar records them
    stats: GuidanceStats = field(default_factory=GuidanceStats)
    seeds: list[int] = field(default_factory=list)  # the batch being sampled, for image_stats

    def begin_batch(self, seeds: list[int]) -> None:
        """Start counting afresh for the batch of these seeds."""
        self.stats, self.seeds = GuidanceStats(), list(seeds)

    def image_stats(self, seed: int) -> dict:
        """What the guidance did for one image of the last batch: steps guided, steps skipped as non-finite."""
        index = self.seeds.index(seed) if seed in self.seeds else None
        skipped = self.stats.skipped_per_image
        return {"guided_steps": self.stats.calls,
                "skipped_steps": skipped[index] if index is not None and index < len(skipped) else 0}

    def wrap(self, model_fn: ModelFn, *, sigmas: Tensor, generators: Sequence[torch.Generator],
             timestep_of: Callable[[Tensor], Tensor], clamp: tuple[float, float] | None,
             decode: Callable[[Tensor], Tensor] | None = None) -> ModelFn:
        """model_fn with the guidance gradient added to its x0, counted in self.stats."""
        return clip_guided(model_fn, self.prompts, self.config, sigmas=sigmas, timestep_of=timestep_of,
                           generator=list(generators), decode=decode, stats=self.stats, clamp=clamp)


def guidance_config(options: ClipGuidanceOptions) -> ClipGuidanceConfig:
    """The wrapper's config from the flags (--clamp-max 0: no cap)."""
    try:
        return ClipGuidanceConfig(
            clip_guidance_scale=options.clip_guidance_scale, tv_scale=options.tv_scale,
            range_scale=options.range_scale, saturation_scale=options.saturation_scale,
            init_scale=options.init_scale, scale_multiplier=options.scale_multiplier, cutouts=options.cutouts,
            cutn=options.cutn, cutn_batches=options.cutn_batches, cut_overview=options.cut_overview,
            cut_innercut=options.cut_innercut, cut_ic_pow=options.cut_ic_pow, cut_icgray_p=options.cut_icgray_p,
            skip_augs=options.skip_augs, fixed_cutouts=options.fixed_cutouts, loss=options.clip_loss,
            clamp_max=options.clamp_max or None, guide=options.clip_guide)
    except ValueError as error:
        raise UserError(str(error)) from None


def parse_encoder_spec(text: str) -> tuple[str, float]:
    """ENCODER[:WEIGHT] -> (encoder, weight); a tail that is not a number belongs to the path (C:\\models)."""
    head, sep, tail = text.rpartition(":")
    if sep and head.strip():
        try:
            weight = float(tail)
        except ValueError:
            return text, 1.0
        if not math.isfinite(weight) or not 0 < weight <= MAX_ENCODER_WEIGHT:
            raise UserError(f"--clip-model {text!r}: the weight must be a number above 0 and at most "
                            f"{MAX_ENCODER_WEIGHT:g}")
        return head, weight
    if not text.strip():
        raise UserError("--clip-model needs an encoder folder or hub id")
    return text, 1.0


def guidance_prompts(options) -> list[Prompt]:
    """The text prompts and --image prompts, each with its weight; at least one, and weights not summing to 0."""
    prompts = [parse_prompt(text) for text in options.prompts]
    prompts += [parse_prompt(text, "image") for text in options.images]
    if not prompts:
        raise UserError("--clip-guidance needs something to steer towards: a text prompt (\"a rothko:1\") or "
                        "--image PATH[:WEIGHT]")
    weights = [p.weight for p in prompts]
    if abs(sum(weights)) < 1e-6:
        raise UserError(f"--clip-guidance: the prompt weights {weights} sum to 0; the guidance divides by their "
                        "sum, so change one")
    return prompts


def setup_clip_guidance(options, *, device: torch.device, steps: int,
                        init_image: Tensor | None = None) -> ClipGuidance:
    """Load each --clip-model, embed every prompt with it, and check the guidance settings, before sampling.

    steps: the sampling steps that run (a list schedule must have one entry per step or per timestep);
    init_image (1, 3, H, W) in [0, 1]: what --init-scale pulls towards, embedded by each encoder.
    """
    from artdiff.models.encoders import load_encoder

    config = guidance_config(options)
    for name, schedule in config.schedules().items():
        try:
            validate(schedule, name=f"--{name.replace('_', '-')}", steps=steps)
        except ValueError as error:
            raise UserError(str(error)) from None
    prompts = guidance_prompts(options)
    images = {p.value: read_input_image(p.value, what="--image") for p in prompts if p.kind == "image"}
    specs = [parse_encoder_spec(text) for text in options.clip_model] or [(str(SHIPPED_ENCODER), 1.0)]
    entries = []
    for name, weight in specs:
        encoder = load_encoder(name, device=device)
        embeddings = []
        texts = [p.value for p in prompts if p.kind == "text"]
        with torch.no_grad():
            by_text = iter(encoder.embed_text(texts)) if texts else iter(())
            pictures = [images[p.value].image for p in prompts if p.kind == "image"]
            by_image = iter(encoder.embed_images(pictures)) if pictures else iter(())
            for prompt in prompts:  # in the order given, so weights line up
                embeddings.append(next(by_text) if prompt.kind == "text" else next(by_image))
            init = encoder.embed_images(init_image.to(device)) if init_image is not None else None
        stacked = torch.stack(embeddings)  # (P, D), unit norm
        weights = torch.tensor([p.weight for p in prompts], dtype=torch.float32)
        entries.append(EncoderPrompts(encoder=encoder, embeddings=stacked, weights=weights, weight=weight,
                                      init_embedding=init))
    record = {"encoders": [{"model": name, "weight": weight} for name, weight in specs],
              "prompts": [{"kind": p.kind, "value": p.value, "weight": p.weight,
                           **({"sha256": images[p.value].sha256} if p.kind == "image" else {})} for p in prompts]}
    return ClipGuidance(entries, config, record)
