"""Train a joint text-image encoder from scratch on image-caption pairs with CLIP's or CLOOB's objective.

Notation (Radford et al. 2021 "CLIP"; Fürst et al. 2021 "CLOOB"): a batch of B pairs gives image
embeddings x (B, D) and caption embeddings y (B, D); CLIP learns its logit scale 1/tau (clamped at 100),
CLOOB keeps inv_tau fixed and contrasts Hopfield retrievals with InfoLOOB (core/contrastive.py).
Steps: 1. read captioned images, split off a validation share; 2. train a CLIP-format BPE tokenizer on the
training captions; 3. build the CLIP model from a preset; 4. AdamW with linear warmup and cosine decay,
CLOOB starting with plain InfoLOOB until `hopfield_start`, checkpointing to OUT.partial every
`checkpoint_every` steps and on Ctrl-C (the same command resumes exactly); 5. save a CLIP model folder
(weights, tokenizer, artdiff.json, train_config.yaml, train_log.jsonl) that `load_encoder` and transformers read.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from artdiff.config import load_yaml, save_yaml, to_dict
from artdiff.core.contrastive import clip_loss, cloob_loss, info_loob
from artdiff.data.manifest import read_manifest
from artdiff.errors import UserError
from artdiff.models import factory
from artdiff.models.encoders import ENCODER_KIND, JointEncoder, save_encoder
from artdiff.models.preprocessing import Preprocessing, preprocess
from artdiff.models.specs import CLIP_PRESETS, ClipSpec, build_clip_model
from artdiff.models.tokenizer import build_tokenizer
from artdiff.train.checkpoint import LoopState, changed_options, resume, save_checkpoint
from artdiff.train.encoder_config import (  # noqa: F401 - the options live there, for a fast --help
    CLIP_LOGIT_SCALE_MAX,
    DEFAULT_LR,
    LOSSES,
    EncoderTrainConfig,
    renamed_options,
)
from artdiff.train.encoder_resume import (
    RESUMABLE_CHANGES,
    EpochBatches,
    data_fingerprint,
    open_run,
    partial_dir,
    run_tokenizer,
)
from artdiff.train.interrupt import StopFlag
from artdiff.utils.images import ImageReadError, read_rgb
from artdiff.utils.io import write_jsonl
from artdiff.utils.progress import ProgressBar

LOG_NAME = "train_log.jsonl"
CONFIG_NAME = "train_config.yaml"


@dataclass
class EncoderTrainResult:
    """The trained encoder's folder and how training went."""

    out: Path
    loss: str
    steps: int
    first_loss: float  # mean over the first logging interval
    final_loss: float  # mean over the last logging interval
    val_loss: float | None  # mean over full validation batches; None without a validation split
    train_pairs: int
    val_pairs: int
    skipped: dict[str, int]  # records not used, by reason
    vocab_size: int
    seconds: float
    log: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C or SIGTERM; the checkpoint in OUT.partial resumes it

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON data (the log stays in train_log.jsonl)."""
        data = to_dict(self)
        data.pop("log")
        return {**data, "seconds": round(self.seconds, 2)}


@dataclass
class Pairs:
    """Captioned images as uint8 tensors at the encoder's input size, and their captions."""

    images: Tensor  # (N, 3, S, S) uint8, resized and cropped by the preprocessing contract
    captions: list[str]
    skipped: dict[str, int]


