"""Denoiser adapters recover x0 from oracle eps/v/x0 networks; schedules invert and end where they should."""

import math

import pytest
import torch
from diffusers import DDPMScheduler

from artdiff.core.denoisers import ContinuousCosineDenoiser, DiscreteDenoiser
from artdiff.core.samplers import sample_ddpm
from artdiff.core.schedules import (
    alphas_cumprod,
    cosine_sigma_to_t,
    cosine_sigmas,
    cosine_t_to_sigma,
    ddpm_betas,
    exponential_sigmas,
    karras_sigmas,
    sigmas_at,
)

X0 = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
EPS = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def oracle(parameterization, alphas_bar):
    """A network that knows x0 and eps and answers in the given parameterization (VP input, timestep t)."""
    def fn(x_in, t):
        a = torch.as_tensor(sigmas_at(t, ((1 - alphas_bar) / alphas_bar).sqrt())).reshape(-1, 1, 1, 1)
        alpha, sigma_vp = 1 / (1 + a**2).sqrt(), a / (1 + a**2).sqrt()
        return {"eps": EPS, "v": alpha * EPS - sigma_vp * X0, "x0": X0}[parameterization]
    return fn


@pytest.mark.parametrize("parameterization", ["eps", "v", "x0"])
def test_discrete_denoiser_recovers_x0(parameterization):
    alphas_bar = alphas_cumprod(ddpm_betas("scaled_linear"))
    denoiser = DiscreteDenoiser(oracle(parameterization, alphas_bar), alphas_bar, parameterization=parameterization)
    sigma = torch.tensor([0.7, 9.0], dtype=torch.float64)
    x = X0 + sigma.reshape(-1, 1, 1, 1) * EPS
    assert torch.allclose(denoiser(x, sigma), X0, atol=1e-8)


def test_sigma_to_t_inverts_the_table_interpolation():
    alphas_bar = alphas_cumprod(ddpm_betas("linear", beta_start=1e-4, beta_end=0.02))
    denoiser = DiscreteDenoiser(lambda x, t: x, alphas_bar)
    t = torch.tensor([0.0, 3.25, 500.5, 998.9, 999.0], dtype=torch.float64)
    assert torch.allclose(denoiser.sigma_to_t(sigmas_at(t, denoiser.sigma_table)), t, atol=1e-6)
    table = denoiser.sigma_table
    outside = torch.stack([table[0] / 2, table[-1] * 2])  # beyond the table: clamped to its ends, 0 and T-1
    assert denoiser.sigma_to_t(outside).tolist() == [0.0, 999.0]


def test_betas_match_diffusers():
    for kind in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        expected = DDPMScheduler(beta_schedule=kind, beta_start=0.0001, beta_end=0.02).alphas_cumprod
        got = alphas_cumprod(ddpm_betas(kind, beta_start=0.0001, beta_end=0.02))
        assert torch.allclose(got.float(), expected, atol=1e-6)


def test_continuous_cosine_denoiser_recovers_x0_from_v():
    t = torch.tensor([0.2, 0.9], dtype=torch.float64)
    alpha, sigma_vp = torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)
    v = alpha.reshape(-1, 1, 1, 1) * EPS - sigma_vp.reshape(-1, 1, 1, 1) * X0
    seen = {}

    def network(x_in, time):
        seen["t"] = time
        return v

    sigma = cosine_t_to_sigma(t)
    x = X0 + sigma.reshape(-1, 1, 1, 1) * EPS
    assert torch.allclose(ContinuousCosineDenoiser(network)(x, sigma), X0, atol=1e-8)
    assert torch.allclose(seen["t"], t) and torch.allclose(cosine_sigma_to_t(sigma), t)


def test_sigma_schedules_descend_to_zero():
    for sigmas in (karras_sigmas(10, 0.03, 14.6), exponential_sigmas(10, 0.03, 14.6), cosine_sigmas(10)):
        assert sigmas[-1] == 0 and bool((sigmas[:-1] > sigmas[1:]).all()) and len(sigmas) == 11
    assert karras_sigmas(5, 0.1, 10.0)[0] == pytest.approx(10.0) and karras_sigmas(5, 0.1, 10.0)[-2] == pytest.approx(0.1)


def test_learned_variance_interpolates_between_the_fixed_ones():
    alphas_bar = alphas_cumprod(ddpm_betas("linear", beta_start=1e-4, beta_end=0.02))
    model = lambda x, s: x * 0.1  # noqa: E731
    sigmas = torch.cat([sigmas_at(torch.tensor([999.0, 500.0, 10.0]), ((1 - alphas_bar) / alphas_bar).sqrt()),
                        torch.zeros(1, dtype=torch.float64)])
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 100

    def run(variance, v=None):
        fn = (lambda x, s: (model(x, s), torch.full_like(x, v))) if v is not None else None
        return sample_ddpm(model, x.clone(), sigmas, generator=torch.Generator().manual_seed(4), variance=variance,
                           variance_fn=fn)

    assert torch.allclose(run("learned", -1.0), run("fixed_small"))
    assert torch.allclose(run("learned", 1.0), run("fixed_large"))



def test_the_cpu_step_path_gives_the_tensor_path_scalings():
    denoiser = DiscreteDenoiser(lambda x, t: x, alphas_cumprod(ddpm_betas("scaled_linear")))
    table = denoiser.sigma_table
    sigma = torch.cat([torch.stack([table[0] / 2, table[0], table[500], table[-1], table[-1] * 2]),
                       torch.rand(20, dtype=torch.float64) * 14.6]).float()
    x = torch.zeros(len(sigma), 4, 2, 2)
    c_in, t = denoiser._scalings(sigma, x)
    assert torch.equal(t, denoiser.sigma_to_t(sigma)) and c_in.shape == (len(sigma), 1, 1, 1)
    assert torch.equal(c_in, (1 / (sigma.double() ** 2 + 1).sqrt()).float().reshape(-1, 1, 1, 1))
    assert torch.allclose(c_in.flatten(), (sigma**2 + 1).rsqrt(), rtol=2e-7)  # the float32 formula, within an ulp


def test_sigmas_are_read_where_the_table_is():
    # A denoiser moved to CUDA keeps its table there; the timesteps are made on the CPU (training's sample grid
    # crashed on a GPU). The meta device stands in for CUDA: mixing it with CPU tensors fails the same way.
    table = torch.linspace(0.1, 80, 1000, dtype=torch.float64)
    sigmas = sigmas_at(torch.tensor([999.0, 500.5, 0.0]), table.to("meta"))
    assert sigmas.device.type == "meta" and sigmas.shape == (3,)
    assert torch.allclose(sigmas_at(torch.tensor([999.0, 0.0]), table), table[[999, 0]])
