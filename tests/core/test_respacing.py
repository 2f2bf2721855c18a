"""Respaced timesteps and tables equal improved-diffusion's for clip-diffusion-art's 14 --sampling choices."""

import math

import numpy as np
import pytest
import torch

from artdiff.core.respacing import learned_range_log_variance, respaced_diffusion, space_timesteps
from artdiff.core.schedules import alphas_cumprod, ddpm_betas
from openai_reference import linear_betas, spaced_process

T = 1000
COUNTS = (25, 50, 100, 150, 250, 500, 1000)  # clip-diffusion-art's --sampling: these and ddim of each


# improved-diffusion's names for the tables, in tests/openai_reference.py's spaced_process (its own construction).
REFERENCE_NAMES = {"betas": "betas", "alphas_cumprod": "abar", "alphas_cumprod_prev": "abar_prev",
                   "posterior_log_variance_clipped": "log_clipped", "posterior_mean_coef1": "coef1",
                   "posterior_mean_coef2": "coef2"}


def reference_tables(kept: list[int]) -> dict[str, np.ndarray]:
    """The respaced tables of the shared float64 reference, with beta-tilde (0 at the first kept step)."""
    process = spaced_process(linear_betas(T), kept)
    tables = {name: process[key] for name, key in REFERENCE_NAMES.items()}
    tables["posterior_variance"] = np.concatenate([[0.0], np.exp(process["log_clipped"][1:])])
    return tables


def expected_timesteps(choice: str) -> list[int]:
    """The kept timesteps written out: DDIM's stride 1000 / N, or N indices round(k (T - 1) / (N - 1))."""
    if choice.startswith("ddim"):
        return list(range(0, T, T // int(choice[4:])))
    n = int(choice)
    return sorted({round(k * (T - 1) / (n - 1)) for k in range(n)})


CHOICES = [str(n) for n in COUNTS] + [f"ddim{n}" for n in COUNTS if n != 150]


@pytest.mark.parametrize("choice", CHOICES)
def test_the_sampling_choices_keep_improved_diffusions_timesteps_and_tables(choice):
    kept = space_timesteps(T, choice)
    assert kept == expected_timesteps(choice)
    assert len(kept) == int(choice.removeprefix("ddim")) and kept[0] == 0
    spaced = respaced_diffusion(alphas_cumprod(ddpm_betas("linear", beta_start=1e-4, beta_end=0.02)), kept)
    assert spaced.timestep_map.tolist() == kept and spaced.timestep_map.dtype == torch.long
    for name, expected in reference_tables(kept).items():
        got = getattr(spaced, name).numpy()
        assert got.dtype == np.float64
        assert np.allclose(got, expected, rtol=1e-9, atol=0), name


def test_known_values_of_the_original():
    # Written out from improved-diffusion's space_timesteps for T = 1000.
    assert space_timesteps(T, "25")[:6] == [0, 42, 83, 125, 166, 208] and space_timesteps(T, "25")[-1] == 999
    assert space_timesteps(T, "ddim50")[:3] == [0, 20, 40] and space_timesteps(T, "ddim50")[-1] == 980
    sections = space_timesteps(T, "10,10,10")  # sections of 334, 333, 333 timesteps
    assert len(sections) == 30 and sections[8:12] == [296, 333, 334, 371] and sections[-1] == 999
    assert space_timesteps(T, " 10 , 10 ") == space_timesteps(T, "10,10") == space_timesteps(T, [10, 10])
    assert space_timesteps(10, "ddim3") == [0, 4, 8]  # the smallest stride wins: 4 (not 5, which gives 2)


def test_ddim150_names_the_nearest_counts_that_work():
    with pytest.raises(ValueError, match=r"ddim150.*ddim143 and ddim167.*'150'") as error:
        space_timesteps(T, "ddim150")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="nearest that can is ddim2"):
        space_timesteps(T, "ddim1")


@pytest.mark.parametrize("bad", ["", "ddim", "abc", "-5", "10,x", "1e3", "ddim-4", "10;10", "²"])
def test_bad_strings_name_the_accepted_forms(bad):
    with pytest.raises(ValueError, match="ddimN.*'N'.*10,10,10"):
        space_timesteps(T, bad)


def test_counts_beyond_a_section_or_none_at_all_are_refused():
    with pytest.raises(ValueError, match="1000 timesteps and cannot hold 1001 steps; use at most 1000"):
        space_timesteps(T, "1001")
    with pytest.raises(ValueError, match="section 2 of 2 covers 500 timesteps and cannot hold 501"):
        space_timesteps(T, "10,501")
    with pytest.raises(ValueError, match="keeps no timestep"):
        space_timesteps(T, "0,0")


def test_the_full_spacing_is_the_original_process():
    betas = ddpm_betas("linear", beta_start=1e-4, beta_end=0.02)
    spaced = respaced_diffusion(alphas_cumprod(betas), space_timesteps(T, "1000"))
    assert torch.allclose(spaced.betas, betas, rtol=1e-9)


def test_learned_range_runs_from_the_clipped_posterior_to_beta():
    spaced = respaced_diffusion(alphas_cumprod(ddpm_betas("linear", beta_start=1e-4, beta_end=0.02)),
                                space_timesteps(T, "ddim25"))
    v = torch.tensor([-1.0, 0.0, 1.0])
    for k in (0, 1, 12, 24):
        low, high = float(spaced.posterior_log_variance_clipped[k]), math.log(float(spaced.betas[k]))
        got = spaced.learned_range_log_variance(k, v)
        assert got.dtype == torch.float64
        assert torch.allclose(got, torch.tensor([low, (low + high) / 2, high], dtype=torch.float64), rtol=1e-12)
    # k = 0 takes k = 1's posterior variance (the true one is 0: x0 is known after the last step)
    assert spaced.posterior_variance[0] == 0
    assert spaced.posterior_log_variance_clipped[0] == spaced.posterior_log_variance_clipped[1]
    assert learned_range_log_variance(torch.tensor(0.5), -2.0, -4.0).item() == pytest.approx(0.75 * -2 + 0.25 * -4)


def test_a_single_kept_step_and_bad_kept_lists():
    spaced = respaced_diffusion(alphas_cumprod(ddpm_betas("linear", beta_start=1e-4, beta_end=0.02)), [0])
    assert torch.isfinite(spaced.posterior_log_variance_clipped).all()
    with pytest.raises(ValueError, match="distinct and within 0..999"):
        respaced_diffusion(alphas_cumprod(ddpm_betas("linear", beta_start=1e-4, beta_end=0.02)), [0, 1000])
