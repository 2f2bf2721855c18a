"""Respaced diffusion (Nichol & Dhariwal 2021, improved-diffusion's respace.py): kept timesteps and their tables.

Notation: T training timesteps with cumulative alphas abar_t; a respacing keeps K of them, timestep_map[k]
(ascending). The respaced process is itself a DDPM with betas_k = 1 - abar_k / abar_{k-1} (abar_{-1} = 1),
so its posterior q(x_{k-1} | x_k, x0) and learned-range variance follow from those K values alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

FORMS = ("'ddimN' (DDIM's integer stride, e.g. ddim50), 'N' (N evenly spread steps, e.g. 250) or comma-separated "
         "step counts for equal sections of the schedule (e.g. 10,10,10)")


def space_timesteps(num_timesteps: int, spacing: str | Sequence[int]) -> list[int]:
    """The kept timesteps, ascending, for improved-diffusion's `timestep_respacing` syntax ("ddimN", "N", "a,b,c")."""
    if isinstance(spacing, str):
        text = spacing.strip()
        if text.startswith("ddim"):
            return _ddim_timesteps(num_timesteps, text)
        counts = _section_counts(text, spacing)
    else:
        counts = [int(c) for c in spacing]
        if any(c < 0 for c in counts) or not counts:
            raise ValueError(f"respacing {list(spacing)}: section counts must be whole numbers >= 0; use {FORMS}")
    kept = _sections(num_timesteps, counts, spacing)
    if not kept:
        raise ValueError(f"respacing {spacing!r} keeps no timestep; use {FORMS}")
    return kept


def _section_counts(text: str, spacing: str) -> list[int]:
    """The comma-separated counts of "N" or "a,b,c"; anything else is one line naming the accepted forms."""
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and part.isascii() for part in parts):
        raise ValueError(f"respacing {spacing!r} is not understood; use {FORMS}")
    return [int(part) for part in parts]


def _ddim_timesteps(num_timesteps: int, text: str) -> list[int]:
    """range(0, T, stride) for the smallest integer stride giving exactly N steps, as improved-diffusion does."""
    digits = text[len("ddim"):]
    if not (digits.isdigit() and digits.isascii()):
        raise ValueError(f"respacing {text!r} is not understood; use {FORMS}")
    wanted = int(digits)
    # improved-diffusion tries strides 1 .. T-1 in order, so the first (smallest) stride that fits wins.
    counts = {}
    for stride in range(1, num_timesteps):
        counts.setdefault(len(range(0, num_timesteps, stride)), stride)
    if wanted in counts:
        return list(range(0, num_timesteps, counts[wanted]))
    below = [c for c in counts if c < wanted]
    above = [c for c in counts if c > wanted]
    nearest = [f"ddim{c}" for c in ([max(below)] if below else []) + ([min(above)] if above else [])]
    hint = f"the nearest that can {'are' if len(nearest) > 1 else 'is'} {' and '.join(nearest)}" if nearest else \
        "none can"
    raise ValueError(f"respacing {text!r}: no integer stride gives exactly {wanted} of {num_timesteps} timesteps "
                     f"({hint}); or use '{wanted}' for {wanted} evenly spread steps")


def _sections(num_timesteps: int, counts: list[int], spacing: object) -> list[int]:
    """Split 0..T-1 into len(counts) near-equal sections and stride each with rounded fractional steps."""
    size_per, extra = divmod(num_timesteps, len(counts))
    start, kept = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)  # the first T mod n sections are one longer
        if count > size:
            where = f"section {i + 1} of {len(counts)} covers" if len(counts) > 1 else "the schedule has"
            raise ValueError(f"respacing {spacing!r}: {where} {size} timesteps and cannot hold {count} steps; "
                             f"use at most {size}{' there' if len(counts) > 1 else ''}")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):
            # Python's round (half to even) on an accumulated float: the original's exact indices.
            kept.append(start + round(position))
            position += stride
        start += size
    return sorted(set(kept))


@dataclass(frozen=True)
class RespacedDiffusion:
    """The tables of a DDPM restricted to kept timesteps (improved-diffusion's SpacedDiffusion), all (K,) float64."""

    timestep_map: torch.Tensor  # (K,) long: the original timestep the network sees at respaced index k
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor  # abar_{k-1}, with 1 before the first kept step
    betas: torch.Tensor
    posterior_variance: torch.Tensor  # beta-tilde_k = beta_k (1 - abar_{k-1}) / (1 - abar_k); 0 at k = 0
    posterior_log_variance_clipped: torch.Tensor  # log beta-tilde, its k = 0 entry replaced by that of k = 1
    posterior_mean_coef1: torch.Tensor  # of x0 in the posterior mean (variance-preserving coordinates)
    posterior_mean_coef2: torch.Tensor  # of x_k

    @property
    def sigmas(self) -> torch.Tensor:
        """Variance-exploding sigma of each kept step, ascending: sqrt((1 - abar) / abar)."""
        return ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()

    def learned_range_log_variance(self, index: int, v: torch.Tensor) -> torch.Tensor:
        """log sigma^2 of the network's variance channels v in [-1, 1] at respaced index `index`."""
        return learned_range_log_variance(v, float(self.betas[index].log()),
                                          float(self.posterior_log_variance_clipped[index]))


def respaced_diffusion(alphas_cumprod: torch.Tensor, timesteps: Sequence[int]) -> RespacedDiffusion:
    """The respaced process of the full schedule's alphas_cumprod at the kept `timesteps` (any order, no repeats)."""
    kept = sorted(int(t) for t in timesteps)
    full = alphas_cumprod.to(torch.float64)
    if not kept or len(set(kept)) != len(kept) or kept[0] < 0 or kept[-1] >= len(full):
        raise ValueError(f"kept timesteps must be distinct and within 0..{len(full) - 1}, got {kept[:8]}...")
    timestep_map = torch.tensor(kept, dtype=torch.long)
    abar = full[timestep_map]
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    betas = 1 - abar / abar_prev
    variance = betas * (1 - abar_prev) / (1 - abar)
    # The posterior variance is 0 at k = 0 (x0 is then known exactly); improved-diffusion clips its log with the
    # k = 1 value. A single kept step has no k = 1: beta_0 stands in (no sampler adds noise after the last step).
    first = variance[1] if len(kept) > 1 else betas[0]
    log_variance = torch.cat([first.reshape(1), variance[1:]]).log()
    return RespacedDiffusion(
        timestep_map=timestep_map, alphas_cumprod=abar, alphas_cumprod_prev=abar_prev, betas=betas,
        posterior_variance=variance, posterior_log_variance_clipped=log_variance,
        posterior_mean_coef1=betas * abar_prev.sqrt() / (1 - abar),
        posterior_mean_coef2=(1 - abar_prev) * (1 - betas).sqrt() / (1 - abar))


def learned_range_log_variance(v: torch.Tensor, log_beta: float | torch.Tensor,
                               log_variance_clipped: float | torch.Tensor) -> torch.Tensor:
    """Interpolate log beta and log beta-tilde by (v + 1) / 2 (Nichol & Dhariwal 2021, eq. 15), in float64."""
    frac = (v.to(torch.float64) + 1) / 2  # float64: the logs of small betas differ in their last float32 digits
    return frac * log_beta + (1 - frac) * log_variance_clipped

