"""Our samplers follow diffusers' schedulers step for step on the same model, timesteps and noise (float32)."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from artdiff.core.denoisers import DiscreteDenoiser
from artdiff.core.samplers import sample_ddim, sample_ddpm, sample_dpmpp_2m, sample_euler
from artdiff.core.schedules import append_zero, discrete_timesteps, sigmas_at

SD_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
SHAPE = (2, 3, 8, 8)


def network(prediction: str):
    """A smooth toy network of (input, timestep): nonlinear in both, like a real one."""
    def fn(x_in, t):
        t = torch.as_tensor(t, dtype=x_in.dtype).reshape(-1, 1, 1, 1)
        out = torch.tanh(x_in * (0.8 + t / 2000)) * 0.7 + 0.05 * torch.sin(t / 100 + x_in)
        return out if prediction != "v_prediction" else out * 0.9
    return fn


def diffusers_loop(scheduler, fn, steps, noise, generator=None, **step_options):
    """The scheduler loop of a diffusers pipeline."""
    scheduler.set_timesteps(steps)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = fn(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(out, t, x, generator=generator, **step_options).prev_sample
    return x, scheduler


def ours(scheduler, fn, steps, noise, sampler, prediction, final_sigma_zero=True, **options):
    """Run our sampler on the scheduler's own timesteps (the issue: same model, timesteps and noise)."""
    alphas_bar = scheduler.alphas_cumprod.to(torch.float64)
    denoiser = DiscreteDenoiser(fn, alphas_bar, parameterization={"epsilon": "eps", "v_prediction": "v"}[prediction])
    timesteps = scheduler.timesteps.to(torch.float64)
    sigmas = sigmas_at(timesteps, denoiser.sigma_table)
    sigmas = append_zero(sigmas)
    x = noise * (sigmas[0] ** 2 + 1).sqrt().to(torch.float32)  # VP noise at t_max, in VE coordinates
    return sampler(denoiser, x, sigmas, **options)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_ddim(prediction, eta):
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    scheduler = DDIMScheduler(**SD_CONFIG, prediction_type=prediction, clip_sample=False, set_alpha_to_one=True,
                              steps_offset=1)
    expected, scheduler = diffusers_loop(scheduler, network(prediction), 10, noise,
                                         generator=torch.Generator().manual_seed(1), eta=eta)
    got = ours(scheduler, network(prediction), 10, noise, sample_ddim, prediction, eta=eta,
               generator=torch.Generator().manual_seed(1))
    assert (got - expected).abs().max() < 1e-4


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_ddpm_fixed_small(prediction):
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    scheduler = DDPMScheduler(**SD_CONFIG, prediction_type=prediction, clip_sample=False, variance_type="fixed_small")
    expected, scheduler = diffusers_loop(scheduler, network(prediction), 12, noise,
                                         generator=torch.Generator().manual_seed(3))
    got = ours(scheduler, network(prediction), 12, noise, sample_ddpm, prediction,
               generator=torch.Generator().manual_seed(3))
    assert (got - expected).abs().max() < 1e-4


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
def test_euler(prediction, spacing):
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    scheduler = EulerDiscreteScheduler(**SD_CONFIG, prediction_type=prediction, timestep_spacing=spacing,
                                       steps_offset=1)
    expected, scheduler = diffusers_loop(scheduler, network(prediction), 15, noise)
    denoiser = DiscreteDenoiser(network(prediction), scheduler.alphas_cumprod.to(torch.float64),
                                parameterization={"epsilon": "eps", "v_prediction": "v"}[prediction])
    sigmas = scheduler.sigmas.to(torch.float64)  # fractional timesteps for linspace: their sigmas exactly
    got = sample_euler(denoiser, noise * scheduler.init_noise_sigma, sigmas)
    assert (got - expected).abs().max() < 1e-4


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("steps", [8, 20])
def test_dpmpp_2m(prediction, steps):
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    scheduler = DPMSolverMultistepScheduler(**SD_CONFIG, prediction_type=prediction, algorithm_type="dpmsolver++",
                                            solver_order=2)
    expected, scheduler = diffusers_loop(scheduler, network(prediction), steps, noise)
    got = ours(scheduler, network(prediction), steps, noise, sample_dpmpp_2m, prediction)
    assert (got - expected).abs().max() < 1e-4


@pytest.mark.parametrize("spacing,offset", [("leading", 1), ("trailing", 0), ("linspace", 0)])
def test_timestep_spacings_match_diffusers(spacing, offset):
    for steps in (7, 25, 50):
        euler = EulerDiscreteScheduler(**SD_CONFIG, timestep_spacing=spacing, steps_offset=offset)
        euler.set_timesteps(steps)
        ddim = DDIMScheduler(**SD_CONFIG, timestep_spacing=spacing, steps_offset=offset)
        ddim.set_timesteps(steps)
        ours_euler = discrete_timesteps(steps, spacing=spacing, steps_offset=offset)
        ours_ddim = discrete_timesteps(steps, spacing=spacing, steps_offset=offset, round_linspace=True)
        assert torch.allclose(ours_euler.float(), euler.timesteps.float())
        assert torch.equal(ours_ddim.long(), ddim.timesteps.long())


@pytest.mark.parametrize("spacing,offset", [("leading", 1), ("trailing", 0), ("linspace", 0)])
def test_dpm_solver_timesteps_match_diffusers(spacing, offset):
    from artdiff.core.schedules import dpm_solver_timesteps

    for steps in (7, 20, 50):
        scheduler = DPMSolverMultistepScheduler(**SD_CONFIG, timestep_spacing=spacing, steps_offset=offset)
        scheduler.set_timesteps(steps)
        ours = dpm_solver_timesteps(steps, spacing=spacing, steps_offset=offset)
        assert torch.equal(ours.long(), scheduler.timesteps.long())
