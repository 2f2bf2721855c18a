"""sample_pixels on tiny random UNet2DModels: improved-diffusion's loops exactly, per-seed images, every sampler."""

import pytest
import torch
from diffusers import UNet2DModel

from artdiff.core.respacing import space_timesteps
from artdiff.core.samplers import SAMPLERS
from artdiff.core.schedules import alphas_cumprod, ddpm_betas
from artdiff.errors import NonFiniteError, UserError
from artdiff.generate.pixel_sample import make_pixel_denoiser, pixel_sigmas, sample_pixels
from artdiff.models.model_info import ModelInfo
from artdiff.models.pixel.pixel_model import check_makeable_size
from openai_reference import linear_betas, sample, spaced_process

SIZE = 16


def tiny_unet(*, learned: bool = True, classes: int | None = None) -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(sample_size=SIZE, in_channels=3, out_channels=6 if learned else 3, layers_per_block=1,
                       block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=8,
                       num_class_embeds=classes).eval()


def info(*, variance: str = "learned_range", T: int = 1000, rescale: bool = False, classes: int | None = None,
         parameterization: str = "eps") -> ModelInfo:
    conditioning = {"type": "class-label", "num_classes": classes} if classes else {"type": "none"}
    return ModelInfo(kind="unconditional", parameterization=parameterization,
                     schedule={"type": "discrete", "beta_schedule": "linear", "beta_start": 1e-4 * 1000 / T,
                               "beta_end": 0.02 * 1000 / T, "num_train_timesteps": T},
                     conditioning=conditioning,
                     extra={"image_size": SIZE, "variance": variance, "rescale_timesteps": rescale,
                            "pixel_range": [-1, 1]})


def test_images_are_in_range_and_each_seed_is_its_own_image():
    unet = tiny_unet()
    three = sample_pixels(unet, info(), seeds=[3, 4, 5], sampler="ddpm", respacing="ddim10")
    one = sample_pixels(unet, info(), seeds=[4], sampler="ddpm", respacing="ddim10")
    assert three.shape == (3, 3, SIZE, SIZE) and three.dtype == torch.float32
    assert three.min() >= 0 and three.max() <= 1 and three.std() > 0.01
    assert (three[1] - one[0]).abs().max() < 1e-4  # the same image whatever the batch (up to float rounding)
    assert (three[0] - three[1]).abs().max() > 0.05


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_runs(sampler):
    steps = []
    images = sample_pixels(tiny_unet(), info(), seeds=[0], steps=3, sampler=sampler, callback=steps.append)
    assert images.shape == (1, 3, SIZE, SIZE) and torch.isfinite(images).all()
    assert len(steps) == 3


def test_a_model_without_a_variance_samples_with_fixed_large_as_it_loads():
    unet, plain = tiny_unet(learned=False), info(variance="fixed_large")
    plain.extra.pop("variance")  # PixelModel.variance, model_info and training read a missing one as fixed_large
    unset = sample_pixels(unet, plain, seeds=[1], sampler="ddpm", respacing="8")
    large = sample_pixels(unet, info(variance="fixed_large"), seeds=[1], sampler="ddpm", respacing="8")
    small = sample_pixels(unet, info(variance="fixed_small"), seeds=[1], sampler="ddpm", respacing="8")
    assert torch.equal(unset, large) and not torch.equal(unset, small)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_fixed_variance_models_sample_with_their_variance(variance):
    unet = tiny_unet(learned=False)
    small = sample_pixels(unet, info(variance=variance), seeds=[1], sampler="ddpm", respacing="8")
    assert small.shape == (1, 3, SIZE, SIZE)
    with pytest.raises(UserError, match="variance learned_range but the UNet has 3 output channels"):
        sample_pixels(unet, info(), seeds=[1])


def reference_images(unet, model_info, spacing, T, method, **options):
    """improved-diffusion's loop (tests/openai_reference.py) on the same UNet and seeds."""
    labels = options.pop("class_labels", None)
    seeds = options.pop("seeds")
    init = options.pop("init", None)
    scale = 1000 / T if model_info.extra["rescale_timesteps"] else 1.0
    process = spaced_process(linear_betas(T), space_timesteps(T, spacing))

    def network(x, t, **cond):
        return unet(x, t, class_labels=labels).sample

    steps = sample(network, process, (len(seeds), 3, SIZE, SIZE), method=method,
                   generators=[torch.Generator().manual_seed(s) for s in seeds], time_scale=scale,
                   init=None if init is None else init * 2 - 1, **options)
    return ((steps[-1] + 1) / 2).clamp(0, 1).float()


