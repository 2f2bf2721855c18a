"""The hybrid objective of Nichol & Dhariwal (2021), "Improved denoising diffusion probabilistic models".

Notation (Ho et al. 2020): betas beta_t, alpha-bar a_t = prod(1 - beta_s), x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps,
the true posterior q(x_{t-1} | x_t, x0) = N(mu-tilde_t, beta-tilde_t) and the model's p(x_{t-1} | x_t) =
N(mu_theta, Sigma_theta); the per-timestep tables are core.respacing's, with every step kept. Pixels live in
[-1, 1]; t is a 0-based index into the T training steps.
The tables are float64; per-example terms are computed in the inputs' dtype (pass float32, not fp16).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from artdiff.core.respacing import RespacedDiffusion, learned_range_log_variance, respaced_diffusion


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats (broadcasting)."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: Tensor) -> Tensor:
    """Phi(x) by the tanh approximation of Page (1977), as Ho et al.'s decoder uses."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x: Tensor, *, means: Tensor, log_scales: Tensor) -> Tensor:
    """log P(x) per element of a Gaussian binned to 256 levels on [-1, 1] (Ho et al. 2020, eq. 13), in nats.

    The two end bins extend to -inf and +inf, so every value of the Gaussian's mass is counted.
    """
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def training_tables(betas: Tensor) -> RespacedDiffusion:
    """Every training timestep's constants (Ho et al. 2020, eq. 6-7): the respaced tables with all T steps kept."""
    return respaced_diffusion(torch.cumprod(1.0 - betas.to(torch.float64), dim=0), range(len(betas)))


