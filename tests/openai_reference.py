"""An independent, plain float64 reference of improved-diffusion's respaced sampling loops (variance-preserving form).

Written from the papers' formulas (Ho et al. 2020 eq. 6-7, Nichol & Dhariwal 2021 eq. 15, Song et al. 2021 eq. 12)
and the behaviour of improved-diffusion's SpacedDiffusion and the crowsonkb fork's skip_timesteps, not from
artdiff's code: x is the VP sample, the network sees the ORIGINAL timestep, noise is drawn per image.
"""

from __future__ import annotations

import numpy as np
import torch


def linear_betas(T: int = 1000) -> np.ndarray:
    """improved-diffusion's linear schedule: 1e-4 to 0.02 scaled by 1000 / T."""
    return np.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=np.float64)


def spaced_process(betas: np.ndarray, kept: list[int]) -> dict[str, np.ndarray]:
    """The kept steps' betas (the product of the alphas each one spans) and the quantities sampling needs."""
    alphas = 1 - betas
    new_betas, previous = [], -1
    for t in kept:
        new_betas.append(1 - np.prod(alphas[previous + 1:t + 1]))
        previous = t
    b = np.array(new_betas)
    abar = np.cumprod(1 - b)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    variance = b * (1 - abar_prev) / (1 - abar)
    log_clipped = np.log(np.concatenate([[variance[1]], variance[1:]]))
    return {"map": np.array(kept), "betas": b, "abar": abar, "abar_prev": abar_prev, "log_clipped": log_clipped,
            "coef1": b * np.sqrt(abar_prev) / (1 - abar), "coef2": (1 - abar_prev) * np.sqrt(1 - b) / (1 - abar)}


def draw(generators: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """One float32 normal draw per image, as diffusers' convention for a list of generators, widened to float64."""
    return torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generators]).double()


def sample(network, process: dict, shape: tuple[int, ...], *, method: str, generators: list[torch.Generator],
           variance: str = "learned_range", eta: float = 0.0, clip_denoised: bool = False, skip: int = 0,
           init: torch.Tensor | None = None, time_scale: float = 1.0, cond: dict | None = None,
           learned: bool = True, parameterization: str = "eps") -> list[torch.Tensor]:
    """Every step's VP sample x_{k-1} (float64), for method "ddpm" (p_sample) or "ddim" (ddim_sample).

    network(x, t, **cond) -> (B, 2C or C, H, W); the first draw of `generators` is the starting noise.
    """
    cond = cond or {}
    abar, abar_prev = process["abar"], process["abar_prev"]
    K = len(abar)
    indices = list(range(K - skip))[::-1]
    x = draw(generators, shape)
    if skip and init is None:
        init = torch.zeros(shape, dtype=torch.float64)
    if init is not None:  # q_sample(init, indices[0], noise)
        k = indices[0]
        x = np.sqrt(abar[k]) * init.double() + np.sqrt(1 - abar[k]) * x
    trajectory = []
    for k in indices:
        t = torch.full((shape[0],), float(process["map"][k]) * time_scale, dtype=torch.float64)
        out = network(x.float(), t.float(), **cond).double()
        if learned:
            out, v = out.chunk(2, dim=1)
        if parameterization == "eps":
            x0 = np.sqrt(1 / abar[k]) * x - np.sqrt(1 / abar[k] - 1) * out
        else:
            x0 = out
        if clip_denoised:
            x0 = x0.clamp(-1, 1)
        if method == "ddpm":
            mean = process["coef1"][k] * x0 + process["coef2"][k] * x
            if variance == "learned_range":
                frac = (v + 1) / 2
                log_var = frac * np.log(process["betas"][k]) + (1 - frac) * process["log_clipped"][k]
            elif variance == "fixed_small":
                log_var = torch.full_like(x, process["log_clipped"][k])
            else:  # fixed_large: beta (its k = 0 value never adds noise)
                log_var = torch.full_like(x, np.log(process["betas"][k]))
            x = mean + (torch.exp(0.5 * log_var) * draw(generators, shape) if k > 0 else 0)
        else:
            eps = (np.sqrt(1 / abar[k]) * x - x0) / np.sqrt(1 / abar[k] - 1)
            sigma = eta * np.sqrt((1 - abar_prev[k]) / (1 - abar[k])) * np.sqrt(1 - abar[k] / abar_prev[k])
            x = x0 * np.sqrt(abar_prev[k]) + np.sqrt(1 - abar_prev[k] - sigma**2) * eps
            if k > 0 and eta > 0:
                x = x + sigma * draw(generators, shape)
        trajectory.append(x)
    return trajectory


def toy_network(*, learned: bool = True, seen: list | None = None):
    """A smooth network of (x, t), nonlinear in both, whose variance channels lie in (-1, 1); records the t it sees."""

    def network(x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        if seen is not None:
            seen.append(t.detach().clone())
        t = t.to(x.dtype).reshape(-1, 1, 1, 1)
        eps = torch.tanh(0.9 * x + 0.2 * torch.sin(t / 37.0)) * 1.1
        if class_labels is not None:
            eps = eps + 0.1 * class_labels.to(x.dtype).reshape(-1, 1, 1, 1)
        if not learned:
            return eps
        return torch.cat([eps, torch.tanh(0.5 * x.flip(1) + torch.cos(t / 50.0))], dim=1)

    return network
