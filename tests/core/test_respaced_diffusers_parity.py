"""Respaced ddpm (learned range) and ddim against diffusers' DDPMScheduler and DDIMScheduler on the same noise.

diffusers keeps betas and alphas_cumprod in float32 (we use float64: differences of ~1e-6), and clamps the
posterior variance of t = 0 to 1e-20 before its log where improved-diffusion takes beta-tilde of the next step;
no noise is added at t = 0, so the samples agree and only the reported log variance of t = 0 differs.
"""

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from artdiff.core.denoisers import DiscreteDenoiser
from artdiff.core.respacing import respaced_diffusion, space_timesteps
from artdiff.core.samplers import sample_ddim, sample_ddpm
from artdiff.core.schedules import alphas_cumprod, append_zero, ddpm_betas
from openai_reference import toy_network

SHAPE = (2, 3, 4, 4)
CONFIG = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
          "prediction_type": "epsilon", "clip_sample": False, "timestep_spacing": "leading"}
ALPHAS_BAR = alphas_cumprod(ddpm_betas("linear", beta_start=1e-4, beta_end=0.02))


def generators() -> list[torch.Generator]:
    return [torch.Generator().manual_seed(10 + i) for i in range(SHAPE[0])]


def start(sigma_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The same VP starting noise for both sides, and ours in VE coordinates."""
    noise = torch.cat([torch.randn((1, *SHAPE[1:]), generator=torch.Generator().manual_seed(99 + i))
                       for i in range(SHAPE[0])])
    return noise, noise * math.sqrt(1 + sigma_max**2)


def ddim50_sigmas() -> torch.Tensor:
    return append_zero(respaced_diffusion(ALPHAS_BAR, space_timesteps(1000, "ddim50")).sigmas.flip(0))


def test_ddpm_learned_range_follows_ddpm_scheduler():
    network = toy_network()
    scheduler = DDPMScheduler(**CONFIG, variance_type="learned_range")
    scheduler.set_timesteps(50)  # leading spacing of 50 steps: 980, 960, ..., 0 = ddim50's kept timesteps
    assert scheduler.timesteps.tolist() == space_timesteps(1000, "ddim50")[::-1]
    sigmas = ddim50_sigmas()
    noise, x = start(float(sigmas[0]))
    gens = generators()
    for t in scheduler.timesteps:
        output = network(noise, t.float().expand(SHAPE[0]))  # (B, 6, H, W): the scheduler splits it itself
        noise = scheduler.step(output, t, noise, generator=gens).prev_sample
    denoiser = DiscreteDenoiser(network, ALPHAS_BAR, learned_variance=True)
    got = sample_ddpm(denoiser, x, sigmas, generator=generators(), variance="learned", variance_fn=denoiser.raw)
    assert (got - noise).abs().max() < 1e-5 * (1 + noise.abs().max())  # the toy network runs to |x| ~ 300


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_follows_ddim_scheduler_on_the_eps_channels(eta):
    network = toy_network()
    scheduler = DDIMScheduler(**CONFIG, set_alpha_to_one=True, steps_offset=0)
    scheduler.set_timesteps(50)
    sigmas = ddim50_sigmas()
    noise, x = start(float(sigmas[0]))
    gens = generators()
    for t in scheduler.timesteps:
        output = network(noise, t.float().expand(SHAPE[0]))[:, :3]  # DDIMScheduler does not split a variance
        noise = scheduler.step(output, t, noise, eta=eta, generator=gens).prev_sample
    denoiser = DiscreteDenoiser(network, ALPHAS_BAR, learned_variance=True)
    got = sample_ddim(denoiser, x, sigmas, generator=generators(), eta=eta)
    assert (got - noise).abs().max() < 1e-5 * (1 + noise.abs().max())  # the toy network runs to |x| ~ 300


def test_one_step_log_variance_and_where_t0_differs():
    scheduler = DDPMScheduler(**CONFIG, variance_type="learned_range")
    scheduler.set_timesteps(50)
    spaced = respaced_diffusion(ALPHAS_BAR, space_timesteps(1000, "ddim50"))
    v = torch.linspace(-1, 1, 5)
    for k, t in ((49, 980), (10, 200), (1, 20)):
        ours = spaced.learned_range_log_variance(k, v)
        theirs = scheduler._get_variance(t, predicted_variance=v).double()
        assert (ours - theirs).abs().max() < 1e-3  # float32: 1 - a / a_prev of a small beta keeps ~4 digits
    # t = 0: improved-diffusion clips with beta-tilde of the next step, diffusers with log(1e-20)
    assert (spaced.learned_range_log_variance(0, v) - scheduler._get_variance(0, predicted_variance=v)).abs().max() > 1