def load_pairs(data: Path, prep: Preprocessing) -> Pairs:
    """Read a dataset's captioned images once; records without caption or with unreadable images are skipped."""
    # Resize and crop once, normalise per batch: identical to the contract for images already at its size,
    # within half a grey level (uint8 storage) for the others.
    geometry = replace(prep, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    side = prep.output_size
    images, captions, skipped = [], [], {"no caption": 0, "unreadable image": 0}
    for record in read_manifest(data):
        caption = str(record.get("caption") or "").strip()
        if not caption:
            skipped["no caption"] += 1
            continue
        try:
            array = np.asarray(read_rgb(Path(data) / record["image"]).image)  # (H, W, 3) uint8; never opens a FIFO
        except (OSError, KeyError, ImageReadError):
            skipped["unreadable image"] += 1
            continue
        pixels = torch.from_numpy(array.copy()).permute(2, 0, 1)[None]  # (1, 3, H, W)
        if array.shape[:2] != (side, side) or prep.crop_size is not None:  # else the contract keeps it as is
            pixels = preprocess(pixels.float() / 255, geometry).mul(255).round().to(torch.uint8)
        images.append(pixels)
        captions.append(caption)
    if len(captions) < 2:
        raise UserError(f"{data} has {len(captions)} captioned image(s); an encoder needs image-caption pairs "
                        "(manifest 'caption'), for instance from `artdiff synth` or `artdiff prepare`")
    return Pairs(torch.cat(images), captions, {k: v for k, v in skipped.items() if v})


def lr_factor(step: int, *, steps: int, warmup: int) -> float:
    """Linear warmup to 1, then cosine decay to 0 (Loshchilov & Hutter 2017), as in CLIP's recipe."""
    if step < warmup:
        return (step + 1) / warmup
    progress_ = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))


