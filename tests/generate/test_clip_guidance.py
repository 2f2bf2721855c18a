"""The CLIP guidance wrapper on a tiny pixel UNet and a tiny CLIP: gradient direction, clamping, non-finite steps."""

import pytest
import torch
from diffusers import UNet2DModel

from artdiff.generate.clip_guidance import (
    ClipGuidanceConfig,
    EncoderPrompts,
    GuidanceStats,
    _guidance_gradient,
    clip_guided,
)
from artdiff.generate.pixel_sample import make_pixel_denoiser, pixel_sigmas
from artdiff.models.encoders import load_encoder
from artdiff.models.model_info import ModelInfo

from model_fixtures import tiny_encoder

SIZE = 16


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    folder = tiny_encoder(tmp_path_factory.mktemp("enc") / "encoder", ["a red square", "a blue circle"])
    return load_encoder(folder)


@pytest.fixture(scope="module")
def denoiser():
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=SIZE, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4).eval()
    info = ModelInfo(kind="unconditional", parameterization="eps",
                     schedule={"type": "discrete", "beta_schedule": "linear", "num_train_timesteps": 1000},
                     conditioning={"type": "none"}, extra={"image_size": SIZE, "variance": "fixed_large"})
    return make_pixel_denoiser(unet, info)


def prompts(encoder, text="a red square"):
    return [EncoderPrompts(encoder=encoder, embeddings=encoder.embed_text([text]), weights=torch.ones(1))]


def plain(**overrides):
    # Fixed cutouts and no clamp: a deterministic loss whose exact gradient the wrapper should follow.
    return ClipGuidanceConfig(**{"fixed_cutouts": True, "clamp_max": None, "cutn": 4, "cutn_batches": 1,
                                 "tv_scale": 0, "range_scale": 0, **overrides})


def loss_at(x, sigma, denoiser, encoder, cfg):
    value = lambda name, step, t: cfg.schedules()[name].at(step, steps=10, timestep=t)  # noqa: E731
    with torch.enable_grad():
        x_in = x.clone().requires_grad_()
        _, total = _guidance_gradient(x_in, denoiser(x_in, sigma), sigma, prompts(encoder), cfg, step=0, t=500,
                                      value=value, generator=torch.Generator().manual_seed(0), decode=None)
    return total


def test_a_guided_step_lowers_the_loss(denoiser, encoder):
    cfg = plain(tv_scale=10, range_scale=10)
    sigmas = pixel_sigmas(denoiser, steps=10)
    sigma = sigmas[3:4]
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * float(sigma)
    guided = clip_guided(denoiser, prompts(encoder), cfg, sigmas=sigmas, timestep_of=denoiser.sigma_to_t,
                         generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        shift = (guided(x, sigma) - denoiser(x, sigma)) / float(sigma) ** 2  # g = -d loss / d x
    assert shift.abs().max() > 0
    step = 1e-3 / float(shift.abs().max())
    before = loss_at(x, sigma, denoiser, encoder, cfg)
    assert loss_at(x + step * shift, sigma, denoiser, encoder, cfg) < before
    assert loss_at(x - step * shift, sigma, denoiser, encoder, cfg) > before


def test_the_clamp_caps_each_images_gradient_rms_in_x_t_units(denoiser, encoder):
    sigmas = pixel_sigmas(denoiser, steps=10)
    sigma = sigmas[2:3]
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2)) * float(sigma)
    guided = clip_guided(denoiser, prompts(encoder), plain(clamp_max=1e-6, clip_guidance_scale=1e6), sigmas=sigmas,
                         timestep_of=denoiser.sigma_to_t, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        g = (guided(x, sigma) - denoiser(x, sigma)) / float(sigma) ** 2
    g_t = g * (1 + float(sigma) ** 2) ** 0.5
    rms = g_t.square().mean(dim=(1, 2, 3)).sqrt()
    assert torch.all(rms <= 1e-6 * 1.01) and torch.all(rms > 1e-7)  # read back by a float32 subtraction


def test_a_non_finite_gradient_skips_the_step_and_is_counted(denoiser, encoder):
    sigmas = pixel_sigmas(denoiser, steps=10)
    sigma = sigmas[2:3]
    bad = [EncoderPrompts(encoder=encoder, embeddings=torch.full((1, encoder.dim), float("nan")),
                          weights=torch.ones(1))]
    stats = GuidanceStats()
    guided = clip_guided(denoiser, bad, plain(), sigmas=sigmas, timestep_of=denoiser.sigma_to_t,
                         generator=torch.Generator().manual_seed(0), stats=stats)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3)) * float(sigma)
    with torch.no_grad():
        out = guided(x, sigma)
        assert torch.equal(out, denoiser(x, sigma)) and torch.isfinite(out).all()
    assert (stats.calls, stats.skipped) == (1, 2)


@pytest.mark.parametrize("overrides, message", [
    ({"cutn_batches": 0}, "--cutn-batches must be a whole number from 1 to 64"),
    ({"clamp_max": -1.0}, "--clamp-max must be a positive number"),
    ({"scale_multiplier": float("nan")}, "--scale-multiplier must be a positive number"),
    ({"cutouts": "dango"}, "--cutouts must be cda or disco"),
])
def test_bad_settings_are_one_line(overrides, message):
    with pytest.raises(ValueError, match=message):
        ClipGuidanceConfig(**overrides)


def test_a_schedule_of_the_wrong_length_fails_before_sampling(denoiser, encoder):
    cfg = ClipGuidanceConfig(cutouts="disco", cut_overview="[4]*30", fixed_cutouts=True)
    with pytest.raises(ValueError, match="30 entries"):
        clip_guided(denoiser, prompts(encoder), cfg, sigmas=pixel_sigmas(denoiser, steps=10),
                    timestep_of=denoiser.sigma_to_t, generator=torch.Generator())


def test_cut_batches_in_one_encoder_call_equal_one_call_each(denoiser, encoder, monkeypatch):
    import artdiff.generate.clip_guidance as module

    sigmas = pixel_sigmas(denoiser, steps=10)
    sigma = sigmas[3:4]
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4)) * float(sigma)
    cfg = ClipGuidanceConfig(cutn=4, cutn_batches=3, tv_scale=0, range_scale=0, clamp_max=None)
    results = []
    for per_call in (1000, 4):  # all three batches together, then one batch per call
        monkeypatch.setattr(module, "MAX_CUTS_PER_CALL", per_call)
        guided = clip_guided(denoiser, prompts(encoder), cfg, sigmas=sigmas, timestep_of=denoiser.sigma_to_t,
                             generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            results.append(guided(x, sigma) - denoiser(x, sigma))
    assert results[0].abs().max() > 0
    assert torch.allclose(results[0], results[1], rtol=1e-4, atol=1e-6 * float(results[0].abs().max()))
