"""The one training loop every method shares (the only user of accelerate).

A method supplies a TrainTask: its model, how to load a batch of examples, its loss, and optionally
fixed-seed samples and how to save the finished model. The loop owns the rest: data order,
accumulation, clipping, EMA, mixed precision, checkpoints with exact resume, Ctrl-C, NaN guard,
sample grids and logs. Randomness is derived from (seed, step, example position), never from the
process layout, so 2 processes give the result of 1 at the same global batch.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

from artdiff.config import load_yaml, to_dict
from artdiff.core.ema import EMA, ema_decay
from artdiff.errors import UserError
from artdiff.train.checkpoint import LoopState, changed_options, checkpoint_dirs, resume, save_checkpoint
from artdiff.train.interrupt import StopFlag
from artdiff.train.loop_config import RESUMABLE_CHANGES, LoopConfig
from artdiff.train.sample_grid import save_grid
from artdiff.utils.io import atomic_write_text
from artdiff.utils.progress import ProgressBar


class TrainTask(Protocol):
    """What a training method gives the loop."""

    model: torch.nn.Module

    def trainable(self) -> list[torch.nn.Parameter]: ...  # the parameters to optimise
    def dataset_size(self) -> int: ...
    def batch(self, indices: list[int]) -> Any: ...  # examples at these dataset indices
    def loss(self, model: torch.nn.Module, batch: Any, seeds: list[int], step: int) -> torch.Tensor: ...  # seed per example
    def sample(self, model: torch.nn.Module) -> torch.Tensor | None: ...  # fixed-seed images (N, 3, H, W) in [0, 1]
    def save(self, model: torch.nn.Module, directory: Path) -> None: ...  # write the model directory
    # Optional: `log_extra() -> dict[str, float]`, more scalars for log.jsonl and the tracker at each log step.
    # Optional: `task_state() -> dict[str, Tensor]` and `load_task_state(tensors)`, the method's own state (e.g. a
    # timestep sampler's loss history), written into every checkpoint and restored on resume for exact resumption.


@dataclass
class LoopResult:
    """How a run ended and where its outputs are."""

    run_dir: Path
    model_dir: Path | None
    steps: int
    interrupted: bool = False
    skipped_steps: int = 0
    final_loss: float = float("nan")
    seconds: float = 0.0
    samples: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"run_dir": str(self.run_dir), "model_dir": str(self.model_dir) if self.model_dir else None,
                "steps": self.steps, "interrupted": self.interrupted, "skipped_steps": self.skipped_steps,
                "final_loss": self.final_loss, "seconds": round(self.seconds, 2),
                "samples": [str(p) for p in self.samples]}


def example_seeds(seed: int, step: int, start: int, count: int) -> list[int]:
    """One seed per example of a step, from its position in the global batch (so sharding cannot change it)."""
    return [(seed * 1_000_003 + step * 65_537 + start + i) % 2**63 for i in range(count)]


def data_order(seed: int, size: int, position: int, count: int) -> list[int]:
    """Dataset indices for examples [position, position + count): a fresh permutation each epoch."""
    indices: list[int] = []
    while len(indices) < count:
        epoch, offset = divmod(position + len(indices), size)
        indices.extend(_epoch_order(seed, size, epoch)[offset: offset + count - len(indices)])
    return indices


@functools.lru_cache(maxsize=2)
def _epoch_order(seed: int, size: int, epoch: int) -> tuple[int, ...]:
    """One epoch's permutation, drawn once instead of at every step (a step may span two epochs)."""
    return tuple(torch.randperm(size, generator=torch.Generator().manual_seed(seed * 7919 + epoch)).tolist())


def _precision(requested: str) -> str:
    """fp16 autocast only on GPU; bf16 also on CPU, where oneDNN runs bf16 convolutions about 1.7x faster."""
    if torch.cuda.is_available() or requested == "bf16":
        return requested
    return "no"