def make_optimizer(model: torch.nn.Module, cfg: EncoderTrainConfig) -> torch.optim.AdamW:
    """AdamW with decay on weight matrices only: CLIP exempts gains, biases and the temperature."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    # beta2 = 0.98 and eps = 1e-6 are CLIP's choices for transformers trained with large contrastive batches.
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def contrastive_loss(encoder: JointEncoder, model: torch.nn.Module, images: Tensor, captions: list[str],
                     cfg: EncoderTrainConfig, *, step: int | None = None) -> Tensor:
    """Embed a batch (uint8 images at the input size) through the inference path and return the loss.

    `step` (training only) selects CLOOB's alignment phase before `hopfield_start`; without it, the full loss.
    """
    image_emb = encoder.embed_images(images.float() / 255)  # (B, D) unit vectors, the contract applied
    text_emb = encoder.embed_text(captions)  # (B, D) unit vectors
    if cfg.loss == "clip":
        return clip_loss(image_emb, text_emb, model.logit_scale.exp())
    if step is not None and step < cfg.hopfield_start:
        return (info_loob(image_emb, text_emb, cfg.inv_tau) + info_loob(text_emb, image_emb, cfg.inv_tau)) / 2
    return cloob_loss(image_emb, text_emb, cfg.inv_tau, cfg.hopfield_beta)


def train_encoder(cfg: EncoderTrainConfig) -> EncoderTrainResult:
    """Train an encoder on the dataset's image-caption pairs and save it to cfg.out (replaced atomically)."""
    started = time.perf_counter()
    _check_out(cfg.out)
    if cfg.warmup_warning():
        print(cfg.warmup_warning(), file=sys.stderr)
    spec = cfg.spec or CLIP_PRESETS[cfg.preset]
    prep = Preprocessing(size=spec.vision.image_size)  # CLIP's contract at the model's input size
    pairs = load_pairs(cfg.data, prep)
    generator = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(pairs.captions), generator=generator)
    n_val = int(len(order) * cfg.val_fraction)
    val, train = order[:n_val], order[n_val:]
    if len(train) < cfg.batch_size:
        raise UserError(f"--batch-size {cfg.batch_size} exceeds the {len(train)} training pairs of {cfg.data}; "
                        "lower --batch-size or --val-fraction")
    fingerprint = data_fingerprint(pairs.images, pairs.captions)
    _check_finished(cfg, fingerprint)
    partial = partial_dir(cfg.out)
    open_run(partial, to_dict(cfg), fingerprint)
    tok_dir = run_tokenizer(partial, lambda folder: build_tokenizer(
        [pairs.captions[i] for i in train.tolist()], folder, vocab_size=cfg.vocab_size, max_length=spec.text.max_length))
    tokenizer = factory.load_clip_tokenizer(tok_dir)
    torch.manual_seed(cfg.seed)
    model = _build_model(spec, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, cfg)
    encoder = JointEncoder.from_clip_model(model, tokenizer, preprocessing=prep, name=str(cfg.out))
    log, steps, interrupted = _optimise(encoder, model, pairs, train, cfg, generator, partial)
    result = EncoderTrainResult(
        out=cfg.out, loss=cfg.loss, steps=steps,
        first_loss=log[0]["loss"] if log else math.nan, final_loss=log[-1]["loss"] if log else math.nan,
        val_loss=None, train_pairs=len(train), val_pairs=len(val), skipped=pairs.skipped,
        vocab_size=len(tokenizer), seconds=time.perf_counter() - started, log=log, interrupted=interrupted)
    if interrupted:
        return result
    result.val_loss = _validation_loss(encoder, model, pairs, val, cfg)
    # A plain mkdir beside the output (not mkdtemp's private 0700 folder): the rename keeps its permissions.
    staging = cfg.out.with_name(f".{cfg.out.name}.tmp-{os.getpid()}-{time.time_ns()}")
    staging.mkdir(parents=True)
    try:
        recipe = {"objective": cfg.loss, "preset": None if cfg.spec else cfg.preset, "spec": spec.to_dict(),
                  "train_config": to_dict(cfg), "val_loss": result.val_loss,
                  "data_fingerprint": fingerprint}
        with _no_shard_bars():
            save_encoder(model.eval(), staging, tokenizer_dir=tok_dir, preprocessing=prep, info=recipe)
        save_yaml(cfg, staging / CONFIG_NAME)
        write_jsonl(staging / LOG_NAME, log)
        _replace_dir(staging, cfg.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(partial, ignore_errors=True)  # the run is complete: its checkpoints are no longer needed
    result.seconds = time.perf_counter() - started
    return result


def _build_model(spec: ClipSpec, vocab_size: int, bos: int, eos: int, cfg: EncoderTrainConfig) -> Any:
    model = build_clip_model(spec, vocab_size=vocab_size, bos_token_id=bos, eos_token_id=eos)
    with torch.no_grad():
        # CLOOB's temperature is fixed; storing it in logit_scale keeps the saved CLIPModel's logits meaningful.
        model.logit_scale.fill_(math.log(cfg.logit_scale if cfg.loss == "clip" else cfg.inv_tau))
    model.logit_scale.requires_grad_(cfg.loss == "clip")
    return model.train()


def _optimise(encoder: JointEncoder, model: Any, pairs: Pairs, train: Tensor, cfg: EncoderTrainConfig,
              generator: torch.Generator, partial: Path) -> tuple[list[dict[str, float]], int, bool]:
    """Run the steps from the last checkpoint in `partial`; return one log line per `log_every` steps (mean
    loss over the interval), the steps done, and whether Ctrl-C or SIGTERM stopped it (after checkpointing)."""
    optimizer = make_optimizer(model, cfg)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps=cfg.max_steps, warmup=cfg.warmup_steps))
    batches = EpochBatches(train, cfg.batch_size, generator)
    state, log, window, earlier = LoopState(), [], [], 0.0
    resumed = resume(partial, model=model, optimizer=optimizer, scheduler=schedule,
                     fresh_start=f"delete {partial} to start over")
    if resumed is not None:
        state, tensors, extra = resumed.state, resumed.extra_tensors, resumed.extra_state
        generator.set_state(tensors["generator"])
        batches.load_state(tensors["shuffled"], extra["start"])
        log, window, earlier = extra["log"], extra["window"], extra["seconds"]
    started, stop = time.perf_counter() - earlier, StopFlag()
    steps = range(state.step, cfg.max_steps)
    with stop.installed(), ProgressBar(total=len(steps), desc=f"encoder ({cfg.loss})", unit="step",
                                       enabled=cfg.progress) as bar:
        for step in steps:
            batch = batches.next()
            images = pairs.images[batch]
            flip = torch.rand(len(batch), generator=generator) < 0.5  # mirror: captions never say left or right
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            loss = contrastive_loss(encoder, model, images, [pairs.captions[i] for i in batch.tolist()], cfg,
                                    step=step)
            if not torch.isfinite(loss):
                raise UserError(f"the {cfg.loss} loss became {loss.item()} at step {step}; lower --lr "
                                f"(now {cfg.lr:g}) or raise --warmup-steps; the last checkpoint is in {partial}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if cfg.loss == "clip":
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(CLIP_LOGIT_SCALE_MAX))
            window.append(loss.item())
            state.step = step + 1
            bar.update()
            bar.status(loss=window[-1])
            if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
                log.append({"step": state.step, "loss": sum(window) / len(window),
                            "lr": optimizer.param_groups[0]["lr"], "logit_scale": model.logit_scale.exp().item(),
                            "seconds": round(time.perf_counter() - started, 2)})
                window = []
            if (state.step % cfg.checkpoint_every == 0 or stop.requested) and state.step < cfg.max_steps:
                shuffled, start = batches.state()
                save_checkpoint(partial, state, model=model, ema=None, optimizer=optimizer, scheduler=schedule,
                                keep=2, extra_tensors={"generator": generator.get_state(), "shuffled": shuffled},
                                extra_state={"start": start, "log": log, "window": window,
                                             "seconds": time.perf_counter() - started})
            if stop.requested and state.step < cfg.max_steps:
                return log, state.step, True
    return log, state.step, False


