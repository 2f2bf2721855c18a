"""The losses and gradient guards of CLIP guidance (Crowson's CLIP-guided diffusion, Disco Diffusion, clip-diffusion-art).

Notation: embeddings are compared on the unit sphere; theta is the angle between two of them. Images are
(B, C, H, W) in [-1, 1]. Every loss returns one value per image, (B,), so a caller sums them for autograd
and one image's loss never depends on the others in its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

PromptLoss = Literal["spherical", "cos_spherical"]


def _pairwise_unit(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Unit-normalise x (..., N, D) and y (..., P, D) and shape them to broadcast to (..., N, P, D)."""
    if x.ndim < 2 or y.ndim < 2 or x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"embeddings must be (..., N, D) and (..., P, D) with the same D; got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    return F.normalize(x, dim=-1).unsqueeze(-2), F.normalize(y, dim=-1).unsqueeze(-3)


def spherical_distance(x: Tensor, y: Tensor) -> Tensor:
    """Crowson's spherical distance loss 2 * arcsin(||x - y|| / 2)^2 = theta^2 / 2, pairwise: (..., N, P).

    x (..., N, D) against y (..., P, D), leading dimensions broadcasting; both are normalised here.
    """
    x, y = _pairwise_unit(x, y)  # (..., N, 1, D), (..., 1, P, D)
    # ||x - y|| / 2 = sin(theta / 2) <= 1, but rounding can push antipodal pairs just past 1 (arcsin -> NaN).
    half_chord = (x - y).norm(dim=-1).div(2).clamp(max=1.0)  # (..., N, P)
    return half_chord.arcsin().pow(2).mul(2)


def cos_spherical_distance(x: Tensor, y: Tensor) -> Tensor:
    """clip-diffusion-art's `cos_spherical`: spherical distance + 0.5 * exp(2 * (1 - cos theta)), pairwise.

    This is the form its sample.py computes (a cosine penalty exp((1 - cos) / 0.5) / 2 added to the
    spherical term), kept so its runs can be reproduced. Its minimum, at theta = 0, is 0.5, not 0; only its
    gradient matters for guidance, and it grows faster than theta^2 / 2 as prompts are far, so far cuts pull
    harder. Shapes as spherical_distance.
    """
    x, y = _pairwise_unit(x, y)
    cos = (x * y).sum(dim=-1).clamp(-1.0, 1.0)  # (..., N, P)
    half_chord = (x - y).norm(dim=-1).div(2).clamp(max=1.0)
    return half_chord.arcsin().pow(2).mul(2) + 0.5 * torch.exp(2.0 * (1.0 - cos))


_DISTANCES = {"spherical": spherical_distance, "cos_spherical": cos_spherical_distance}


def normalized_prompt_weights(weights: Tensor | Sequence[float], *, like: Tensor) -> Tensor:
    """Divide weights by |sum(w)| as Disco does; negative weights stay negative (they push away)."""
    # A list is summed on the CPU, so the check costs no device sync inside a sampling loop.
    w = weights if isinstance(weights, Tensor) else torch.tensor(list(weights), dtype=torch.float64)
    w = w.reshape(-1)
    total = float(w.sum().abs())
    if not total >= 1e-6:  # also catches NaN
        raise ValueError(
            f"prompt weights must not sum to 0 (got {[round(float(v), 6) for v in w]}); "
            "change a weight so that their sum is nonzero"
        )
    return (w / total).to(dtype=like.dtype, device=like.device)


