"""Run-folder checkpoints for exact resume: weights, EMA, optimizer, schedule, RNG and data position."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from artdiff.errors import UserError, first_line

CHECKPOINTS_DIR = "checkpoints"
_STEP_NAME = re.compile(r"step-(\d+)")


@dataclass
class LoopState:
    """Where training stands: optimizer steps done, examples consumed, and the non-finite streak."""

    step: int = 0
    position: int = 0
    bad_steps: int = 0
    skipped_steps: int = 0


@dataclass
class Resumed:
    """What a checkpoint restored besides the model, optimizer and schedule."""

    directory: Path
    state: LoopState
    ema: dict[str, torch.Tensor] | None
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    extra_state: dict = field(default_factory=dict)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Finished checkpoints, oldest first (a half-written one has no state.json and is ignored)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    found = [p for p in root.iterdir() if _STEP_NAME.fullmatch(p.name) and (p / "state.json").is_file()] \
        if root.is_dir() else []
    return sorted(found, key=_step_of)


def _step_of(path: Path) -> int:
    return int(path.name.split("-")[1])


def save_checkpoint(run_dir: Path, state: LoopState, *, model: torch.nn.Module, ema: dict[str, torch.Tensor] | None,
                    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                    keep: int, extra_tensors: dict[str, torch.Tensor] | None = None,
                    extra_state: dict | None = None) -> Path:
    """Write checkpoints/step-N atomically (a temp folder renamed into place) and keep the last `keep`.

    A trainer with state of its own (a data-order generator, its log) passes it as extra tensors and JSON data.
    A full disk is one line naming the folder; the earlier checkpoints stay as they were.
    """
    root = Path(run_dir) / CHECKPOINTS_DIR
    final = root / f"step-{state.step}"
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".step-{state.step}.", dir=root))
        _write(tmp, state, model=model, ema=ema, optimizer=optimizer, scheduler=scheduler,
               extra_tensors=extra_tensors, extra_state=extra_state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except Exception as error:
        if not _disk_full(error):
            raise
        last = checkpoint_dirs(run_dir)
        raise UserError(f"no space left on the device holding {root} while writing checkpoint step-{state.step}: "
                        "free some disk space and run the same command again (it resumes from "
                        f"{last[-1].name if last else 'the start'})") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    found = checkpoint_dirs(run_dir)
    # Checkpoints past this step were skipped as damaged when the run resumed from an earlier one.
    newer = [p for p in found if _step_of(p) > state.step]
    for old in newer + [p for p in found if p not in newer][:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write(tmp: Path, state: LoopState, *, model: torch.nn.Module, ema: dict[str, torch.Tensor] | None,
           optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
           extra_tensors: dict[str, torch.Tensor] | None, extra_state: dict | None) -> None:
    """Write every part of one checkpoint into the folder `tmp` (state.json last: it marks the folder whole)."""
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    if ema is not None:
        save_file({k: v.contiguous().cpu() for k, v in ema.items()}, str(tmp / "ema.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    if extra_tensors:
        save_file({k: v.contiguous().cpu() for k, v in extra_tensors.items()}, str(tmp / "extra.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**asdict(state), "scheduler": scheduler.state_dict(),
                                                "extra": extra_state or {}}))


def _disk_full(error: BaseException | None) -> bool:
    """Whether an error (or one it came from) is ENOSPC; safetensors and torch report it in their own types."""
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if any(mark in str(error) for mark in ("No space left", "os error 28", "code: 28")):
            return True
        error = error.__cause__ or error.__context__
    return False


class DamagedCheckpoint(Exception):
    """A checkpoint folder whose files cannot be read back (truncated, emptied or replaced)."""


def resume(run_dir: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
           scheduler: torch.optim.lr_scheduler.LRScheduler, fresh_start: str) -> Resumed | None:
    """Restore the newest intact checkpoint, saying on stderr which damaged ones it skipped; None when none exist.

    `fresh_start` tells the user how to start over when every checkpoint is damaged.
    """
    found = checkpoint_dirs(run_dir)
    skipped = []
    for directory in reversed(found):
        try:
            resumed = _restore(directory, model=model, optimizer=optimizer, scheduler=scheduler)
        except DamagedCheckpoint as error:
            skipped.append(f"{directory.name} ({error})")
            print(f"artdiff: skipped damaged checkpoint {directory} ({error}); trying an earlier one",
                  file=sys.stderr)
            continue
        if skipped:
            print(f"artdiff: resuming from {directory.name} (skipped {', '.join(s.split(' ')[0] for s in skipped)})",
                  file=sys.stderr)
        return resumed
    if skipped:
        raise UserError(f"every checkpoint in {Path(run_dir) / CHECKPOINTS_DIR} is damaged ({'; '.join(skipped)}); "
                        f"{fresh_start}")
    return None


def _restore(directory: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler) -> Resumed:
    """Read every file first (so a damaged one changes nothing), then load them into the objects."""
    weights = _read(directory / "model.safetensors", load_file)
    ema_path = directory / "ema.safetensors"
    ema = _read(ema_path, load_file) if ema_path.exists() else None
    optim = _read(directory / "optimizer.pt", lambda p: torch.load(p, weights_only=True))
    data = _read(directory / "state.json", lambda p: json.loads(Path(p).read_text(encoding="utf-8")))
    rng = _read(directory / "rng.safetensors", load_file)
    extra_path = directory / "extra.safetensors"
    extra = _read(extra_path, load_file) if extra_path.exists() else {}
    try:
        state = LoopState(**{k: int(data[k]) for k in ("step", "position", "bad_steps", "skipped_steps")})
        schedule, extra_state = data["scheduler"], data.get("extra") or {}
        model.load_state_dict(weights)
        optimizer.load_state_dict(optim)
        scheduler.load_state_dict(schedule)
        torch.set_rng_state(rng["torch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise DamagedCheckpoint(f"its contents do not fit this run: {first_line(error, limit=120)}") from None
    return Resumed(directory, state, ema, extra, extra_state)


def _read(path: Path, reader):
    """One file of a checkpoint, or DamagedCheckpoint naming it."""
    try:
        return reader(str(path))
    except Exception as error:  # noqa: BLE001 - safetensors, torch and json each raise their own types
        raise DamagedCheckpoint(f"{path.name}: {first_line(error, limit=120) or type(error).__name__}") from None


def changed_options(previous: dict, current: dict, resumable: tuple[str, ...]) -> list[str]:
    """The options, other than `resumable` ones, whose values differ between a stopped run and its resumption."""
    return sorted(k for k in set(previous) | set(current) if k not in resumable and previous.get(k) != current.get(k))