def _launched_processes() -> int:
    """How many processes the launcher (torchrun, accelerate launch, MPI) started, from its environment."""
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def run_training(cfg: LoopConfig, task: TrainTask) -> LoopResult:
    """Train `task` under `cfg` (a method's config extends LoopConfig), resuming from the last checkpoint."""
    started = time.perf_counter()
    _check_tracker(cfg.report_to)
    # Accelerate keeps its settings in process-wide singletons; a second run in one process (quickstart trains
    # a bf16 VAE, then an fp32 LDM) must start from fresh ones. The process group (PartialState) is kept.
    AcceleratorState._reset_state()
    GradientState._reset_state()
    launched = _launched_processes()
    # Accelerate forms a CPU process group only when told cpu=True; without it every torchrun process on a
    # machine without CUDA would think itself the only one and train (and save) a whole copy of the run.
    accelerator = Accelerator(mixed_precision=_precision(cfg.mixed_precision),
                              log_with=None if cfg.report_to == "none" else cfg.report_to,
                              project_dir=str(cfg.out), cpu=launched > 1 and not torch.cuda.is_available())
    world, rank = accelerator.num_processes, accelerator.process_index
    if world != launched:
        raise UserError(f"this process was launched as one of {launched} (WORLD_SIZE) but Accelerate formed a group "
                        f"of {world}; launch with `accelerate launch --num_processes {launched}` or torchrun on a "
                        "machine whose devices Accelerate supports")
    micro = cfg.batch_size // cfg.grad_accum
    if micro % world:
        raise UserError(f"--batch-size {cfg.batch_size} / --grad-accum {cfg.grad_accum} must split evenly over "
                        f"{world} processes")
    if accelerator.is_main_process:
        _check_run_dir(cfg)
        if cfg.warmup_warning():
            print(cfg.warmup_warning(), file=sys.stderr)
    accelerator.wait_for_everyone()
    if cfg.gradient_checkpointing and hasattr(task.model, "enable_gradient_checkpointing"):
        task.model.enable_gradient_checkpointing()
    params = task.trainable()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cfg.lr_factor(step))  # a method may override it
    model, optimizer = accelerator.prepare(task.model, optimizer)
    state, ema = LoopState(), EMA(params) if cfg.ema_decay > 0 else None
    resumed = resume(cfg.out, model=accelerator.unwrap_model(model), optimizer=optimizer, scheduler=scheduler,
                     fresh_start=f"delete {cfg.out / 'checkpoints'} to start over")
    if resumed is not None:
        state = resumed.state
        if ema is not None and resumed.ema is not None:
            ema.load_state_dict(resumed.ema)
        if hasattr(task, "load_task_state"):
            task.load_task_state(resumed.extra_tensors)
    if cfg.report_to != "none":
        accelerator.init_trackers("artdiff", config={k: str(v) for k, v in to_dict(cfg).items()})

    stop = StopFlag()
    result = LoopResult(run_dir=cfg.out, model_dir=None, steps=state.step)
    log_path = cfg.out / "log.jsonl"
    bar = ProgressBar(total=cfg.max_steps - state.step, desc="train", unit="step",
                      enabled=cfg.progress and accelerator.is_main_process)  # steps/s, and the loss beside it
    with stop.installed(), bar, open(log_path, "a", encoding="utf-8") if accelerator.is_main_process else \
            contextlib.nullcontext() as log:
        for _ in range(state.step, cfg.max_steps):
            loss = _one_step(cfg, task, model, optimizer, accelerator, state, micro, world, rank)
            bar.update()
            bar.status(loss=loss)
            if math.isfinite(loss):
                scheduler.step()
                state.bad_steps = 0
                if ema is not None:
                    ema.update(params, ema_decay(state.step + 1, decay=cfg.ema_decay, warmup=cfg.ema_warmup))
                result.final_loss = loss
            else:
                state.bad_steps += 1
                state.skipped_steps += 1
            state.step += 1
            state.position += cfg.batch_size
            if state.bad_steps >= cfg.nan_patience:
                last = checkpoint_dirs(cfg.out)
                raise UserError(f"training diverged: {state.bad_steps} non-finite steps in a row at step {state.step}; "
                                f"last good checkpoint: {last[-1] if last else 'none'}; try a lower --lr")
            if log is not None and (state.step % cfg.log_every == 0 or state.step == cfg.max_steps):
                extra = task.log_extra() if hasattr(task, "log_extra") else {}  # a method's own scalars
                record = {"step": state.step, "loss": loss, "lr": scheduler.get_last_lr()[0], **extra}
                log.write(json.dumps(record) + "\n")
                log.flush()
                accelerator.log({"loss": loss, "lr": record["lr"], **extra}, step=state.step)
            due = state.step % cfg.checkpoint_every == 0 or stop.requested or state.step == cfg.max_steps
            if due and state.bad_steps == 0:  # never rotate a good checkpoint out during a non-finite streak
                _save(cfg, accelerator, state, model, ema, optimizer, scheduler, task)
            if cfg.sample_every and state.step % cfg.sample_every == 0 and accelerator.is_main_process:
                result.samples += _samples(cfg, task, accelerator.unwrap_model(model), params, ema, state.step)
            if stop.requested:
                result.interrupted = True
                break
    result.steps, result.skipped_steps = state.step, state.skipped_steps
    if not result.interrupted and accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        with _ema_weights(params, ema):  # the model first: nothing a preview does can cost the finished run
            result.model_dir = cfg.out / "model"
            task.save(unwrapped, result.model_dir)
        if not cfg.sample_every or state.step % cfg.sample_every:
            result.samples += _samples(cfg, task, unwrapped, params, ema, state.step)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    result.seconds = time.perf_counter() - started
    return result


