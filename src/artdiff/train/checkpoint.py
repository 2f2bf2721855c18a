"""Run-folder checkpoints for exact resume: weights, EMA, optimizer, schedule, RNG and data position."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

CHECKPOINTS_DIR = "checkpoints"


@dataclass
class LoopState:
    """Where training stands: optimizer steps done, examples consumed, and the non-finite streak."""

    step: int = 0
    position: int = 0
    bad_steps: int = 0
    skipped_steps: int = 0


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Finished checkpoints, oldest first (a half-written one has no state.json and is ignored)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    found = [p for p in root.glob("step-*") if (p / "state.json").is_file()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(run_dir: Path, state: LoopState, *, model: torch.nn.Module, ema: dict[str, torch.Tensor] | None,
                    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                    keep: int, extra_tensors: dict[str, torch.Tensor] | None = None,
                    extra_state: dict | None = None) -> Path:
    """Write checkpoints/step-N atomically (a temp folder renamed into place) and keep the last `keep`.

    A trainer with state of its own (a data-order generator, its log) passes it as extra tensors and JSON data.
    """
    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".step-{state.step}.", dir=root))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        if ema is not None:
            save_file({k: v.contiguous().cpu() for k, v in ema.items()}, str(tmp / "ema.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        if extra_tensors:
            save_file({k: v.contiguous().cpu() for k, v in extra_tensors.items()}, str(tmp / "extra.safetensors"))
        (tmp / "state.json").write_text(json.dumps({**asdict(state), "scheduler": scheduler.state_dict(),
                                                    "extra": extra_state or {}}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(directory: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler) -> tuple[LoopState, dict[str, torch.Tensor] | None]:
    """Restore everything save_checkpoint wrote; pickled parts load with weights_only=True (no code runs)."""
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    data = json.loads((directory / "state.json").read_text())
    scheduler.load_state_dict(data.pop("scheduler"))
    data.pop("extra", None)
    torch.set_rng_state(load_file(str(directory / "rng.safetensors"))["torch"])
    ema_path = directory / "ema.safetensors"
    ema = load_file(str(ema_path)) if ema_path.is_file() else None
    return LoopState(**data), ema


def load_extra(directory: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The trainer's own tensors and JSON data that save_checkpoint stored beside the loop state."""
    path = directory / "extra.safetensors"
    tensors = load_file(str(path)) if path.is_file() else {}
    return tensors, json.loads((directory / "state.json").read_text()).get("extra", {})


def changed_options(previous: dict, current: dict, resumable: tuple[str, ...]) -> list[str]:
    """The options, other than `resumable` ones, whose values differ between a stopped run and its resumption."""
    return sorted(k for k in set(previous) | set(current) if k not in resumable and previous.get(k) != current.get(k))
