"""Training timestep samplers: uniform, and the loss-second-moment importance sampler of Nichol & Dhariwal (2021).

Each example draws its timestep from its own generator (the loop's per-example seed), so the draws do not depend
on the batch's split over processes or micro-batches. The importance sampler's loss history is updated with a
step's losses only when the next step begins (or a checkpoint is written), in seed order, so accumulation does
not change the draws and a resumed run continues exactly.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

SamplerName = Literal["uniform", "loss-second-moment"]


class UniformSampler:
    """t ~ U{0, ..., T-1}, importance weight 1."""

    def __init__(self, num_timesteps: int) -> None:
        self.num_timesteps = num_timesteps

    def probabilities(self) -> Tensor:
        """p_t for every t (float64, sums to 1)."""
        return torch.full((self.num_timesteps,), 1.0 / self.num_timesteps, dtype=torch.float64)

    def draw(self, generator: torch.Generator) -> tuple[int, float]:
        """One timestep and its importance weight 1 / (T p_t)."""
        return int(torch.randint(0, self.num_timesteps, (), generator=generator)), 1.0

    def record(self, seeds: list[int], timesteps: list[int], losses: list[float]) -> None:
        """Uniform sampling learns nothing from the losses."""

    def begin_step(self) -> None:
        """Nothing is pending."""

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Nothing to restore."""


class LossSecondMomentSampler(UniformSampler):
    """p_t proportional to sqrt(E[L_t^2]) over the last `history` losses at t, mixed with uniform (improved-diffusion).

    Uniform until every t has `history` losses; then weights w_t = sqrt(mean(L_t^2)), normalised, scaled by
    (1 - uniform_prob) and added to uniform_prob / T, so no timestep's probability reaches 0.
    """

    def __init__(self, num_timesteps: int, *, history: int = 10, uniform_prob: float = 0.001) -> None:
        super().__init__(num_timesteps)
        self.history, self.uniform_prob = history, uniform_prob
        self.losses = torch.zeros((num_timesteps, history), dtype=torch.float64)  # oldest first
        self.counts = torch.zeros((num_timesteps,), dtype=torch.int64)
        self._pending: list[tuple[int, int, float]] = []  # (seed, t, loss) of the step in progress
        self._cdf: Tensor | None = None

    def warmed_up(self) -> bool:
        return bool((self.counts == self.history).all())

    def probabilities(self) -> Tensor:
        weights = self.losses.pow(2).mean(dim=1).sqrt()
        if not self.warmed_up() or not weights.sum() > 0:  # all-zero losses say nothing: stay uniform
            return super().probabilities()
        weights = weights / weights.sum()
        return weights * (1 - self.uniform_prob) + self.uniform_prob / self.num_timesteps

    def draw(self, generator: torch.Generator) -> tuple[int, float]:
        if not self.warmed_up():
            return super().draw(generator)
        if self._cdf is None:
            self._cdf = torch.cumsum(self.probabilities(), dim=0)
        u = torch.rand((), generator=generator, dtype=torch.float64) * self._cdf[-1]
        t = min(int(torch.searchsorted(self._cdf, u, right=True)), self.num_timesteps - 1)
        p = float(self._cdf[t] - (self._cdf[t - 1] if t else 0.0))
        return t, 1.0 / (self.num_timesteps * p)

    def record(self, seeds: list[int], timesteps: list[int], losses: list[float]) -> None:
        """Keep this step's (unweighted) losses until the next step begins; non-finite ones are dropped."""
        self._pending += [(s, t, v) for s, t, v in zip(seeds, timesteps, losses, strict=True) if math.isfinite(v)]

    def begin_step(self) -> None:
        """Fold the finished step's losses into the history, in seed order (independent of the process layout)."""
        if not self._pending:
            return
        for _, t, loss in sorted(self._pending):
            if self.counts[t] == self.history:
                self.losses[t, :-1] = self.losses[t, 1:].clone()
                self.losses[t, -1] = loss
            else:
                self.losses[t, self.counts[t]] = loss
                self.counts[t] += 1
        self._pending = []
        self._cdf = None

    def state_dict(self) -> dict[str, Tensor]:
        self.begin_step()  # a checkpoint is written between steps: the finished step's losses belong in it
        return {"timestep_sampler.losses": self.losses.clone(), "timestep_sampler.counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        losses, counts = state.get("timestep_sampler.losses"), state.get("timestep_sampler.counts")
        if losses is None or counts is None:
            return  # a checkpoint from before the history was kept: start warming up again
        if losses.shape != self.losses.shape or counts.shape != self.counts.shape:
            raise ValueError(f"the checkpoint's loss history has shape {tuple(losses.shape)}, this run needs "
                             f"{tuple(self.losses.shape)}")
        self.losses, self.counts = losses.to(torch.float64).clone(), counts.to(torch.int64).clone()
        self._pending, self._cdf = [], None


def make_timestep_sampler(name: SamplerName, num_timesteps: int) -> UniformSampler:
    """The sampler called `name` (the --timestep-sampler choices)."""
    if name == "uniform":
        return UniformSampler(num_timesteps)
    if name == "loss-second-moment":
        return LossSecondMomentSampler(num_timesteps)
    raise ValueError(f"unknown timestep sampler {name!r}; use uniform or loss-second-moment")
