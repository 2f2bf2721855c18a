"""Each sampler converges to the exact probability-flow solution for Gaussian data at its expected order."""

import math

import pytest
import torch

from artdiff.core.samplers import (
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
    sample_plms,
)
from artdiff.core.schedules import karras_sigmas

SIGMA_DATA, SIGMA_MAX = 0.5, 20.0


def gaussian_denoiser(x, sigma):
    """The ideal denoiser for data ~ N(0, SIGMA_DATA^2)."""
    sigma = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(torch.float64)
    return x * SIGMA_DATA**2 / (SIGMA_DATA**2 + sigma**2)


def solve(sampler, steps, **options):
    """Max error against the exact ODE solution x(0) = x_T * sigma_data / sqrt(sigma_data^2 + sigma_max^2)."""
    x_T = torch.randn(4096, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * SIGMA_MAX
    sigmas = karras_sigmas(steps, 0.002, SIGMA_MAX)
    exact = x_T * SIGMA_DATA / math.sqrt(SIGMA_DATA**2 + SIGMA_MAX**2)
    return (sampler(gaussian_denoiser, x_T.clone(), sigmas, **options) - exact).abs().max().item() / SIGMA_DATA


@pytest.mark.parametrize("sampler,order", [(sample_euler, 1), (sample_ddim, 1), (sample_heun, 2),
                                           (sample_dpmpp_2m, 2), (sample_plms, 2)])
def test_error_shrinks_at_the_samplers_order(sampler, order):
    coarse, fine = solve(sampler, 20), solve(sampler, 40)
    # Doubling the steps divides the error by about 2^order (a margin for the schedule's curvature).
    assert fine < coarse and coarse / fine > 2 ** order * 0.7, (coarse, fine)


def test_second_order_beats_first_order():
    assert solve(sample_heun, 20) < solve(sample_euler, 20) / 4
    assert solve(sample_dpmpp_2m, 20) < solve(sample_euler, 20) / 3


@pytest.mark.parametrize("sampler", [sample_euler_ancestral, sample_ddpm])
def test_stochastic_samplers_reach_the_data_distribution(sampler):
    def std_error(steps):
        x_T = torch.randn(20000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * SIGMA_MAX
        out = sampler(gaussian_denoiser, x_T, karras_sigmas(steps, 0.002, SIGMA_MAX),
                      generator=torch.Generator().manual_seed(2))
        assert abs(out.mean().item()) < 0.02
        return abs(out.std().item() - SIGMA_DATA)

    coarse, fine = std_error(50), std_error(200)
    assert fine < 0.02 and coarse / fine > 2.5  # first order in distribution: error ~ 1/steps


def test_per_image_generators_make_images_independent_of_the_batch():
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * SIGMA_MAX
    sigmas = karras_sigmas(6, 0.01, SIGMA_MAX)
    batch = sample_euler_ancestral(gaussian_denoiser, x.clone(), sigmas,
                                   generator=[torch.Generator().manual_seed(10 + i) for i in range(3)])
    alone = sample_euler_ancestral(gaussian_denoiser, x[2:].clone(), sigmas,
                                   generator=[torch.Generator().manual_seed(12)])
    assert torch.equal(batch[2:], alone)
