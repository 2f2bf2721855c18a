"""Noise schedules: DDPM betas, diffusers' timestep spacings, v-diffusion's cosine, Karras and exponential sigmas.

Everything is expressed in the variance-exploding form of Karras et al. (2022): a noisy sample is
x = x0 + sigma * eps, and a DDPM timestep t with cumulative alpha a_t has sigma = sqrt((1 - a_t) / a_t).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

BetaSchedule = Literal["linear", "scaled_linear", "squaredcos_cap_v2"]
Spacing = Literal["leading", "trailing", "linspace"]


def ddpm_betas(kind: BetaSchedule = "scaled_linear", *, num_train_timesteps: int = 1000,
               beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """Training betas (float64) as diffusers builds them (Ho et al. 2020; Nichol & Dhariwal 2021 for the cosine).

    Every beta must lie in (0, 1): beta = 0 makes sigma 0 at t = 0 and beta >= 1 a negative or zero alpha, and
    either turns every sample into NaN (a scheduler config with beta_end 5 did).
    """
    if not (num_train_timesteps >= 1 and float(num_train_timesteps).is_integer()):  # also NaN
        raise ValueError(f"num_train_timesteps must be a positive integer, got {num_train_timesteps!r}")
    num_train_timesteps = int(num_train_timesteps)
    if kind in ("linear", "scaled_linear") and not (0 < beta_start < 1 and 0 < beta_end < 1):  # also NaN
        raise ValueError(f"beta_start and beta_end must lie in (0, 1), got {beta_start!r} and {beta_end!r}")
    if kind == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    elif kind == "scaled_linear":  # Stable Diffusion: linear in sqrt(beta)
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    elif kind == "squaredcos_cap_v2":
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        n = num_train_timesteps
        betas = torch.tensor([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)],
                             dtype=torch.float64)
    else:
        raise ValueError(f"unknown beta schedule {kind!r}; use linear, scaled_linear or squaredcos_cap_v2")
    if not ((betas > 0) & (betas < 1)).all():
        raise ValueError(f"betas must lie in (0, 1); the {kind} schedule gave {float(betas.min()):g} to "
                         f"{float(betas.max()):g}")
    return betas


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """Cumulative product of (1 - beta)."""
    return torch.cumprod(1.0 - betas.to(torch.float64), dim=0)


def sigmas_from_alphas_cumprod(alphas_bar: torch.Tensor) -> torch.Tensor:
    """sigma_t = sqrt((1 - a_t) / a_t) for every training timestep."""
    alphas_bar = alphas_bar.to(torch.float64)
    return ((1 - alphas_bar) / alphas_bar).sqrt()


def discrete_timesteps(num_steps: int, *, num_train_timesteps: int = 1000, spacing: Spacing = "leading",
                       steps_offset: int = 0, round_linspace: bool = False) -> torch.Tensor:
    """Descending sampling timesteps with diffusers' spacings (Lin et al. 2023, table 2).

    `round_linspace` rounds the linspace spacing to integers, as DDIMScheduler does; EulerDiscreteScheduler
    keeps it fractional.
    """
    if num_steps < 1 or num_steps > num_train_timesteps:
        raise ValueError(f"steps must be between 1 and {num_train_timesteps}, got {num_steps}")
    n, T = num_steps, num_train_timesteps
    if spacing == "leading":
        t = torch.arange(n, dtype=torch.float64) * (T // n) + steps_offset
    elif spacing == "trailing":
        t = torch.arange(T, 0, -T / n, dtype=torch.float64).round().flip(0) - 1
    elif spacing == "linspace":
        t = torch.linspace(0, T - 1, n, dtype=torch.float64)
        t = t.round() if round_linspace else t.to(torch.float32).to(torch.float64)  # diffusers: float32
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; use leading, trailing or linspace")
    return t.flip(0)


def dpm_solver_timesteps(num_steps: int, *, num_train_timesteps: int = 1000, spacing: Spacing = "leading",
                         steps_offset: int = 0) -> torch.Tensor:
    """Descending timesteps as DPMSolverMultistepScheduler spaces them (n + 1 points, the last dropped)."""
    n, T = num_steps, num_train_timesteps
    if n < 1 or n > T:
        raise ValueError(f"steps must be between 1 and {T}, got {n}")
    if spacing == "leading":
        t = (torch.arange(n + 1, dtype=torch.float64) * (T // (n + 1))).round().flip(0)[:-1] + steps_offset
    elif spacing == "trailing":
        t = torch.arange(T, 0, -T / n, dtype=torch.float64).round() - 1
    elif spacing == "linspace":
        t = torch.linspace(0, T - 1, n + 1, dtype=torch.float64).round().flip(0)[:-1]
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; use leading, trailing or linspace")
    return t


def sigmas_at(timesteps: torch.Tensor, sigma_table: torch.Tensor) -> torch.Tensor:
    """Sigma at (possibly fractional) timesteps, interpolating the table linearly, as diffusers does."""
    # On the table's device: a denoiser moved to CUDA keeps its table there, while timesteps are made on the CPU.
    t = timesteps.to(sigma_table.device, torch.float64).clamp(0, len(sigma_table) - 1)
    low = t.floor().long().clamp(max=len(sigma_table) - 2)
    weight = t - low
    return sigma_table[low] * (1 - weight) + sigma_table[low + 1] * weight


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    """Append the final sigma = 0 (the clean sample)."""
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def karras_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Construct the noise schedule of Karras et al. (2022), eq. 5, ending with 0."""
    ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return append_zero((max_inv + ramp * (min_inv - max_inv)) ** rho)


def exponential_sigmas(num_steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Sigmas evenly spaced in log space, ending with 0."""
    return append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), num_steps,
                                      dtype=torch.float64).exp())


# ---- continuous cosine schedule (v-diffusion, Crowson 2021) ------------------------------------------

def cosine_alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha = cos(pi t / 2), sigma = sin(pi t / 2) for t in [0, 1]."""
    return torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)


def cosine_t_to_sigma(t: torch.Tensor) -> torch.Tensor:
    """Variance-exploding sigma of cosine time t: sigma/alpha = tan(pi t / 2)."""
    return torch.tan(t * math.pi / 2)


def cosine_sigma_to_t(sigma: torch.Tensor) -> torch.Tensor:
    """Inverse of cosine_t_to_sigma."""
    return torch.atan(sigma) * 2 / math.pi


def cosine_sigmas(num_steps: int, *, t_max: float = 1.0, t_min: float = 0.0) -> torch.Tensor:
    """Sigmas of evenly spaced cosine times from t_max to t_min (v-diffusion's sampling grid), ending with 0."""
    t = torch.linspace(t_max, t_min, num_steps + 1, dtype=torch.float64)
    sigmas = cosine_t_to_sigma(t)
    sigmas[0] = min(float(sigmas[0]), 1e4)  # t = 1 is infinite noise; cap it
    return sigmas if t_min == 0.0 else append_zero(sigmas)
