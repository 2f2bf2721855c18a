"""Samplers as pure functions of (model_fn, x, sigmas, *, generator, callback) (after k-diffusion's sampling.py).

Notation (Karras et al. 2022): model_fn(x, sigma) -> denoised (x0); d = (x - denoised) / sigma is the
probability-flow ODE's dx/dsigma. `sigmas` descends and ends with 0; `x` starts as noise * sigmas[0].
Random draws come only from `generator`; a list of generators gives image i its own stream, drawn as
randn((1, C, H, W)) per image (diffusers' convention), so an image never depends on the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

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


def _sigma(sigmas: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
    """sigmas[i] as a (B,) tensor in x's dtype."""
    return sigmas[i].to(x.dtype).expand(x.shape[0])


def _report(callback: Callback, i: int, sigma: torch.Tensor, x: torch.Tensor, denoised: torch.Tensor) -> None:
    if callback is not None:
        callback(SamplerStep(i, float(sigma), x, denoised))


@torch.no_grad()
def sample_euler(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                 callback: Callback = None, extra: dict | None = None) -> torch.Tensor:
    """Euler steps on the probability-flow ODE (Karras et al. 2022, Algorithm 2 without churn)."""
    extra = extra or {}
    for i in range(len(sigmas) - 1):
        denoised = model_fn(x, _sigma(sigmas, i, x), **extra)
        d = (x - denoised) / sigmas[i].to(x.dtype)
        x = x + d * (sigmas[i + 1] - sigmas[i]).to(x.dtype)
        _report(callback, i, sigmas[i], x, denoised)
    return x


def ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a step to sigma_next into a deterministic part to sigma_down and fresh noise of size sigma_up."""
    if eta == 0 or sigma_next == 0:
        return sigma_next, sigma_next * 0
    sigma_up = torch.minimum(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2).sqrt())
    return (sigma_next**2 - sigma_up**2).sqrt(), sigma_up


@torch.no_grad()
def sample_euler_ancestral(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                           callback: Callback = None, extra: dict | None = None, eta: float = 1.0) -> torch.Tensor:
    """Ancestral sampling with Euler steps (k-diffusion's sample_euler_ancestral)."""
    extra = extra or {}
    for i in range(len(sigmas) - 1):
        denoised = model_fn(x, _sigma(sigmas, i, x), **extra)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        d = (x - denoised) / sigmas[i].to(x.dtype)
        x = x + d * (sigma_down - sigmas[i]).to(x.dtype)
        if sigmas[i + 1] > 0:
            x = x + noise_like(x, generator) * sigma_up.to(x.dtype)
        _report(callback, i, sigmas[i], x, denoised)
    return x


@torch.no_grad()
def sample_heun(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                callback: Callback = None, extra: dict | None = None) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 1); the last step to 0 is Euler."""
    extra = extra or {}
    for i in range(len(sigmas) - 1):
        denoised = model_fn(x, _sigma(sigmas, i, x), **extra)
        d = (x - denoised) / sigmas[i].to(x.dtype)
        dt = (sigmas[i + 1] - sigmas[i]).to(x.dtype)
        if sigmas[i + 1] == 0:
            x = x + d * dt  # Euler: d at sigma = 0 is undefined
        else:
            x_euler = x + d * dt
            denoised_next = model_fn(x_euler, _sigma(sigmas, i + 1, x), **extra)
            d_next = (x_euler - denoised_next) / sigmas[i + 1].to(x.dtype)
            x = x + (d + d_next) / 2 * dt
        _report(callback, i, sigmas[i], x, denoised)
    return x


@torch.no_grad()
def sample_dpmpp_2m(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                    callback: Callback = None, extra: dict | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022), first order on the first step and the last step to 0."""
    extra = extra or {}
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        denoised = model_fn(x, _sigma(sigmas, i, x), **extra)
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if sigma_next == 0:
            x = denoised
        else:
            h = sigma.log() - sigma_next.log()  # lambda = -log(sigma)
            mixed = denoised
            if old_denoised is not None:
                r = h_last / h
                mixed = (1 + 1 / (2 * r)).to(x.dtype) * denoised - (1 / (2 * r)).to(x.dtype) * old_denoised
            x = (sigma_next / sigma).to(x.dtype) * x - (-h).expm1().to(x.dtype) * mixed
            h_last = h
        old_denoised = denoised
        _report(callback, i, sigma, x, denoised)
    return x


