"""core.samplers' ddpm and ddim over respaced sigmas follow improved-diffusion's p_sample / ddim_sample loops.

The reference (tests/openai_reference.py) works in variance-preserving coordinates in float64; our samplers work in
variance-exploding ones (x_ve = x_vp / sqrt(abar)) in float32 on the same noise, so every step is compared.
"""

import pytest
import torch

from artdiff.core.denoisers import DiscreteDenoiser, clamp_denoised
from artdiff.core.respacing import respaced_diffusion, space_timesteps
from artdiff.core.samplers import sample_ddim, sample_ddpm
from artdiff.core.schedules import alphas_cumprod, append_zero, ddpm_betas
from openai_reference import linear_betas, sample, spaced_process, toy_network

SHAPE = (2, 3, 4, 4)
ALPHAS_BAR = alphas_cumprod(ddpm_betas("linear", beta_start=1e-4, beta_end=0.02))


def generators(seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(SHAPE[0])]


def ours(spacing: str, method: str, *, variance: str = "learned_range", eta: float = 0.0, clip: bool = False,
         skip: int = 0, init: torch.Tensor | None = None, learned: bool = True, seen: list | None = None):
    """Our sampler's per-step samples, moved to VP coordinates to compare with the reference."""
    denoiser = DiscreteDenoiser(toy_network(learned=learned, seen=seen), ALPHAS_BAR, learned_variance=learned)
    spaced = respaced_diffusion(ALPHAS_BAR, space_timesteps(1000, spacing))
    sigmas = append_zero(spaced.sigmas.flip(0))[skip:]
    gens = generators()
    noise = torch.cat([torch.randn((1, *SHAPE[1:]), generator=g) for g in gens])
    sigma = float(sigmas[0])
    if init is not None:
        x = init + sigma * noise  # q_sample(init, t_start, noise) in VE coordinates
    elif skip:
        x = sigma * noise  # the fork's q_sample of zeros
    else:
        x = noise * (1 + sigma**2) ** 0.5  # pure VP noise
    model_fn, variance_fn = denoiser, denoiser.raw
    if clip:
        model_fn, variance_fn = clamp_denoised(model_fn), clamp_denoised(variance_fn)
    steps = []

    def keep(step):
        s_next = float(sigmas[step.index + 1])
        steps.append(step.x.double() / (1 + s_next**2) ** 0.5)

    if method == "ddpm":
        kind = "learned" if variance == "learned_range" else variance
        sample_ddpm(model_fn, x, sigmas, generator=gens, callback=keep, variance=kind, variance_fn=variance_fn)
    else:
        sample_ddim(model_fn, x, sigmas, generator=gens, callback=keep, eta=eta)
    return steps


def reference(spacing: str, method: str, *, skip: int = 0, init=None, clip: bool = False, **options):
    process = spaced_process(linear_betas(), space_timesteps(1000, spacing))
    return sample(toy_network(learned=options.get("learned", True)), process, SHAPE, method=method,
                  generators=generators(), skip=skip, init=init, clip_denoised=clip, **options)


def assert_same(got, expected):
    assert len(got) == len(expected)
    for k, (a, b) in enumerate(zip(got, expected)):
        assert (a - b).abs().max() < 2e-5 * (1 + b.abs().max()), f"step {k}"


@pytest.mark.parametrize("variance", ["learned_range", "fixed_small", "fixed_large"])
@pytest.mark.parametrize("clip", [False, True])
def test_ddpm_matches_p_sample_on_respaced_steps(variance, clip):
    assert_same(ours("25", "ddpm", variance=variance, clip=clip), reference("25", "ddpm", variance=variance, clip=clip))


@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_matches_ddim_sample_on_respaced_steps(eta, clip):
    assert_same(ours("ddim25", "ddim", eta=eta, clip=clip), reference("ddim25", "ddim", eta=eta, clip=clip))


def test_sectioned_spacing_and_an_unlearned_network():
    got = ours("5,3,4", "ddpm", variance="fixed_small", learned=False)
    assert_same(got, reference("5,3,4", "ddpm", variance="fixed_small", learned=False))


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
@pytest.mark.parametrize("with_init", [False, True])
def test_skip_steps_start_where_the_fork_starts(method, with_init):
    init = torch.linspace(-0.8, 0.8, 2 * 3 * 4 * 4).reshape(SHAPE) if with_init else None
    options = {"eta": 0.5} if method == "ddim" else {}
    got = ours("ddim25", method, skip=5, init=init, **options)
    expected = reference("ddim25", method, skip=5, init=init, **options)
    assert len(got) == 20
    assert_same(got, expected)


def test_clipping_changes_the_sample_of_a_network_that_overshoots():
    assert (ours("25", "ddpm", clip=True)[-1] - ours("25", "ddpm")[-1]).abs().max() > 1e-3


def test_the_network_sees_the_original_integer_timesteps():
    seen = []
    ours("ddim50", "ddim", seen=seen)
    t = torch.stack(seen)[:, 0].double()
    assert t.tolist() == [float(v) for v in range(980, -1, -20)]  # exactly, though sigma reaches it as float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_table_sigma_in_the_samples_dtype_maps_to_its_integer_timestep(dtype):
    denoiser = DiscreteDenoiser(toy_network(), ALPHAS_BAR)
    sigma = denoiser.sigma_table.to(dtype)  # interpolating float32 sigmas gave 19 of the 1000 t off by up to 8e-6
    assert denoiser.sigma_to_t(sigma).tolist() == [float(k) for k in range(1000)]
    for start in range(0, 1000, 50):  # the CPU step path takes up to 64 sigmas at a time
        _, t = denoiser._scalings(sigma[start:start + 50], torch.zeros(50, 3, dtype=dtype))
        assert t.tolist() == [float(k) for k in range(start, start + 50)]
    between = (denoiser.sigma_table[[500]] * 0.5 + denoiser.sigma_table[[501]] * 0.5).to(dtype)
    assert 500.3 < float(denoiser.sigma_to_t(between)) < 500.7  # other sigmas still interpolate


def test_half_precision_sigmas_that_merge_table_entries_keep_interpolating():
    denoiser = DiscreteDenoiser(toy_network(), ALPHAS_BAR)
    assert denoiser._exact_timesteps(torch.bfloat16) is None  # bfloat16 (8 bits) merges neighbouring sigmas
    t = denoiser.sigma_to_t(denoiser.sigma_table[[100, 700]].bfloat16())
    assert (t.float() - torch.tensor([100.0, 700.0])).abs().max() < 2


def test_clamp_denoised_clamps_x0_and_keeps_the_variance_channels():
    x = torch.full((1, 3, 2, 2), 5.0)
    assert clamp_denoised(lambda x, sigma: x)(x, None).max() == 1.0
    x0, v = clamp_denoised(lambda x, sigma: (x, x * 2))(x, None)
    assert x0.max() == 1.0 and v.max() == 10.0
