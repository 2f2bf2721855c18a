"""Adapters that turn eps, v and x0 networks into the one seam D(x, sigma, **cond) -> x0 (k-diffusion's external.py).

Notation (Karras et al. 2022): x = x0 + sigma * eps is the variance-exploding sample. A discrete DDPM
network sees the variance-preserving input x * c_in with c_in = 1 / sqrt(sigma^2 + 1) and its timestep t.
For v-prediction (Salimans & Ho 2022) v = alpha * eps - sigma_vp * x0, which gives
x0 = x * c_skip + v * c_out with c_skip = 1 / (sigma^2 + 1) and c_out = -sigma / sqrt(sigma^2 + 1).
"""

from __future__ import annotations

import bisect
import math
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
        return torch.addcmul(x, sigma, output, value=-1)  # x - sigma * output in one fused op
    if parameterization == "v":
        return x / (sigma**2 + 1) - output * sigma / (sigma**2 + 1).sqrt()
    if parameterization == "x0":
        return output
    raise ValueError(f"unknown parameterization {parameterization!r}; use eps, v or x0")


def _batch_sigma(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sigma as a (B,) tensor in x's dtype (a scalar is broadcast over the batch)."""
    sigma = sigma if sigma.dtype == x.dtype else sigma.to(x.dtype)
    return sigma if sigma.ndim else sigma.expand(x.shape[0])


def _c_in(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """1 / sqrt(sigma^2 + 1) shaped to broadcast against x; squared in float32 so half precision cannot overflow."""
    wide = sigma if sigma.dtype in (torch.float32, torch.float64) else sigma.float()
    return append_dims(wide.square().add_(1).rsqrt_().to(x.dtype), x.ndim)


class DiscreteDenoiser(torch.nn.Module):
    """A network trained on DDPM timesteps 0..T-1, seen as D(x, sigma, **cond) -> x0."""

    def __init__(self, network: Network, alphas_bar: torch.Tensor, *, parameterization: Parameterization = "eps",
                 learned_variance: bool = False) -> None:
        super().__init__()
        self.network = network
        self.parameterization = parameterization
        self.learned_variance = learned_variance  # the output carries 2C channels: mean part, then variance
        table = ((1 - alphas_bar) / alphas_bar).sqrt().to(torch.float64)
        self.register_buffer("sigma_table", table, False)
        # The inner boundaries and each interval's width: sigma_to_t is then one search that lands directly on
        # the interval (no shift or clamp) and one division, the fewest tensor ops per sampler step.
        self.register_buffer("_inner_bounds", table[1:-1].contiguous(), False)
        self.register_buffer("_interval_width", table[1:] - table[:-1], False)
        self._bounds_list, self._table_list = table[1:-1].tolist(), table.tolist()  # for _scalings on the CPU
        self._exact: dict[torch.dtype, dict[float, int] | None] = {}  # per sigma dtype, see _exact_timesteps

    @property
    def sigma_min(self) -> float:
        return float(self.sigma_table[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigma_table[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep of each sigma: the inverse of diffusers' linear interpolation of the table."""
        s = sigma.to(torch.float64)
        low = torch.searchsorted(self._inner_bounds, s)  # interval k holds (table[k], table[k+1]]; 0 and n-2 at the ends
        weight = ((s - self.sigma_table[low]) / self._interval_width[low]).clamp_(0, 1)
        t = low + weight
        if self._exact_timesteps(sigma.dtype) is not None:  # a table entry rounded to sigma's dtype is its integer t
            rounded = self.sigma_table.to(sigma.dtype)
            k = torch.searchsorted(rounded, sigma.contiguous()).clamp_(max=len(rounded) - 1)
            t = torch.where(rounded[k] == sigma, k.to(t.dtype), t)
        return t.to(sigma.dtype)

    def _exact_timesteps(self, dtype: torch.dtype) -> dict[float, int] | None:
        """Each table sigma rounded to `dtype`, mapped to its timestep; None where rounding merges two of them.

        Samplers hand the network sigma in the sample's dtype (float32), which no longer equals the float64 table
        entry, so interpolation would give t = 999.99998 where DDPM, DDIM and respaced sampling mean t = 1000
        exactly (improved-diffusion feeds integer timesteps). A sigma equal to a rounded entry maps to that entry.
        """
        if dtype not in self._exact:
            rounded = self.sigma_table.to(dtype).tolist()
            distinct = all(a < b for a, b in zip(rounded, rounded[1:]))  # half precision merges neighbours
            self._exact[dtype] = {value: k for k, value in enumerate(rounded)} if distinct else None
        return self._exact[dtype]

    def raw(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x0, and with a learned variance the network's variance channels (in [-1, 1] after guided-diffusion)."""
        sigma = _batch_sigma(sigma, x)
        c_in, t = self._scalings(sigma, x)
        output = self.network(x * c_in, t, **cond)
        variance = None
        if self.learned_variance:
            output, variance = output.chunk(2, dim=1)
        return x0_from_output(x, sigma, output, self.parameterization), variance

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        """D(x, sigma) -> x0."""
        return self.raw(x, sigma, **cond)[0]

    def _scalings(self, sigma: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """c_in shaped against x, and the timesteps, for a (B,) sigma.

        A sampler's step on the CPU reads its few sigmas as Python floats and builds both results directly:
        two tensor constructions instead of a dozen small ops, the loop's largest cost per step. t is the
        same float64 interpolation as sigma_to_t; c_in is computed in float64 and rounded once.
        """
        if sigma.device.type != "cpu" or sigma.numel() > 64:  # a GPU would wait; many values: the loop costs more
            return _c_in(sigma, x), self.sigma_to_t(sigma)
        values = sigma.tolist()
        exact = self._exact_timesteps(sigma.dtype) or {}
        t, c_in = [], []
        for value in values:
            if value in exact:
                t.append(float(exact[value]))
            else:
                low = bisect.bisect_left(self._bounds_list, value)  # torch.searchsorted's left side
                start, end = self._table_list[low], self._table_list[low + 1]
                t.append(low + min(1.0, max(0.0, (value - start) / (end - start))))
            c_in.append(1 / math.sqrt(value * value + 1))
        shape = (len(values),) + (1,) * (x.ndim - 1)
        return torch.tensor(c_in, dtype=x.dtype).reshape(shape), torch.tensor(t, dtype=sigma.dtype)


def clamp_denoised(model_fn: Callable[..., torch.Tensor | tuple], low: float = -1.0,
                   high: float = 1.0) -> Callable[..., torch.Tensor | tuple]:
    """model_fn with its x0 clamped to [low, high] (improved-diffusion's clip_denoised); an (x0, v) pair keeps v."""

    def clamped(x: torch.Tensor, sigma: torch.Tensor, **cond):
        output = model_fn(x, sigma, **cond)
        if isinstance(output, tuple):  # DiscreteDenoiser.raw: (x0, variance channels)
            return (output[0].clamp(low, high), *output[1:])
        return output.clamp(low, high)

    return clamped


class ContinuousCosineDenoiser(torch.nn.Module):
    """A v-diffusion network taking cosine time t in [0, 1] (alpha = cos(pi t/2)), seen as D(x, sigma) -> x0."""

    def __init__(self, network: Network, *, parameterization: Parameterization = "v") -> None:
        super().__init__()
        self.network = network
        self.parameterization = parameterization

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        """D(x, sigma) -> x0."""
        sigma = _batch_sigma(sigma, x)
        output = self.network(x * _c_in(sigma, x), cosine_sigma_to_t(sigma), **cond)
        return x0_from_output(x, sigma, output, self.parameterization)
