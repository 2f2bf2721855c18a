"""`artdiff evaluate --model M`: how well an embedding-ldm obeys prompts, judged against the procedural art set.

- Text adherence: the judge's style, palette and ground of images made from prompts, against the prompts' labels.
- Image-prompt consistency: the judge's labels of images made from a real image prompt, against that image's.
- FD-judge against real synthetic images, beside the real-vs-real baseline at the same sample size.
- Diversity: mean pairwise judge-feature distance at one prompt, beside real images with the same labels.
- Speed: images per second of generation.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artdiff.data.synthetic import SynthConfig, render
from artdiff.data.synthetic_labels import GROUNDS, LABEL_KEYS, PALETTES, STYLES, canonical_prompt
from artdiff.errors import UserError
from artdiff.evaluate.judge_eval import load_checked_judge
from artdiff.evaluate.judge_metrics import adherence, fd_judge, judge_features
from artdiff.generate.embedding_generate import EmbeddingModel, load_embedding_model
from artdiff.generate.sample import sample_from_embeddings
from artdiff.models.judge import Judge
from artdiff.utils.assets import SHIPPED_JUDGE, shipped

VOCAB = {"style": STYLES, "palette": PALETTES, "ground": GROUNDS}
REAL_SEED = 424242  # real synthetic images for FD and image prompts: a seed no shipped model was trained on


@dataclass
class ModelEvalConfig:
    """What to generate for the evaluation, at which sampling settings."""

    model: str | None = None
    prompts: Path | None = None  # JSONL of {"prompt", "labels"}; default: one canonical prompt per style x ground
    judge: Path | None = None
    samples_per_prompt: int = 4
    image_prompts: int = 32
    diversity_samples: int = 8
    steps: int = 50
    cfg: float = 3.0
    sampler: str = "dpm++2m"
    seed: int = 0


@dataclass
class ModelEvalReport:
    """The figures of one evaluation."""

    text_adherence: dict[str, float]
    image_consistency: dict[str, float]
    fd: dict[str, float]
    diversity: dict[str, float]
    images_per_s: float
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"text_adherence": self.text_adherence, "image_consistency": self.image_consistency, "fd": self.fd,
                "diversity": self.diversity, "images_per_s": round(self.images_per_s, 3), "counts": self.counts}


def default_prompts() -> list[dict[str, Any]]:
    """Every style on both grounds, with palettes cycling, as canonical prompts: 16 prompts."""
    cycle = itertools.cycle(PALETTES)
    return [{"prompt": canonical_prompt(labels), "labels": labels}
            for labels in ({"style": s, "palette": next(cycle), "ground": g} for s in STYLES for g in GROUNDS)]


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """A JSONL prompts file; unknown label kinds or values are a one-line error naming the line."""
    if not Path(path).is_file():
        raise UserError(f"prompts file {path} does not exist")
    prompts = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path} line {number} is not valid JSON") from None
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
            raise UserError(f"{path} line {number} needs a \"prompt\" string")
        labels = item.get("labels", {})
        for kind, value in labels.items():
            if kind not in VOCAB:
                raise UserError(f"{path} line {number}: unknown label {kind!r}; use {', '.join(LABEL_KEYS)}")
            if value not in VOCAB[kind]:
                raise UserError(f"{path} line {number}: unknown {kind} {value!r}; use one of {', '.join(VOCAB[kind])}")
        prompts.append({"prompt": item["prompt"], "labels": labels})
    if not prompts:
        raise UserError(f"prompts file {path} holds no prompts")
    return prompts


def real_images(count: int, size: int, *, seed: int = REAL_SEED, **filters: list[str]) -> tuple[torch.Tensor, list]:
    """Synthetic images (uint8 (N, 3, S, S)) and their labels, drawn fresh for evaluation."""
    cfg = SynthConfig(out=Path("unused"), n=count, size=size, seed=seed, progress=False, **filters)
    painted = [render(cfg, i) for i in range(count)]
    pixels = np.stack([np.asarray(p.image) for p in painted])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), [p.labels for p in painted]


def evaluate_model(cfg: ModelEvalConfig) -> ModelEvalReport:
    """Generate from text prompts, image prompts and one repeated prompt; judge everything."""
    prompts = read_prompts(cfg.prompts) if cfg.prompts else default_prompts()
    model = load_embedding_model(cfg.model)
    judge = load_checked_judge(cfg.judge or shipped(SHIPPED_JUDGE, "judge"))
    size = model.image_size
    started, generated = time.perf_counter(), 0

    text_sets = [[(model.encoder.embed_text([p["prompt"]]), 1.0)] for p in prompts for _ in range(cfg.samples_per_prompt)]
    text_images = _sample(model, cfg, text_sets)
    wanted = [p["labels"] for p in prompts for _ in range(cfg.samples_per_prompt)]
    generated += len(text_sets)

    sources, source_labels = real_images(cfg.image_prompts, size, seed=REAL_SEED + 1)
    with torch.no_grad():
        image_sets = [[(model.encoder.embed_images(s[None].float() / 255), 1.0)] for s in sources]
    image_images = _sample(model, cfg, image_sets)
    generated += len(image_sets)

    first = prompts[0]
    repeated = _sample(model, cfg, [[(model.encoder.embed_text([first["prompt"]]), 1.0)]] * cfg.diversity_samples)
    generated += cfg.diversity_samples
    seconds = time.perf_counter() - started

    real, _ = real_images(2 * len(text_images), size)
    filters = {f"{k}s": [v] for k, v in first["labels"].items()}
    same_labels, _ = real_images(cfg.diversity_samples, size, seed=REAL_SEED + 2, **filters)
    return ModelEvalReport(
        text_adherence=adherence(judge, text_images, wanted),
        image_consistency=adherence(judge, image_images, source_labels),
        fd=fd_judge(judge, text_images, real).to_json(),
        diversity={"generated": _diversity(judge, repeated), "real_same_labels": _diversity(judge, same_labels),
                   "prompt": first["prompt"]},
        images_per_s=generated / seconds,
        counts={"text_images": len(text_images), "image_prompt_images": len(image_images), "real": len(real)},
    )


def _sample(model: EmbeddingModel, cfg: ModelEvalConfig, prompt_sets: list) -> torch.Tensor:
    images = sample_from_embeddings(model.unet, model.latents, model.info.schedule, model.info.parameterization,
                                    prompt_sets, cfg_scale=cfg.cfg, steps=cfg.steps, seed=cfg.seed,
                                    latent_size=model.image_size // model.latents.factor, sampler=cfg.sampler)
    return images


def _diversity(judge: Judge, images: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance of judge features."""
    feats = judge_features(judge, images)
    distances = torch.cdist(feats, feats)
    n = len(feats)
    return float(distances.sum() / (n * (n - 1))) if n > 1 else 0.0
