"""The judge's accuracy per label kind on any labelled set (`artdiff evaluate judge`)."""

from __future__ import annotations

from pathlib import Path

import torch

from artdiff.data.labelled import load_labelled
from artdiff.errors import UserError
from artdiff.models import weights_files
from artdiff.models.judge import CONFIG_NAME, WEIGHTS_NAME, Judge, load_judge


def load_checked_judge(directory: Path) -> Judge:
    """load_judge with a damaged config.json or weights file named in one line instead of a library error."""
    directory = Path(directory)
    if (directory / CONFIG_NAME).exists():
        weights_files.read_json_file(directory / CONFIG_NAME)
    if (directory / WEIGHTS_NAME).exists():
        weights_files.check_safetensors(directory / WEIGHTS_NAME)
    try:
        return load_judge(directory)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise UserError(f"{directory}: its {CONFIG_NAME} and {WEIGHTS_NAME} do not make a judge ({reason}); "
                        "train it again with `artdiff train judge`, or leave out --judge for the shipped one") from None


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
    judge = load_checked_judge(judge_dir)
    images, _, targets = load_labelled(data, judge.spec.image_size, vocab=judge.spec.labels)
    return {**judge_accuracy(judge, images, targets), "images": len(images)}