@torch.no_grad()
def sample_ddim(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                callback: Callback = None, extra: dict | None = None, eta: float = 0.0) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) in variance-exploding form; eta = 0 is deterministic, 1 is DDPM-like."""
    extra = extra or {}
    for i in range(len(sigmas) - 1):
        denoised = model_fn(x, _sigma(sigmas, i, x), **extra)
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        eps = (x - denoised) / sigma.to(x.dtype)
        # The VP posterior std of Song et al., moved to VE coordinates (divided by sqrt(a_prev)).
        a, a_next = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
        std = eta * ((1 - a_next) / (1 - a) * (1 - a / a_next)).clamp_min(0).sqrt()
        sigma_up = std * (1 + sigma_next**2).sqrt()
        sigma_down = (sigma_next**2 - sigma_up**2).clamp_min(0).sqrt()
        x = denoised + eps * sigma_down.to(x.dtype)
        if eta > 0 and sigma_next > 0:
            x = x + noise_like(x, generator) * sigma_up.to(x.dtype)
        _report(callback, i, sigma, x, denoised)
    return x


@torch.no_grad()
def sample_plms(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                callback: Callback = None, extra: dict | None = None) -> torch.Tensor:
    """Pseudo linear multistep (Liu et al. 2022, PNDM): Adams-Bashforth on eps, warmed up by a Heun-like step."""
    extra = extra or {}
    old_eps: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i].to(x.dtype), sigmas[i + 1].to(x.dtype)
        denoised = model_fn(x, _sigma(sigmas, i, x), **extra)
        eps = (x - denoised) / sigma
        if not old_eps and sigma_next > 0:
            x_next = x + eps * (sigma_next - sigma)
            eps_next = (x_next - model_fn(x_next, _sigma(sigmas, i + 1, x), **extra)) / sigma_next
            eps_prime = (eps + eps_next) / 2
        elif len(old_eps) == 1:
            eps_prime = (3 * eps - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            eps_prime = (23 * eps - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        elif len(old_eps) >= 3:
            eps_prime = (55 * eps - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        else:
            eps_prime = eps
        x = x + eps_prime * (sigma_next - sigma)
        old_eps = [*old_eps[-2:], eps]
        _report(callback, i, sigmas[i], x, denoised)
    return x


@torch.no_grad()
def sample_ddpm(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, generator: Generator = None,
                callback: Callback = None, extra: dict | None = None, variance: str = "fixed_small",
                variance_fn: ModelFn | None = None) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020) over the given sigmas, in variance-exploding form.

    variance: "fixed_small" (posterior beta-tilde), "fixed_large" (beta), or "learned" (Nichol & Dhariwal
    2021: `variance_fn(x, sigma)` returns (x0, v) with v in [-1, 1] interpolating their logs).
    """
    extra = extra or {}
    if variance == "learned" and variance_fn is None:
        raise ValueError("variance='learned' needs variance_fn returning (x0, v)")
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if variance == "learned":
            denoised, v = variance_fn(x, _sigma(sigmas, i, x), **extra)
        else:
            denoised, v = model_fn(x, _sigma(sigmas, i, x), **extra), None
        a, a_next = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
        beta = 1 - a / a_next  # the beta of this (possibly strided) step
        # Posterior mean in VE coordinates: (beta / (1 - a)) x0 + (1 - beta) (1 - a_next) / (1 - a) x.
        x = (beta / (1 - a)).to(x.dtype) * denoised + ((1 - beta) * (1 - a_next) / (1 - a)).to(x.dtype) * x
        if sigma_next > 0:
            small = ((1 - a_next) / (1 - a) * beta).clamp_min(1e-20)
            if variance == "fixed_small":
                std = small.sqrt()
            elif variance == "fixed_large":
                std = beta.sqrt()
            elif variance == "learned":
                frac = (v.to(torch.float64) + 1) / 2  # float64: the log interpolation stays exact
                std = (frac * beta.log() + (1 - frac) * small.log()).mul(0.5).exp()
            else:
                raise ValueError(f"unknown variance {variance!r}; use fixed_small, fixed_large or learned")
            x = x + noise_like(x, generator) * (std / a_next.sqrt()).to(x.dtype)
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
