"""Train the judge on a labelled image set (the procedural art set): one cross-entropy head per label kind."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from artdiff.config import option, save_yaml
from artdiff.data.labelled import load_labelled
from artdiff.evaluate.judge_eval import judge_accuracy
from artdiff.models.judge import Judge, JudgeSpec, save_judge
from artdiff.utils.progress import progress


@dataclass
class JudgeTrainConfig:
    """How the judge is trained."""

    data: Path = option(Path("synth"), "labelled dataset (manifest records with 'labels'), e.g. from artdiff synth",
                        cli=False)
    out: Path = option(Path("judge"), "folder to write the judge to")
    image_size: int = option(32, "judge input size (32 px keeps style, palette and ground apart; 4x cheaper than 64)")
    epochs: int = option(10, "passes over the training images")
    batch_size: int = option(128, "images per step")
    lr: float = option(3e-3, "peak learning rate (AdamW, cosine decay after a short warmup)")
    weight_decay: float = option(0.05, "AdamW weight decay")
    val_fraction: float = option(0.1, "share of images held out to measure accuracy")
    seed: int = option(0, "seed of the split, initialisation and batch order")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        self.data, self.out = Path(self.data), Path(self.out)
        if not 0 < self.val_fraction < 1:
            raise ValueError("--val-fraction must be between 0 and 1")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("--epochs and --batch-size must be at least 1")


@dataclass
class JudgeTrainResult:
    """The trained judge and its held-out accuracy per label kind."""

    out: Path
    accuracy: dict[str, float]
    train_images: int
    val_images: int
    seconds: float


def train_judge(cfg: JudgeTrainConfig) -> JudgeTrainResult:
    """Train on (1 - val_fraction) of the images, report held-out accuracy, save the judge."""
    started = time.perf_counter()
    images, vocab, targets = load_labelled(cfg.data, cfg.image_size)
    generator = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(images), generator=generator)
    n_val = max(1, int(len(images) * cfg.val_fraction))
    val, train = order[:n_val], order[n_val:]
    torch.manual_seed(cfg.seed)
    judge = Judge(JudgeSpec(labels=vocab, image_size=cfg.image_size))
    optimizer = torch.optim.AdamW(judge.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * max(1, len(train) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    judge.train()
    for _ in progress(range(steps), total=steps, desc="judge", enabled=cfg.progress):
        batch = train[torch.randint(len(train), (cfg.batch_size,), generator=generator)]
        x = images[batch].float() / 255
        flip = torch.rand(len(batch), generator=generator) < 0.5  # mirror: no label depends on left/right
        x[flip] = x[flip].flip(-1)
        logits = judge(x)
        loss = sum(F.cross_entropy(logits[k], targets[k][batch], ignore_index=-100) for k in vocab)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    judge.eval()
    accuracy = judge_accuracy(judge, images[val], {k: t[val] for k, t in targets.items()})
    save_judge(judge, cfg.out)
    save_yaml(cfg, cfg.out / "train_config.yaml")
    return JudgeTrainResult(cfg.out, accuracy, len(train), len(val), time.perf_counter() - started)
