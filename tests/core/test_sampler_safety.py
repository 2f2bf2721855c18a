"""Every sampler refuses malformed sigmas and stops at the first step whose sample is NaN, infinite or exploding."""

from __future__ import annotations

import math

import pytest
import torch

from artdiff.core.samplers import SAMPLERS
from artdiff.core.schedules import ddpm_betas, karras_sigmas
from artdiff.errors import NonFiniteError, UserError


def poisoned(at_call: int, value: float):
    """A model_fn that denoises toward 0 and returns `value` everywhere from call `at_call` on; counts its calls."""
    calls = []

    def model_fn(x, sigma, **cond):
        calls.append(float(sigma.max()))
        out = x / (1 + append(sigma, x) ** 2)  # the exact denoiser of unit Gaussian data
        return out.fill_(value) if len(calls) > at_call else out

    return model_fn, calls


def append(sigma, x):
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("value", [math.nan, math.inf, 1e30])
def test_a_bad_step_stops_the_sampler_at_that_step(name, value):
    model_fn, calls = poisoned(2, value)
    sigmas = karras_sigmas(10, 0.03, 14.6)
    x = torch.randn(2, 4, 4, 4) * 14.6
    seen = []
    with pytest.raises(NonFiniteError, match="step") as caught:
        SAMPLERS[name](model_fn, x, sigmas, generator=torch.Generator().manual_seed(0),
                       callback=lambda step: seen.append(step.index))
    assert isinstance(caught.value, UserError)
    assert len(calls) <= 5, "the sampler ran on after the bad step"  # second-order samplers call twice a step
    assert len(seen) <= 2, "the callback saw the bad step"
    assert "guidance scale" in str(caught.value)  # the default suspects are named


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_a_healthy_run_passes_the_check_and_the_callback_sees_every_step(name):
    model_fn, _ = poisoned(10**9, 0.0)
    sigmas = karras_sigmas(6, 0.03, 14.6)
    seen = []
    x = SAMPLERS[name](model_fn, torch.randn(1, 4, 4, 4) * 14.6, sigmas, generator=torch.Generator().manual_seed(0),
                       callback=lambda step: seen.append(step.index))
    assert torch.isfinite(x).all() and seen == list(range(6))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("sigmas", [[14.6, 1.0, 0.0, 0.0], [14.6, 0.0, 1.0, 0.0], [1.0, math.nan, 0.0],
                                    [1.0, -0.5, 0.0], [[1.0, 0.0]]])
def test_malformed_sigmas_are_refused_before_any_model_call(name, sigmas):
    model_fn, calls = poisoned(10**9, 0.0)
    with pytest.raises(ValueError, match="sigmas"):
        SAMPLERS[name](model_fn, torch.randn(1, 4, 4, 4), torch.tensor(sigmas, dtype=torch.float64),
                       generator=torch.Generator().manual_seed(0))
    assert not calls


def test_nonfinite_error_takes_hints_first():
    error = NonFiniteError("sampling, at step 3 of 20", hints=["--cfg 1e30"])
    text = str(error)
    assert "\n" not in text and text.index("--cfg 1e30") < text.index("guidance scale")
    richer = error.with_hints(["a LoRA scale of 1e30"])
    assert "a LoRA scale of 1e30" in str(richer) and "--cfg 1e30" in str(richer)
    assert isinstance(richer, NonFiniteError)


@pytest.mark.parametrize("kind", ["linear", "scaled_linear"])
@pytest.mark.parametrize("start,end", [(0.0001, 5.0), (0.0, 0.02), (-0.1, 0.02), (0.0001, math.nan), (0.0001, 1.0)])
def test_ddpm_betas_outside_zero_one_are_refused(kind, start, end):
    with pytest.raises(ValueError, match="beta"):
        ddpm_betas(kind, beta_start=start, beta_end=end)


def test_ordinary_betas_still_build():
    for kind in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        betas = ddpm_betas(kind)
        assert ((betas > 0) & (betas < 1)).all()
