"""Samplers as pure functions of (model_fn, x, sigmas, *, generator, callback) (after k-diffusion's sampling.py).

Notation (Karras et al. 2022): model_fn(x, sigma) -> denoised (x0); d = (x - denoised) / sigma is the
probability-flow ODE's dx/dsigma. `sigmas` descends and ends with 0; `x` starts as noise * sigmas[0].
Random draws come only from `generator`; a list of generators gives image i its own stream, drawn as
randn((1, C, H, W)) per image (diffusers' convention), so an image never depends on the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from artdiff.core.step_checks import checked_sampler

ModelFn = Callable[..., torch.Tensor]
Generator = torch.Generator | list[torch.Generator] | None


@dataclass(frozen=True)
class SamplerStep:
    """What a callback sees after each step."""

    index: int
    sigma: float
    x: torch.Tensor
    denoised: torch.Tensor


Callback = Callable[[SamplerStep], None] | None


def noise_like(x: torch.Tensor, generator: Generator) -> torch.Tensor:
    """Standard normal noise shaped like x, drawn per image when given one generator per image."""
    if isinstance(generator, list):
        if len(generator) != x.shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {x.shape[0]}")
        draws = [torch.randn((1, *x.shape[1:]), generator=g, device=g.device, dtype=x.dtype) for g in generator]
        return torch.cat(draws).to(x.device)
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _steps(sigmas: torch.Tensor, x: torch.Tensor) -> tuple[list[float], Callable[[int], torch.Tensor]]:
    """The sigmas as Python floats (one transfer; step coefficients then cost no tensor ops) and sigma i as (B,)."""
    values = sigmas.tolist()
    batch = sigmas.to(device=x.device, dtype=x.dtype)[:, None].expand(-1, x.shape[0])
    return values, batch.__getitem__


def _report(callback: Callback, i: int, sigma: float, x: torch.Tensor, denoised: torch.Tensor) -> None:
    if callback is not None:
        callback(SamplerStep(i, float(sigma), x, denoised))


# Every sampler goes through checked_sampler: sigmas are checked before the first step, each step's x after it
# (NaN, infinity or a runaway stops the run with NonFiniteError), all under inference_mode.
@checked_sampler
def sample_euler(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                 callback: Callback = None, extra: dict | None = None) -> torch.Tensor:
    """Euler steps on the probability-flow ODE (Karras et al. 2022, Algorithm 2 without churn)."""
    extra = extra or {}
    s, sigma_at = _steps(sigmas, x)
    for i in range(len(s) - 1):
        denoised = model_fn(x, sigma_at(i), **extra)
        # x + (x - denoised) / s_i * (s_next - s_i), as one fused update
        ratio = (s[i + 1] - s[i]) / s[i]
        x = torch.add(x, x - denoised, alpha=ratio)
        _report(callback, i, s[i], x, denoised)
    return x


def ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """Split a step to sigma_next into a deterministic part to sigma_down and fresh noise of size sigma_up."""
    sigma, sigma_next = float(sigma), float(sigma_next)
    if eta == 0 or sigma_next == 0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up


@checked_sampler
def sample_euler_ancestral(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                           callback: Callback = None, extra: dict | None = None, eta: float = 1.0) -> torch.Tensor:
    """Ancestral sampling with Euler steps (k-diffusion's sample_euler_ancestral)."""
    extra = extra or {}
    s, sigma_at = _steps(sigmas, x)
    for i in range(len(s) - 1):
        denoised = model_fn(x, sigma_at(i), **extra)
        sigma_down, sigma_up = ancestral_step(s[i], s[i + 1], eta)
        x = torch.add(x, x - denoised, alpha=(sigma_down - s[i]) / s[i])
        if s[i + 1] > 0:
            x = torch.add(x, noise_like(x, generator), alpha=sigma_up)
        _report(callback, i, s[i], x, denoised)
    return x


@checked_sampler
def sample_heun(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                callback: Callback = None, extra: dict | None = None) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 1); the last step to 0 is Euler."""
    extra = extra or {}
    s, sigma_at = _steps(sigmas, x)
    for i in range(len(s) - 1):
        denoised = model_fn(x, sigma_at(i), **extra)
        d = (x - denoised) / s[i]
        dt = s[i + 1] - s[i]
        if s[i + 1] == 0:
            x = torch.add(x, d, alpha=dt)  # Euler: d at sigma = 0 is undefined
        else:
            x_euler = torch.add(x, d, alpha=dt)
            denoised_next = model_fn(x_euler, sigma_at(i + 1), **extra)
            d_next = (x_euler - denoised_next) / s[i + 1]
            x = torch.add(x, d + d_next, alpha=dt / 2)
        _report(callback, i, s[i], x, denoised)
    return x


@checked_sampler
def sample_dpmpp_2m(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                    callback: Callback = None, extra: dict | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022), first order on the first step and the last step to 0."""
    extra = extra or {}
    s, sigma_at = _steps(sigmas, x)
    old_denoised, h_last = None, None
    for i in range(len(s) - 1):
        denoised = model_fn(x, sigma_at(i), **extra)
        sigma, sigma_next = s[i], s[i + 1]
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma) - math.log(sigma_next)  # lambda = -log(sigma)
            mixed = denoised
            if old_denoised is not None:
                r = h_last / h
                mixed = torch.add(denoised, denoised - old_denoised, alpha=1 / (2 * r))
            x = torch.add(x * (sigma_next / sigma), mixed, alpha=-math.expm1(-h))
            h_last = h
        old_denoised = denoised
        _report(callback, i, sigma, x, denoised)
    return x