def _one_step(cfg: LoopConfig, task: TrainTask, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              accelerator: Accelerator, state: LoopState, micro: int, world: int, rank: int) -> float:
    """Accumulate gradients over the micro-batches of one global batch, clip, and step; return the mean loss."""
    indices = data_order(cfg.seed, task.dataset_size(), state.position, cfg.batch_size)
    seeds = example_seeds(cfg.seed, state.step, 0, cfg.batch_size)
    share = micro // world
    total = torch.zeros((), device=accelerator.device)
    for m in range(cfg.grad_accum):
        start = m * micro + rank * share
        sync = contextlib.nullcontext() if m == cfg.grad_accum - 1 else accelerator.no_sync(model)
        with sync, accelerator.autocast():
            batch = _to_device(task.batch(indices[start:start + share]), accelerator.device)
            loss = task.loss(model, batch, seeds[start:start + share], state.step)
            accelerator.backward(loss / cfg.grad_accum)
        total += loss.detach() / cfg.grad_accum
    mean_loss = float(accelerator.reduce(total, reduction="mean"))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    finite = math.isfinite(mean_loss) and _gradients_finite(params)
    if finite:
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return mean_loss if finite else float("nan")


def _gradients_finite(params: list[torch.nn.Parameter]) -> bool:
    """Whether every gradient is finite, read with one synchronisation: a NaN or inf makes the total norm non-finite.

    Asking each parameter's `isfinite(...).all()` synchronised once per tensor, 80 ms of a 64 px pixel model's step.
    """
    grads = [p.grad for p in params if p.grad is not None]
    return not grads or math.isfinite(float(torch.nn.utils.get_total_norm(grads)))


def _check_tracker(report_to: str) -> None:
    """A clear error when the chosen tracker's package is not installed."""
    import importlib.util

    package = {"tensorboard": "tensorboard", "wandb": "wandb"}.get(report_to)
    if package and importlib.util.find_spec(package) is None:
        raise UserError(f"--report-to {report_to} needs the {package} package: pip install {package}")


def _to_device(batch: Any, device: torch.device) -> Any:
    """Move a batch (tensors, possibly in dicts, lists or tuples) to the training device."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _check_run_dir(cfg: LoopConfig) -> None:
    """Write config.yaml, or check that the run folder holds this same run before resuming it."""
    if cfg.out.exists() and not cfg.out.is_dir():
        raise UserError(f"--out {cfg.out} is a file; choose a folder for the run")
    try:
        cfg.out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"--out {cfg.out}: a part of the path is a file; choose a folder for the run") from None
    path = cfg.out / "config.yaml"
    current = to_dict(cfg)
    if path.is_file() and checkpoint_dirs(cfg.out):
        previous = load_yaml(path)
        changed = changed_options(previous, current, RESUMABLE_CHANGES)
        if changed:
            raise UserError(f"{cfg.out} holds a run with other options ({', '.join(changed)}); use a new --out "
                            "to start afresh, or the same options to resume")
    atomic_write_text(path, yaml.safe_dump(current, sort_keys=False))


def _save(cfg: LoopConfig, accelerator: Accelerator, state: LoopState, model: torch.nn.Module, ema: EMA | None,
          optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, task: TrainTask) -> None:
    extra = task.task_state() if hasattr(task, "task_state") else None  # on every process: it may settle state
    if accelerator.is_main_process:
        save_checkpoint(cfg.out, state, model=accelerator.unwrap_model(model),
                        ema=ema.state_dict() if ema is not None else None, optimizer=optimizer, scheduler=scheduler,
                        keep=cfg.keep_checkpoints, extra_tensors=extra)
    accelerator.wait_for_everyone()


def _samples(cfg: LoopConfig, task: TrainTask, model: torch.nn.Module, params: list, ema: EMA | None,
             step: int) -> list[Path]:
    """A fixed-seed grid from the EMA weights, so grids at different steps are comparable.

    A preview that cannot be made (its sampling turned non-finite, or it would not fit in memory) is skipped
    with one line: it is a view of the run, and training goes on.
    """
    was_training = model.training
    try:
        with _ema_weights(params, ema), torch.no_grad():
            model.eval()
            images = task.sample(model)
    except UserError as error:
        print(f"warning: sample grid of step {step} skipped: {error}", file=sys.stderr)
        return []
    finally:
        model.train(was_training)
    if images is None:
        return []
    return [save_grid(images, cfg.out / "samples" / f"step-{step:06d}.png")]


@contextlib.contextmanager
def _ema_weights(params: list[torch.nn.Parameter], ema: EMA | None):
    """Swap the EMA weights in for the block, then put the trained ones back."""
    if ema is None:
        yield
        return
    saved = [p.detach().clone() for p in params]
    ema.copy_to(params)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
