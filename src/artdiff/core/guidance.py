"""Guidance as wrappers that take a model_fn and return a new one (k-diffusion's make_cond_model_fn pattern).

Classifier-free guidance (Ho & Salimans 2022) over several weighted conditions, as CCLD combines
prompts: denoised = uncond + scale * sum_i w_i (cond_i - uncond); negative weights push away.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from artdiff.core.denoisers import append_dims

ModelFn = Callable[..., torch.Tensor]
Cond = dict[str, torch.Tensor]  # keyword arguments of the model for one condition, batch-first


@dataclass
class WeightedCond:
    """One condition of a prompt mixture and its weight."""

    cond: Cond
    weight: float = 1.0


@dataclass
class GuidanceConfig:
    """How the conditional and unconditional predictions are combined."""

    scale: float = 3.0  # global multiplier of all weights; 1 with one condition means no guidance
    rescale: float = 0.0  # guidance rescale phi (Lin et al. 2023, eq. 16), applied to the eps prediction
    sigma_range: tuple[float, float] | None = None  # guide only for sigma in [low, high] (Kynkäänniemi et al. 2024)
    extra: dict = field(default_factory=dict)  # keyword arguments shared by every call


def classifier_free(model_fn: ModelFn, conds: list[WeightedCond], uncond: Cond, cfg: GuidanceConfig) -> ModelFn:
    """Wrap model_fn so one call evaluates uncond and every cond in one batch and mixes them."""
    if not conds:
        raise ValueError("classifier-free guidance needs at least one condition")
    all_conds = [uncond] + [c.cond for c in conds]
    # The conditions are fixed for a whole run: batch them once here, not at every step (diffusers' pipelines
    # also concatenate [negative, prompt] once before their loop).
    merged = _merge(all_conds)
    weights = [c.weight for c in conds]
    single = len(conds) == 1 and conds[0].weight == 1.0

    def guided(x: torch.Tensor, sigma: torch.Tensor, **extra) -> torch.Tensor:
        outside = cfg.sigma_range is not None and not (cfg.sigma_range[0] <= float(sigma.max()) <= cfg.sigma_range[1])
        if outside and single:
            return model_fn(x, sigma, **conds[0].cond, **cfg.extra, **extra)  # the plain conditional model
        uncond_out, *cond_outs = _evaluate(model_fn, x, sigma, all_conds, merged, {**cfg.extra, **extra})
        if outside:
            return _mix(uncond_out, cond_outs, weights, 1.0)  # guidance scale 1 outside the interval
        guided_out = _mix(uncond_out, cond_outs, weights, cfg.scale)
        if cfg.rescale > 0:
            positive = _mix(uncond_out, cond_outs, weights, 1.0)
            guided_out = _rescale(x, sigma, guided_out, positive, cfg.rescale)
        return guided_out

    return guided


def _mix(uncond: torch.Tensor, outs: list[torch.Tensor], weights: list[float], scale: float) -> torch.Tensor:
    """uncond + scale * sum_i w_i (out_i - uncond): two fused ops per condition."""
    mixed = uncond
    for weight, out in zip(weights, outs):
        mixed = torch.add(mixed, out - uncond, alpha=scale * weight)
    return mixed


def _merge(conds: list[Cond]) -> Cond | None:
    """The conditions concatenated along the batch, or None when their keys or shapes differ."""
    keys = set(conds[0])
    if not all(set(c) == keys and all(c[k].shape == conds[0][k].shape for k in keys) for c in conds):
        return None
    return {k: torch.cat([c[k] for c in conds]) for k in keys}


def _evaluate(model_fn: ModelFn, x: torch.Tensor, sigma: torch.Tensor, conds: list[Cond], merged: Cond | None,
              extra: dict) -> list[torch.Tensor]:
    """x under each condition: one batched forward when the conditions could be merged, else one per condition."""
    if merged is None:
        return [model_fn(x, sigma, **c, **extra) for c in conds]
    n = len(conds)
    out = model_fn(torch.cat([x] * n), torch.cat([sigma] * n), **merged, **extra)
    return list(out.chunk(n))


def _rescale(x: torch.Tensor, sigma: torch.Tensor, guided: torch.Tensor, positive: torch.Tensor,
             phi: float) -> torch.Tensor:
    """Match the guided eps's std to the conditional eps's (Lin et al. 2023), as diffusers does, then back to x0."""
    s = append_dims(sigma.to(x.dtype), x.ndim).clamp_min(1e-8)
    eps_guided, eps_positive = (x - guided) / s, (x - positive) / s
    dims = list(range(1, x.ndim))
    rescaled = eps_guided * (eps_positive.std(dim=dims, keepdim=True) / eps_guided.std(dim=dims, keepdim=True))
    eps = phi * rescaled + (1 - phi) * eps_guided
    return x - s * eps


def gradient_guidance(model_fn: ModelFn, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
                      scale: float = 1.0) -> ModelFn:
    """Steer with -grad of a differentiable loss on the predicted x0 (Dhariwal & Nichol 2021; k-diffusion's form).

    The returned model_fn gives denoised + scale * sigma^2 * (-d loss / d x), so any loss on x0 (CLIP
    similarity, TV, range, saturation) plugs in here.
    """

    def guided(x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        # Samplers run under inference_mode: step out of it, and clone its tensors so autograd may save them.
        with torch.inference_mode(False), torch.enable_grad():
            x_in = x.clone().requires_grad_()
            sigma = sigma.clone()
            cond = {key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in cond.items()}
            denoised = model_fn(x_in, sigma, **cond)
            grad = torch.autograd.grad(loss_fn(denoised, sigma).sum(), x_in)[0]
        return denoised.detach() - scale * grad * append_dims(sigma.to(x.dtype), x.ndim) ** 2

    return guided
