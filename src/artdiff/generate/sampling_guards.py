"""Checks around a sampling call: numbers and steps where they enter, conditions before, images after."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from artdiff.errors import NonFiniteError, UserError

MAX_CONTINUOUS_STEPS = 10000  # a continuous schedule has no timestep count; past this, more steps change nothing
UNUSUAL_SCALE = 100.0  # a guidance scale above this is named as the likely cause of a runaway sample


def check_steps(steps: int, train_timesteps: int | None) -> None:
    """One line for a step count the schedule cannot give: discrete schedules have train_timesteps of them."""
    limit = train_timesteps if train_timesteps is not None else MAX_CONTINUOUS_STEPS
    if not isinstance(steps, numbers.Integral) or not 1 <= steps <= limit:
        what = f"this model's schedule has {limit} training timesteps" if train_timesteps is not None else \
            f"this model's continuous schedule is sampled with at most {limit} steps"
        raise UserError(f"--steps {steps}: {what}; use --steps between 1 and {limit}")


def check_finite(**numbers: float) -> None:
    """Refuse NaN or infinite sampling options (a NaN guidance scale would silently give black images)."""
    for name, value in numbers.items():
        if not math.isfinite(float(value)):
            flag = "--" + name.replace("_scale", "").replace("_", "-")
            raise UserError(f"{flag} {value}: must be a finite number")


def scale_hints(cfg_scale: float, weights: Sequence[float] = ()) -> list[str]:
    """The caller's numbers that are large enough to make a sample run away, as likely causes."""
    hints = [f"the guidance scale {cfg_scale:g} (--cfg)"] if abs(cfg_scale) > UNUSUAL_SCALE else []
    if any(abs(w) > UNUSUAL_SCALE for w in weights):
        hints.append(f"prompt weights up to {max(abs(w) for w in weights):g}")
    return hints


def check_conditions(conditions: dict[str, torch.Tensor], hints: Sequence[str]) -> None:
    """Stop before sampling when a condition is already NaN or infinite (a bad embedding file, a weight of 1e308)."""
    for name, tensor in conditions.items():
        if not bool(torch.isfinite(tensor).all()):
            raise NonFiniteError(f"the conditioning of {name}", [*hints, "prompt weights", "an embedding file",
                                                                 "the text or image encoder's weights"])


def check_images(images: torch.Tensor, hints: Sequence[str]) -> torch.Tensor:
    """Return decoded images, or stop when the VAE made NaN of finite latents (they would be saved black)."""
    if not bool(torch.isfinite(images).all()):
        raise NonFiniteError("decoding the latents with the VAE", [*hints, "the VAE's weights (a half-precision VAE "
                                                                   "can overflow: decode in float32)"])
    return images
