"""Adapters that turn eps, v and x0 networks into the one seam D(x, sigma, **cond) -> x0 (k-diffusion's external.py).

Notation (Karras et al. 2022): x = x0 + sigma * eps is the variance-exploding sample. A discrete DDPM
network sees the variance-preserving input x * c_in with c_in = 1 / sqrt(sigma^2 + 1) and its timestep t.
For v-prediction (Salimans & Ho 2022) v = alpha * eps - sigma_vp * x0, which gives
x0 = x * c_skip + v * c_out with c_skip = 1 / (sigma^2 + 1) and c_out = -sigma / sqrt(sigma^2 + 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from artdiff.core.schedules import cosine_sigma_to_t

Parameterization = Literal["eps", "v", "x0"]
Network = Callable[..., torch.Tensor]  # network(x_in, t, **cond) -> output (B, C or 2C, H, W)


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Add trailing singleton dimensions so a (B,) tensor broadcasts against (B, ...)."""
    return x.reshape(*x.shape, *([1] * (ndim - x.ndim)))


def x0_from_output(x: torch.Tensor, sigma: torch.Tensor, output: torch.Tensor,
                   parameterization: Parameterization) -> torch.Tensor:
    """The clean-sample prediction from a network's output, in variance-exploding coordinates."""
    sigma = append_dims(sigma, x.ndim)
    if parameterization == "eps":
        return x - sigma * output
    if parameterization == "v":
        return x / (sigma**2 + 1) - output * sigma / (sigma**2 + 1).sqrt()
    if parameterization == "x0":
        return output
    raise ValueError(f"unknown parameterization {parameterization!r}; use eps, v or x0")


class DiscreteDenoiser(torch.nn.Module):
    """A network trained on DDPM timesteps 0..T-1, seen as D(x, sigma, **cond) -> x0."""

    def __init__(self, network: Network, alphas_bar: torch.Tensor, *, parameterization: Parameterization = "eps",
                 learned_variance: bool = False) -> None:
        super().__init__()
        self.network = network
        self.parameterization = parameterization
        self.learned_variance = learned_variance  # the output carries 2C channels: mean part, then variance
        self.register_buffer("sigma_table", ((1 - alphas_bar) / alphas_bar).sqrt().to(torch.float64), False)

    @property
    def sigma_min(self) -> float:
        return float(self.sigma_table[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigma_table[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep of each sigma: the inverse of diffusers' linear interpolation of the table."""
        table = self.sigma_table
        s = sigma.to(torch.float64).clamp(table[0], table[-1])
        high = torch.searchsorted(table, s).clamp(1, len(table) - 1)
        low = high - 1
        weight = (s - table[low]) / (table[high] - table[low])
        return (low + weight).to(sigma.dtype)

    def raw(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x0, and with a learned variance the network's variance channels (in [-1, 1] after guided-diffusion)."""
        sigma = sigma.to(x.dtype) if sigma.ndim else sigma.to(x.dtype).expand(x.shape[0])
        c_in = append_dims(1 / (sigma.to(torch.float32) ** 2 + 1).sqrt(), x.ndim).to(x.dtype)
        output = self.network(x * c_in, self.sigma_to_t(sigma), **cond)
        variance = None
        if self.learned_variance:
            output, variance = output.chunk(2, dim=1)
        return x0_from_output(x, sigma, output, self.parameterization), variance

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        """D(x, sigma) -> x0."""
        return self.raw(x, sigma, **cond)[0]


class ContinuousCosineDenoiser(torch.nn.Module):
    """A v-diffusion network taking cosine time t in [0, 1] (alpha = cos(pi t/2)), seen as D(x, sigma) -> x0."""

    def __init__(self, network: Network, *, parameterization: Parameterization = "v") -> None:
        super().__init__()
        self.network = network
        self.parameterization = parameterization

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        """D(x, sigma) -> x0."""
        sigma = sigma.to(x.dtype) if sigma.ndim else sigma.to(x.dtype).expand(x.shape[0])
        c_in = append_dims(1 / (sigma**2 + 1).sqrt(), x.ndim)
        output = self.network(x * c_in, cosine_sigma_to_t(sigma), **cond)
        return x0_from_output(x, sigma, output, self.parameterization)