def test_learned_ddpm_equals_p_sample_with_rescaled_timesteps_labels_and_clipping():
    unet = tiny_unet(classes=4)
    model_info = info(T=500, rescale=True, classes=4)  # the network sees 2 t
    labels = torch.tensor([1, 3])
    got = sample_pixels(unet, model_info, seeds=[7, 8], sampler="ddpm", respacing="6,4", clip_denoised=True,
                        class_labels=labels)
    expected = reference_images(unet, model_info, "6,4", 500, "ddpm", seeds=[7, 8], clip_denoised=True,
                                class_labels=labels)
    assert (got - expected).abs().max() < 1e-5


@pytest.mark.parametrize("with_init", [False, True])
def test_ddim_with_skip_steps_equals_the_forks_loop(with_init):
    unet = tiny_unet()
    init = torch.linspace(0, 1, SIZE)[None, None, None, :].expand(2, 3, SIZE, SIZE) if with_init else None
    got = sample_pixels(unet, info(), seeds=[5, 6], sampler="ddim", eta=0.5, respacing="ddim20", skip_steps=6,
                        init_images=init)
    expected = reference_images(unet, info(), "ddim20", 1000, "ddim", seeds=[5, 6], eta=0.5, skip=6, init=init,
                                clip_denoised=True)  # artdiff's default, as in improved-diffusion's image_sample
    assert (got - expected).abs().max() < 1e-5


def test_class_labels_change_the_image_and_are_checked():
    unet = tiny_unet(classes=3)
    model_info = info(classes=3)
    a = sample_pixels(unet, model_info, seeds=[0], steps=4, class_labels=torch.tensor([0]))
    b = sample_pixels(unet, model_info, seeds=[0], steps=4, class_labels=torch.tensor([2]))
    assert (a - b).abs().max() > 1e-3
    with pytest.raises(UserError, match="class-conditional \\(3 classes\\): give a class label"):
        sample_pixels(unet, model_info, seeds=[0], steps=4)
    with pytest.raises(UserError, match="classes 0 to 2"):
        sample_pixels(unet, model_info, seeds=[0], steps=4, class_labels=torch.tensor([3]))
    with pytest.raises(UserError, match="not class-conditional"):
        sample_pixels(tiny_unet(), info(), seeds=[0], steps=4, class_labels=torch.tensor([0]))


def test_an_init_image_with_skipped_steps_keeps_its_structure():
    unet = tiny_unet()
    init = torch.linspace(0, 1, SIZE)[None, None, None, :].expand(1, 3, SIZE, SIZE)
    kept = sample_pixels(unet, info(), seeds=[2], respacing="ddim25", skip_steps=22, init_images=init)
    plain = sample_pixels(unet, info(), seeds=[2], respacing="ddim25")
    assert (kept - init).square().mean() < 0.3 * (plain - init).square().mean()


def test_pixel_sigmas_respacing_skip_and_karras():
    denoiser = make_pixel_denoiser(tiny_unet(), info())
    sigmas = pixel_sigmas(denoiser, steps=99, respacing="ddim50")
    assert len(sigmas) == 51 and sigmas[-1] == 0 and torch.equal(sigmas[:-1], denoiser.sigma_table[0:1000:20].flip(0))
    assert torch.equal(pixel_sigmas(denoiser, steps=99, respacing="ddim50", skip_steps=5), sigmas[5:])
    assert len(pixel_sigmas(denoiser, steps=7)) == 8 and len(pixel_sigmas(denoiser, steps=7, karras=True)) == 8
    # without --respacing: trailing steps 999, 979, ..., 19 (full noise first), not ddim50's 980, ..., 0
    assert torch.equal(pixel_sigmas(denoiser, steps=50)[:-1], denoiser.sigma_table[torch.arange(999, 0, -20)])
    with pytest.raises(UserError, match="--karras .* --respacing ddim50"):
        pixel_sigmas(denoiser, steps=7, respacing="ddim50", karras=True)
    with pytest.raises(UserError, match="--skip-steps 50: sampling has 50 steps here; skip from 0 to 49"):
        pixel_sigmas(denoiser, steps=7, respacing="ddim50", skip_steps=50)


