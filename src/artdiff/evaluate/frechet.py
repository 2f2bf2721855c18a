"""Fréchet distance between two feature sets (Heusel et al. 2017, the FID formula), in float64."""

from __future__ import annotations

import torch


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D)."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError("need at least 2 feature vectors of shape (N, D)")
    x = features.detach().to(torch.float64)
    return x.mean(0), torch.cov(x.T)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), with symmetric square roots for stability."""
    root1 = _sqrtm_psd(sigma1)
    middle = _sqrtm_psd(root1 @ sigma2 @ root1)
    value = (mu1 - mu2).square().sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * torch.trace(middle)
    return float(value.clamp_min(0.0))


def _sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    symmetric = (matrix + matrix.T) / 2
    values, vectors = torch.linalg.eigh(symmetric)
    return (vectors * values.clamp_min(0.0).sqrt()) @ vectors.T


def frechet_between(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between two sets of feature vectors."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))
