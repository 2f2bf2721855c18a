"""Train the judge on a labelled image set (the procedural art set): one cross-entropy head per label kind.

It runs on the shared loop, so it checkpoints, resumes and stops on Ctrl-C like every other method.
The finished judge is RUN/model (safetensors + config.json), with its held-out accuracy in accuracy.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from artdiff.data.labelled import load_labelled
from artdiff.evaluate.judge_eval import judge_accuracy
from artdiff.models.judge import Judge, JudgeSpec, load_judge, save_judge
from artdiff.train.judge_config import JudgeTrainConfig  # noqa: F401 - the options live there, for a fast --help
from artdiff.train.loop import run_training
from artdiff.utils.io import atomic_write_json


@dataclass
class JudgeTrainResult:
    """The trained judge and its held-out accuracy per label kind."""

    out: Path
    accuracy: dict[str, float]
    train_images: int
    val_images: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"out": str(self.out), "accuracy": self.accuracy, "train_images": self.train_images,
                "val_images": self.val_images, "seconds": round(self.seconds, 1)}


class JudgeTask:
    """Images and labels in memory; mirrored at random (no label depends on left and right)."""

    def __init__(self, cfg: JudgeTrainConfig) -> None:
        self.images, self.vocab, self.targets = load_labelled(cfg.data, cfg.image_size)
        order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(cfg.seed))
        n_val = max(1, int(len(self.images) * cfg.val_fraction))
        self.val, self.train = order[:n_val], order[n_val:]
        torch.manual_seed(cfg.seed)
        self.model = Judge(JudgeSpec(labels=self.vocab, image_size=cfg.image_size))

    def trainable(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    def dataset_size(self) -> int:
        return len(self.train)

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rows = self.train[indices]
        return self.images[rows].float() / 255, {k: t[rows] for k, t in self.targets.items()}

    def loss(self, model: torch.nn.Module, batch: tuple, seeds: list[int], step: int) -> torch.Tensor:
        images, targets = batch
        flip = torch.tensor([torch.rand((), generator=torch.Generator().manual_seed(s)) < 0.5 for s in seeds])
        images = torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)
        logits = model(images)
        return sum(F.cross_entropy(logits[k], targets[k], ignore_index=-100) for k in self.vocab)

    def sample(self, model: torch.nn.Module) -> None:
        return None

    def save(self, model: torch.nn.Module, directory: Path) -> None:
        save_judge(model, directory)


def train_judge(cfg: JudgeTrainConfig) -> JudgeTrainResult:
    """Train on (1 - val_fraction) of the images, save RUN/model, and report held-out accuracy."""
    task = JudgeTask(cfg)
    if cfg.max_steps is None:  # an explicit --max-steps is what was asked for; config.yaml records either
        cfg.max_steps = max(1, cfg.epochs * len(task.train) // cfg.batch_size)
    result = run_training(cfg, task)
    if result.model_dir is None:  # interrupted: the same command resumes
        return JudgeTrainResult(cfg.out, {}, len(task.train), len(task.val), result.seconds)
    judge = load_judge(result.model_dir)
    accuracy = judge_accuracy(judge, task.images[task.val], {k: t[task.val] for k, t in task.targets.items()})
    atomic_write_json(result.model_dir / "accuracy.json", {"held_out": accuracy, "images": len(task.val)})
    return JudgeTrainResult(result.model_dir, accuracy, len(task.train), len(task.val), result.seconds)