def prompt_loss(
    cut_embeds: Tensor,
    prompt_embeds: Tensor,
    weights: Tensor | Sequence[float],
    *,
    loss: PromptLoss = "spherical",
) -> Tensor:
    """Per image, the |sum|-normalised weighted sum over prompts of the mean distance over cuts (Disco): (B,).

    cut_embeds (B, N, D) are N cutouts' embeddings per image; prompt_embeds (P, D); weights (P,).
    """
    if loss not in _DISTANCES:
        raise ValueError(f"unknown CLIP loss {loss!r}; use one of {sorted(_DISTANCES)}")
    if cut_embeds.ndim != 3 or prompt_embeds.ndim != 2:
        raise ValueError(
            f"cut embeddings must be (B, N, D) and prompt embeddings (P, D); got {tuple(cut_embeds.shape)} "
            f"and {tuple(prompt_embeds.shape)}"
        )
    w = normalized_prompt_weights(weights, like=cut_embeds)
    if w.numel() != prompt_embeds.shape[0]:
        raise ValueError(f"give one weight per prompt: {prompt_embeds.shape[0]} prompts, {w.numel()} weights")
    dists = _DISTANCES[loss](cut_embeds, prompt_embeds.to(cut_embeds.dtype))  # (B, N, P)
    # Mean over cuts then weighted sum over prompts equals Disco's per-cut weighted sum then mean (linearity).
    return dists.mean(dim=1) @ w  # (B,)


def _check_images(x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W); got shape {tuple(x.shape)}")


def tv_loss(x: Tensor) -> Tensor:
    """L2 total variation (Mahendran & Vedaldi 2015) as Disco and clip-diffusion-art compute it: (B,).

    The image is replicate-padded by one pixel on the right and bottom, so the last column and row add
    zero differences and the mean runs over every pixel: mean over C, H, W of (dx^2 + dy^2).
    """
    _check_images(x)
    padded = F.pad(x, (0, 1, 0, 1), mode="replicate")  # (B, C, H + 1, W + 1)
    dx = padded[..., :-1, 1:] - padded[..., :-1, :-1]  # right neighbour minus pixel, (B, C, H, W)
    dy = padded[..., 1:, :-1] - padded[..., :-1, :-1]  # lower neighbour minus pixel
    return (dx.pow(2) + dy.pow(2)).mean(dim=(1, 2, 3))


def range_loss(x: Tensor) -> Tensor:
    """Disco's range loss: the mean squared excess of x over [-1, 1], per image: (B,)."""
    _check_images(x)
    return (x - x.clamp(-1, 1)).pow(2).mean(dim=(1, 2, 3))


def saturation_loss(x: Tensor) -> Tensor:
    """Disco's saturation loss: the mean absolute excess of x over [-1, 1], per image: (B,).

    Disco takes the mean over the whole batch; per image it is the same for one image and keeps images
    independent of their batch.
    """
    _check_images(x)
    return (x - x.clamp(-1, 1)).abs().mean(dim=(1, 2, 3))


def clamp_gradient_rms(grad: Tensor, max_rms: float) -> Tensor:
    """Rescale each image's gradient so its RMS is at most max_rms (Disco's clamp_grad, clamp_max 0.05).

    Disco measures the RMS over the whole batch; here each image is clamped alone so an image does not
    change with the batch it is drawn in. Gradients already within the bound are returned unchanged.
    """
    if not max_rms > 0:
        raise ValueError(f"the gradient RMS bound must be positive (got {max_rms}); Disco uses 0.05")
    rms = grad.pow(2).mean(dim=tuple(range(1, grad.ndim)), keepdim=True).sqrt()  # (B, 1, ...)
    # max_rms / 0 is inf, clamped to 1: an all-zero gradient stays zero rather than 0/0.
    return grad * (max_rms / rms).clamp(max=1.0)


def finite_or_zero(grad: Tensor) -> tuple[Tensor, Tensor]:
    """Zero the whole gradient of every image holding a NaN or inf; return (grad, skipped (B,) bool)."""
    skipped = ~torch.isfinite(grad).reshape(grad.shape[0], -1).all(dim=1)  # (B,)
    mask = skipped.reshape(-1, *([1] * (grad.ndim - 1)))
    return torch.where(mask, torch.zeros_like(grad), grad), skipped
