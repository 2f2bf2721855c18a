"""Checks every sampler runs through: well-formed sigmas before the first step, a finite sample after each one."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch

from artdiff.errors import NonFiniteError

# A sample whose largest value passes EXPLODED * (1 + sigma_max) has left any distribution the model knows:
# latents are O(1) and a noisy sample O(sigma), while a runaway guidance scale (1e30) stays finite for a few
# steps before it turns into infinities. 1e4 leaves room for any real guidance scale.
EXPLODED = 1e4


def check_sigmas(sigmas: torch.Tensor) -> None:
    """Refuse sigmas a sampler would divide by zero on: 1-D, finite, descending, positive until a final 0."""
    if sigmas.ndim != 1 or len(sigmas) < 1:
        raise ValueError(f"sigmas must be a 1-D tensor of at least one value, got shape {tuple(sigmas.shape)}")
    values = sigmas.tolist()
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"sigmas must be finite and non-negative, got {values}")
    if any(v == 0 for v in values[:-1]):  # a step from sigma = 0 has no direction (d = (x - x0) / 0)
        raise ValueError(f"sigmas may reach 0 only at the end, got {values}")
    if any(b > a for a, b in zip(values, values[1:])):
        raise ValueError(f"sigmas must descend, got {values}")


class FiniteWatch:
    """A sampler callback that stops the run at the first step whose x is NaN, infinite or exploding.

    One max-reduction per step. On an accelerator the flag of step i is read at step i + 1, when the queue
    already holds the next step's work, so the check never stalls the device.
    """

    def __init__(self, callback: Callable[[Any], None] | None, sigmas: list[float]) -> None:
        self.callback = callback
        self.steps = len(sigmas) - 1
        self.limit = EXPLODED * (1 + max(sigmas))
        self.pending: tuple[int, float, torch.Tensor] | None = None

    def __call__(self, step: Any) -> None:
        peak = step.x.detach().abs().amax()  # NaN propagates through amax, so one value answers both questions
        if peak.device.type == "cpu":
            self._verify(step.index, step.sigma, peak)
        else:
            self.flush()
            self.pending = (step.index, step.sigma, peak)
        if self.callback is not None:
            self.callback(step)

    def flush(self) -> None:
        """Verify the step whose flag has not been read yet."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self._verify(*pending)

    def _verify(self, index: int, sigma: float, peak: torch.Tensor) -> None:
        if not float(peak) <= self.limit:  # also true for NaN
            raise NonFiniteError(f"sampling, at step {index + 1} of {self.steps} (sigma {sigma:.4g}),")


def checked_sampler(sampler: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run `sampler` under inference_mode on checked sigmas, with every step's sample checked by a FiniteWatch."""

    @functools.wraps(sampler)
    def run(model_fn: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor, *,
            callback: Callable[[Any], None] | None = None, **kwargs: Any) -> torch.Tensor:
        check_sigmas(sigmas)
        watch = FiniteWatch(callback, sigmas.tolist())
        # inference_mode: less per-op bookkeeping than no_grad; gradient guidance re-enables autograd inside itself
        with torch.inference_mode():
            x = sampler(model_fn, x, sigmas, callback=watch, **kwargs)
        watch.flush()
        return x

    return run