def _at(table: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """table[t] shaped (B, 1, 1, 1) in `like`'s dtype and device."""
    return table.to(like.device)[t.to(like.device)].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def q_sample(tables: RespacedDiffusion, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps."""
    return _at(tables.alphas_cumprod.sqrt(), t, x0) * x0 + _at((1 - tables.alphas_cumprod).sqrt(), t, x0) * eps


def q_posterior_mean(tables: RespacedDiffusion, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    """mu-tilde_t(x_t, x0), the mean of q(x_{t-1} | x_t, x0)."""
    return _at(tables.posterior_mean_coef1, t, x_t) * x0 + _at(tables.posterior_mean_coef2, t, x_t) * x_t


def learned_range_log_variance_at(tables: RespacedDiffusion, v: Tensor, t: Tensor) -> Tensor:
    """log Sigma of variance channels v (B, C, H, W) at each example's timestep t, by learned range."""
    wide = v.to(torch.float64)  # interpolated in float64 as the samplers do, then back to v's dtype
    log_beta, log_beta_tilde = _at(tables.betas.log(), t, wide), _at(tables.posterior_log_variance_clipped, t, wide)
    return learned_range_log_variance(v, log_beta, log_beta_tilde).to(v.dtype)


def predict_x0_from_eps(tables: RespacedDiffusion, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)."""
    abar = tables.alphas_cumprod
    return _at((1 / abar).sqrt(), t, x_t) * x_t - _at((1 / abar - 1).sqrt(), t, x_t) * eps


def vb_term_bits(tables: RespacedDiffusion, *, x0: Tensor, x_t: Tensor, t: Tensor, model_x0: Tensor,
                 model_log_variance: Tensor) -> Tensor:
    """L_{t-1} per example in bits per dimension: the KL to the true posterior, or at t = 0 the decoder NLL."""
    true_mean = q_posterior_mean(tables, x0, x_t, t)
    true_log_variance = _at(tables.posterior_log_variance_clipped, t, x_t)
    model_mean = q_posterior_mean(tables, model_x0, x_t, t)
    kl = normal_kl(true_mean, true_log_variance, model_mean, model_log_variance).flatten(1).mean(1)
    nll = -discretized_gaussian_log_likelihood(x0, means=model_mean, log_scales=0.5 * model_log_variance)
    nll = nll.flatten(1).mean(1)
    return torch.where(t.to(x0.device) == 0, nll, kl) / math.log(2.0)


@dataclass
class HybridLoss:
    """Per-example terms (B,): loss = mse + vb (vb is zero without a learned variance)."""

    loss: Tensor
    mse: Tensor
    vb: Tensor


def hybrid_loss(tables: RespacedDiffusion, output: Tensor, *, x0: Tensor, x_t: Tensor, eps: Tensor, t: Tensor,
                parameterization: str = "eps", learn_sigma: bool = True,
                rescale_learned_sigmas: bool = False, snr_gamma: float | None = None) -> HybridLoss:
    """L_simple + L_vlb term of Nichol & Dhariwal (2021) sec. 3.1 for a model output (B, 3 or 6, H, W).

    L_simple is the MSE to eps (or to x0 for "x0", or to v = sqrt(a) eps - sqrt(1 - a) x0 for "v", Salimans & Ho
    2022), optionally weighted per example by min-SNR-gamma (Hang et al. 2023, see min_snr_weight). With a learned variance the output's second
    half v sets log Sigma by learned range, and the vb term is computed with the predicted mean DETACHED, so it
    trains only the variance ("stop-gradient" in the paper). The paper's lambda = 0.001 on the full
    L_vlb = T * E_t[L_t] is, for T = 1000, exactly the per-example L_t used here with weight 1;
    rescale_learned_sigmas multiplies it by T / 1000, which keeps lambda = 0.001 for other T (improved-diffusion's
    RESCALED_MSE); without it the weight stays 1 whatever T.
    """
    channels = x0.shape[1]
    if learn_sigma:
        if output.shape[1] != 2 * channels:
            raise ValueError(f"a learned-variance model must output {2 * channels} channels, got {output.shape[1]}")
        prediction, v = output[:, :channels], output[:, channels:]
    else:
        prediction, v = output, None
    if parameterization not in ("eps", "x0", "v"):
        raise ValueError(f"unknown parameterization {parameterization!r}; use eps, x0 or v")
    root_a, root_1ma = _at(tables.alphas_cumprod.sqrt(), t, x0), _at((1 - tables.alphas_cumprod).sqrt(), t, x0)
    target = {"eps": eps, "x0": x0, "v": root_a * eps - root_1ma * x0}[parameterization]
    mse = ((target - prediction) ** 2).flatten(1).mean(1)
    if snr_gamma is not None:
        mse = mse * min_snr_weight(tables, t, parameterization, snr_gamma).to(mse)
    if v is None:
        return HybridLoss(loss=mse, mse=mse, vb=torch.zeros_like(mse))
    frozen = prediction.detach()
    if parameterization == "eps":
        model_x0 = predict_x0_from_eps(tables, x_t, t, frozen)
    else:
        model_x0 = frozen if parameterization == "x0" else root_a * x_t - root_1ma * frozen
    vb = vb_term_bits(tables, x0=x0, x_t=x_t, t=t, model_x0=model_x0,
                      model_log_variance=learned_range_log_variance_at(tables, v, t))
    if rescale_learned_sigmas:
        vb = vb * (len(tables.betas) / 1000.0)
    return HybridLoss(loss=mse + vb, mse=mse, vb=vb)


def min_snr_weight(tables: RespacedDiffusion, t: Tensor, parameterization: str, gamma: float) -> Tensor:
    """Min-SNR-gamma (Hang et al. 2023): each example's MSE weight, min(SNR, gamma) in x0 terms, per target.

    SNR = a / (1 - a). The eps loss is SNR times the x0 loss and the v loss (SNR + 1) times it, so the weights
    are min(SNR, gamma) / SNR, / (SNR + 1) and 1 for eps, v and x0 below SNR = gamma. Capping the weight of
    the nearly clean steps keeps their easy gradients from crowding out the noisy steps that decide the layout.
    """
    abar = tables.alphas_cumprod.to(t.device)[t].double()
    snr = abar / (1 - abar)
    clipped = snr.clamp(max=gamma)
    return {"eps": clipped / snr, "v": clipped / (snr + 1), "x0": clipped}[parameterization].float()