@torch.no_grad()
def _validation_loss(encoder: JointEncoder, model: Any, pairs: Pairs, val: Tensor,
                     cfg: EncoderTrainConfig) -> float | None:
    """Mean loss over full validation batches (a contrastive loss depends on the batch size)."""
    model.eval()
    losses = [contrastive_loss(encoder, model, pairs.images[chunk], [pairs.captions[i] for i in chunk.tolist()],
                               cfg).item()
              for chunk in val.split(cfg.batch_size) if len(chunk) == min(cfg.batch_size, len(val)) >= 2]
    return sum(losses) / len(losses) if losses else None


@contextlib.contextmanager
def _no_shard_bars() -> Iterator[None]:
    """Hide transformers' "Writing model shards" bar: one file of a small model is not progress to report."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _is_encoder_dir(path: Path) -> bool:
    return (factory.read_json(path / "artdiff.json") or {}).get("kind") == ENCODER_KIND


def _check_out(out: Path) -> None:
    """Refuse, before any work, an output that is a file or a non-empty folder holding something else."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_encoder_dir(out):
        raise UserError(f"output {out} is not empty and holds no artdiff encoder; choose a new or empty folder "
                        "(nothing was written)")


def _check_finished(cfg: EncoderTrainConfig, fingerprint: dict) -> None:
    """Refuse to replace a finished encoder made with other options or data (as a resumed run is refused)."""
    if not _is_encoder_dir(cfg.out) or not (cfg.out / CONFIG_NAME).is_file():
        return
    saved = renamed_options(load_yaml(cfg.out / CONFIG_NAME))
    changed = changed_options(saved, to_dict(cfg), RESUMABLE_CHANGES)
    differences = [f"options ({', '.join(changed)})"] if changed else []
    recorded = (factory.read_json(cfg.out / "artdiff.json") or {}).get("data_fingerprint")
    if recorded is not None and recorded != fingerprint:
        differences.append("data")
    if differences:
        raise UserError(f"{cfg.out} holds an encoder trained with different {' and '.join(differences)}; use a "
                        f"new --out, or delete {cfg.out} to retrain it (nothing was written)")


def _replace_dir(staging: Path, out: Path) -> None:
    """Move the finished folder into place; an earlier encoder there is replaced only once this one is whole."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