@pytest.mark.parametrize("spacing", ["ddim25", "250", "10,10,10", " 50 "])
def test_respacing_strings_are_accepted(spacing):
    denoiser = make_pixel_denoiser(tiny_unet(), info())
    assert len(pixel_sigmas(denoiser, steps=1, respacing=spacing)) - 1 == sum(
        int(c) for c in spacing.removeprefix("ddim").split(","))


@pytest.mark.parametrize(("spacing", "message"), [("ddim150", "ddim143 and ddim167"), ("fast", "ddimN"),
                                                  ("1001", "at most 1000"), ("0", "keeps no timestep")])
def test_respacing_strings_are_refused_in_one_line(spacing, message):
    with pytest.raises(UserError, match=message) as error:
        sample_pixels(tiny_unet(), info(), seeds=[0], respacing=spacing)
    assert "\n" not in str(error.value) and str(error.value).startswith(f"--respacing {spacing!r}")


def test_bad_requests_are_one_line():
    unet = tiny_unet()
    with pytest.raises(UserError) as error:
        sample_pixels(unet, info(), seeds=[0], size=15)
    with pytest.raises(UserError) as shared:  # the one rule for sides a UNet2DModel makes (models.pixel)
        check_makeable_size(unet, 15)
    assert str(error.value) == str(shared.value) and "multiples of 2 px" in str(error.value)
    assert sample_pixels(unet, info(), seeds=[0], steps=2, size=(8, 12)).shape == (1, 3, 8, 12)
    with pytest.raises(UserError, match="unknown sampler"):
        sample_pixels(unet, info(), seeds=[0], sampler="lms")
    with pytest.raises(UserError, match=r"init images must be \(1, 3, 16, 16\)"):
        sample_pixels(unet, info(), seeds=[0], init_images=torch.zeros(1, 3, 8, 8))
    with pytest.raises(UserError, match="--steps 1001"):
        sample_pixels(unet, info(), seeds=[0], steps=1001)


def test_x0_parameterization_and_the_denoisers_schedule():
    unet = tiny_unet()
    denoiser = make_pixel_denoiser(unet, info(parameterization="x0", T=500))
    expected = alphas_cumprod(ddpm_betas("linear", num_train_timesteps=500, beta_start=2e-4, beta_end=0.04))
    assert torch.allclose(denoiser.sigma_table, ((1 - expected) / expected).sqrt())
    x = torch.randn(1, 3, SIZE, SIZE)
    sigma = denoiser.sigma_table[[100]].float()
    with torch.no_grad():
        x0 = denoiser(x, sigma)
        direct = unet(x / (1 + sigma**2).sqrt(), torch.tensor([100.0])).sample[:, :3]
    assert torch.allclose(x0, direct, atol=1e-6)


def test_a_runaway_sample_names_the_callers_hints():
    unet = tiny_unet()
    with torch.no_grad():
        unet.conv_out.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="likely cause: --flags X") as error:
        sample_pixels(unet, info(), seeds=[0], steps=3, hints=["--flags X"])
    assert "at step 1 of 3" in str(error.value)


def test_a_half_precision_unet_samples_with_a_float32_state():
    unet = tiny_unet()
    full = sample_pixels(unet, info(), seeds=[0], respacing="ddim5")
    half = sample_pixels(unet.half(), info(), seeds=[0], respacing="ddim5")
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert (half - full).abs().mean() < 0.05


def cosine_info() -> ModelInfo:
    model_info = info()
    model_info.schedule = {"type": "discrete", "beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 1000}
    return model_info


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_clamps_the_predicted_image_by_default(sampler):
    # A cosine schedule's trailing first step has sigma ~ 2e4: unclamped, any eps error becomes a wild x0 and the
    # sample is noise (a trained artdiff-pixel-mini gave pure noise until clip_denoised became the default).
    unet, model_info, first = tiny_unet(), cosine_info(), []
    default = sample_pixels(unet, model_info, seeds=[0], steps=4, sampler=sampler,
                            callback=lambda step: first.append(step.denoised) if not first else None)
    assert first[0].abs().max() <= 1.0
    assert torch.equal(default, sample_pixels(unet, model_info, seeds=[0], steps=4, sampler=sampler,
                                              clip_denoised=True))
    unclamped = []
    sample_pixels(unet, model_info, seeds=[0], steps=4, sampler=sampler, clip_denoised=False,
                  callback=lambda step: unclamped.append(step.denoised) if not unclamped else None)
    assert unclamped[0].abs().max() > 10  # what the default guards against