@checked_sampler
def sample_ddim(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                callback: Callback = None, extra: dict | None = None, eta: float = 0.0) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) in variance-exploding form; eta = 0 is deterministic, 1 is DDPM-like."""
    extra = extra or {}
    s, sigma_at = _steps(sigmas, x)
    for i in range(len(s) - 1):
        denoised = model_fn(x, sigma_at(i), **extra)
        sigma, sigma_next = s[i], s[i + 1]
        # The VP posterior std of Song et al., moved to VE coordinates (divided by sqrt(a_prev)).
        a, a_next = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
        std = eta * math.sqrt(max(0.0, (1 - a_next) / (1 - a) * (1 - a / a_next)))
        sigma_up = std * math.sqrt(1 + sigma_next**2)
        sigma_down = math.sqrt(max(0.0, sigma_next**2 - sigma_up**2))
        # denoised + eps * sigma_down with eps = (x - denoised) / sigma
        x = torch.add(denoised, x - denoised, alpha=sigma_down / sigma)
        if eta > 0 and sigma_next > 0:
            x = torch.add(x, noise_like(x, generator), alpha=sigma_up)
        _report(callback, i, sigma, x, denoised)
    return x


@checked_sampler
def sample_plms(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                callback: Callback = None, extra: dict | None = None) -> torch.Tensor:
    """Pseudo linear multistep (Liu et al. 2022, PNDM): Adams-Bashforth on eps, warmed up by a Heun-like step."""
    extra = extra or {}
    s, sigma_at = _steps(sigmas, x)
    old_eps: list[torch.Tensor] = []
    for i in range(len(s) - 1):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = model_fn(x, sigma_at(i), **extra)
        eps = (x - denoised) / sigma
        if not old_eps and sigma_next > 0:
            x_next = torch.add(x, eps, alpha=sigma_next - sigma)
            eps_next = (x_next - model_fn(x_next, sigma_at(i + 1), **extra)) / sigma_next
            eps_prime = (eps + eps_next) / 2
        elif len(old_eps) == 1:
            eps_prime = (3 * eps - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            eps_prime = (23 * eps - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        elif len(old_eps) >= 3:
            eps_prime = (55 * eps - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        else:
            eps_prime = eps
        x = torch.add(x, eps_prime, alpha=sigma_next - sigma)
        old_eps = [*old_eps[-2:], eps]
        _report(callback, i, sigma, x, denoised)
    return x


@checked_sampler
def sample_ddpm(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                callback: Callback = None, extra: dict | None = None, variance: str = "fixed_small",
                variance_fn: ModelFn | None = None) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020) over the given sigmas, in variance-exploding form.

    variance: "fixed_small" (posterior beta-tilde), "fixed_large" (beta), or "learned" (Nichol & Dhariwal
    2021: `variance_fn(x, sigma)` returns (x0, v) with v in [-1, 1] interpolating their logs).
    """
    extra = extra or {}
    if variance not in ("fixed_small", "fixed_large", "learned"):
        raise ValueError(f"unknown variance {variance!r}; use fixed_small, fixed_large or learned")
    if variance == "learned" and variance_fn is None:
        raise ValueError("variance='learned' needs variance_fn returning (x0, v)")
    s, sigma_at = _steps(sigmas, x)
    for i in range(len(s) - 1):
        sigma, sigma_next = s[i], s[i + 1]
        if variance == "learned":
            denoised, v = variance_fn(x, sigma_at(i), **extra)
        else:
            denoised, v = model_fn(x, sigma_at(i), **extra), None
        a, a_next = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
        beta = 1 - a / a_next  # the beta of this (possibly strided) step
        # Posterior mean in VE coordinates: (beta / (1 - a)) x0 + (1 - beta) (1 - a_next) / (1 - a) x.
        x = torch.add(denoised * (beta / (1 - a)), x, alpha=(1 - beta) * (1 - a_next) / (1 - a))
        if sigma_next > 0:
            small = max((1 - a_next) / (1 - a) * beta, 1e-20)
            if variance == "fixed_small":
                std = math.sqrt(small)
            elif variance == "fixed_large":
                std = math.sqrt(beta)
            else:
                # beta and beta-tilde of this step: those of the respaced process when the sigmas skip timesteps.
                # std = exp(log_var / 2) with log_var = log small + (v + 1) / 2 (log beta - log small), evaluated
                # with the two logs as Python floats and in place in x's dtype: a float64 copy of the whole
                # (B, C, H, W) output made DDPM at batch 8 slower than diffusers (relative change 1.5e-7)
                log_beta, log_small = math.log(beta), math.log(small)
                std = v.to(x.dtype).add(1).mul_(0.25 * (log_beta - log_small)).exp_().mul_(math.exp(0.5 * log_small))
            x = x + noise_like(x, generator) * (std / math.sqrt(a_next))
        _report(callback, i, sigma, x, denoised)
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "euler_a": sample_euler_ancestral,
    "heun": sample_heun,
    "dpm++2m": sample_dpmpp_2m,
    "ddim": sample_ddim,
    "ddpm": sample_ddpm,
    "plms": sample_plms,
}
