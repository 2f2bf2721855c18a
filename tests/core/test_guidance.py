"""Guidance wrappers: weighted-prompt algebra in one batched call, rescale, sigma range, gradient guidance."""

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

from artdiff.core.guidance import GuidanceConfig, WeightedCond, classifier_free, gradient_guidance


class Recorder:
    """A model whose x0 prediction is x * 0.5 + its condition vector, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, sigma, c):
        self.calls += 1
        return x * 0.5 + c[:, :, None, None]


def cond(value, batch=2):
    return {"c": torch.full((batch, 3), float(value))}


def test_weighted_prompt_algebra_in_one_forward():
    model = Recorder()
    x, sigma = torch.randn(2, 3, 4, 4), torch.full((2,), 5.0)
    guided = classifier_free(model, [WeightedCond(cond(2.0), 3.0), WeightedCond(cond(-1.0), -1.0)], cond(0.5),
                             GuidanceConfig(scale=2.0))
    u, c1, c2 = x * 0.5 + 0.5, x * 0.5 + 2.0, x * 0.5 - 1.0
    expected = u + 2.0 * (3.0 * (c1 - u) - 1.0 * (c2 - u))
    assert torch.allclose(guided(x, sigma), expected) and model.calls == 1


def test_scale_one_with_one_condition_is_the_conditional_model():
    model = Recorder()
    x, sigma = torch.randn(2, 3, 4, 4), torch.full((2,), 1.0)
    guided = classifier_free(model, [WeightedCond(cond(2.0))], cond(0.0), GuidanceConfig(scale=1.0))
    assert torch.allclose(guided(x, sigma), model(x, sigma, **cond(2.0)))


def test_conditions_of_different_shapes_are_called_separately():
    model = Recorder()
    x, sigma = torch.randn(2, 3, 4, 4), torch.full((2,), 1.0)
    wide = {"c": torch.ones(2, 3), "extra": torch.zeros(2, 7)}
    guided = classifier_free(lambda x, s, c, extra=None: model(x, s, c), [WeightedCond(wide)], cond(0.0),
                             GuidanceConfig(scale=3.0))
    guided(x, sigma)
    assert model.calls == 2


def test_guidance_only_inside_the_sigma_range():
    model = Recorder()
    x = torch.randn(2, 3, 4, 4)
    guided = classifier_free(model, [WeightedCond(cond(2.0))], cond(0.0),
                             GuidanceConfig(scale=7.0, sigma_range=(0.5, 3.0)))
    conditional = x * 0.5 + 2.0
    assert torch.allclose(guided(x, torch.full((2,), 10.0)), conditional)  # outside: the plain conditional
    assert torch.allclose(guided(x, torch.full((2,), 1.0)), x * 0.5 + 7.0 * 2.0)


def test_rescale_matches_diffusers_on_eps():
    x, sigma = torch.randn(2, 3, 8, 8), torch.full((2,), 2.0)
    model = lambda x, s, c: x * 0.3 + c[:, :, None, None] * torch.linspace(0, 1, 8)  # noqa: E731
    plain = classifier_free(model, [WeightedCond(cond(1.5))], cond(0.2), GuidanceConfig(scale=5.0))
    rescaled = classifier_free(model, [WeightedCond(cond(1.5))], cond(0.2), GuidanceConfig(scale=5.0, rescale=0.7))
    eps = lambda x0: (x - x0) / 2.0  # noqa: E731
    expected = rescale_noise_cfg(eps(plain(x, sigma)), eps(model(x, sigma, **cond(1.5))), guidance_rescale=0.7)
    assert torch.allclose(eps(rescaled(x, sigma)), expected, atol=1e-5)


def test_gradient_guidance():
    model = lambda x, sigma: x * 0.5  # noqa: E731
    x, sigma = torch.randn(2, 3, 4, 4), torch.full((2,), 2.0)
    flat = gradient_guidance(model, lambda x0, s: x0.sum() * 0.0)
    assert torch.equal(flat(x, sigma), model(x, sigma))
    target = torch.ones_like(x)
    pulled = gradient_guidance(model, lambda x0, s: ((x0 - target) ** 2).sum(), scale=0.1)(x, sigma)
    assert (pulled - target).abs().mean() < (model(x, sigma) - target).abs().mean()


def test_gradient_guidance_inside_a_sampler_with_parameters_and_a_condition():
    # Samplers run under inference_mode; the guided model has weights that require grad and a condition
    # tensor, all of which autograd must be allowed to save.
    from artdiff.core.samplers import sample_euler

    torch.manual_seed(0)
    layer = torch.nn.Conv2d(3, 3, 1)
    model = lambda x, sigma, c: layer(x) * 0.1 + c[:, :, None, None]  # noqa: E731
    c = torch.zeros(2, 3)
    sigmas, x = torch.tensor([2.0, 1.0, 0.5, 0.0]), torch.randn(2, 3, 4, 4) * 2.0
    target = torch.full_like(x, 0.7)
    pulled = gradient_guidance(model, lambda x0, s: ((x0 - target) ** 2).sum(), scale=0.2)
    free = sample_euler(model, x, sigmas, extra={"c": c})
    steered = sample_euler(pulled, x, sigmas, extra={"c": c})
    assert (steered - target).abs().mean() < (free - target).abs().mean()


def test_conditions_are_batched_once_for_the_whole_run():
    seen = []
    model = lambda x, sigma, c: seen.append(c) or x * 0.5 + c[:, :, None, None]  # noqa: E731
    guided = classifier_free(model, [WeightedCond(cond(2.0))], cond(0.0), GuidanceConfig(scale=3.0))
    x = torch.randn(2, 3, 4, 4)
    for sigma in (5.0, 1.0):
        guided(x, torch.full((2,), sigma))
    assert seen[0] is seen[1] and seen[0].shape == (4, 3)
