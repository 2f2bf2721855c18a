"""The judge's accuracy per label kind on any labelled set (`artdiff evaluate judge`)."""

from __future__ import annotations

from pathlib import Path

import torch

from artdiff.data.labelled import load_labelled
from artdiff.models.judge import Judge, load_judge


@torch.no_grad()
def judge_accuracy(judge: Judge, images: torch.Tensor, targets: dict[str, torch.Tensor],
                   batch_size: int = 256) -> dict[str, float]:
    """Share of images (uint8 (N, 3, H, W)) whose predicted class matches the target, per label kind."""
    correct = {k: 0 for k in targets}
    counted = {k: 0 for k in targets}
    for start in range(0, len(images), batch_size):
        logits = judge(images[start:start + batch_size].float() / 255)
        for kind, target in targets.items():
            t = target[start:start + batch_size]
            known = t >= 0
            correct[kind] += int((logits[kind].argmax(1)[known] == t[known]).sum())
            counted[kind] += int(known.sum())
    return {k: correct[k] / counted[k] for k in targets if counted[k]}


def evaluate_judge(judge_dir: Path, data: Path) -> dict[str, float | int]:
    """Accuracy per label of a saved judge on a labelled dataset, with the image count."""
    judge = load_judge(judge_dir)
    images, _, targets = load_labelled(data, judge.spec.image_size, vocab=judge.spec.labels)
    return {**judge_accuracy(judge, images, targets), "images": len(images)}
