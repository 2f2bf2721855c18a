"""Judge-based metrics for generated images: label adherence and FD-judge beside its real-vs-real baseline."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from artdiff.evaluate.frechet import frechet_between
from artdiff.models.judge import Judge


@torch.no_grad()
def judge_features(judge: Judge, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Pooled judge features (N, D) of images (N, 3, H, W), float in [0, 1] or uint8."""
    feats = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        feats.append(judge.features(batch.float() / 255 if batch.dtype == torch.uint8 else batch.float()))
    return torch.cat(feats)


@torch.no_grad()
def adherence(judge: Judge, images: torch.Tensor, wanted: list[dict[str, str]]) -> dict[str, float]:
    """Per label kind, the share of images the judge gives the label their prompt asked for.

    `wanted[i]` holds the labels image i should show; kinds a prompt does not name are not scored.
    """
    if len(wanted) != len(images):
        raise ValueError(f"{len(images)} images but {len(wanted)} label sets")
    predicted = judge.predict(images.float() / 255 if images.dtype == torch.uint8 else images.float())
    scores: dict[str, list[bool]] = {}
    for index, labels in enumerate(wanted):
        for kind, label in labels.items():
            if kind in predicted:
                scores.setdefault(kind, []).append(predicted[kind][index] == label)
    return {kind: sum(hits) / len(hits) for kind, hits in sorted(scores.items())}


@dataclass
class FrechetReport:
    """FD-judge of a generated set and the real-vs-real baseline at the same sample size."""

    fd: float
    baseline: float
    samples: int

    @property
    def ratio(self) -> float:
        """FD over the baseline: 1 means as close to the real images as another real sample is."""
        return self.fd / self.baseline if self.baseline > 0 else float("inf")

    def to_json(self) -> dict[str, float]:
        """Plain numbers for --json."""
        return {"fd_judge": round(self.fd, 4), "real_vs_real": round(self.baseline, 4),
                "ratio": round(self.ratio, 3), "samples": self.samples}


def fd_judge(judge: Judge, generated: torch.Tensor, real: torch.Tensor, *, seed: int = 0) -> FrechetReport:
    """FD between generated and real judge features, beside FD between two disjoint real samples of that size.

    `real` must hold at least twice as many images as `generated`, so both real samples are disjoint.
    """
    n = len(generated)
    if len(real) < 2 * n:
        raise ValueError(f"need at least {2 * n} real images for a baseline at {n} samples, got {len(real)}")
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))
    first, second = real[order[:n]], real[order[n:2 * n]]
    real_feats = judge_features(judge, first)
    return FrechetReport(fd=frechet_between(judge_features(judge, generated), real_feats),
                         baseline=frechet_between(judge_features(judge, second), real_feats), samples=n)
