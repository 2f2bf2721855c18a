"""Sampling never ends in a division by zero, a black image or an OOM kill: every sampler x Karras on every model kind."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from artdiff.cli.main import main
from artdiff.core.samplers import SAMPLERS
from artdiff.errors import NonFiniteError, UserError
from artdiff.generate.sample import sample_from_embeddings
from artdiff.generate.sd_sample import sample_sd, sd_denoiser, sd_sigmas
from artdiff.models.embedding_ldm import build_embedding_unet, unet_preset
from artdiff.models.latents import Latents
from artdiff.models.stable_diffusion import StableDiffusion, schedule_from_scheduler_config
from artdiff.models.vae_specs import build_vae, vae_preset
from artdiff.utils import memory
from iv_fixtures import tiny_iv
from sd_fixtures import SD_SCHEDULER, tiny_sd, tiny_sd_vae, tiny_unet

from helpers import pattern, save

SAMPLER_NAMES = sorted(SAMPLERS)
SCHEDULES = {"discrete": {"type": "discrete", "beta_schedule": "scaled_linear", "num_train_timesteps": 1000},
             "cosine": {"type": "cosine"}}


def tiny_model(kind: str) -> tuple[StableDiffusion, torch.Tensor]:
    """A tiny SD (77 text tokens) or image-variation model (one image-embedding token) and a condition for it."""
    schedule, parameterization = schedule_from_scheduler_config(SD_SCHEDULER)
    model = StableDiffusion(None, tiny_unet(), tiny_sd_vae(), None, None, 0.18215, schedule, parameterization, "0")
    tokens = 77 if kind == "sd" else 1
    return model, torch.randn(1, tokens, 32, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def sd():
    return tiny_model("sd")


@pytest.fixture(scope="module")
def embedding_model():
    torch.manual_seed(0)
    unet = build_embedding_unet(unet_preset("tiny"), embed_dim=32, sample_size=8).eval()
    torch.manual_seed(1)
    return unet, Latents(build_vae(vae_preset("tiny")).eval(), scale=1.0)


def assert_real_images(images: torch.Tensor, count: int) -> None:
    assert images.shape[0] == count and torch.isfinite(images).all()
    for image in images:
        assert float(image.std()) > 1e-3, "a flat (black) image"


@pytest.mark.parametrize("karras", [False, True])
@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
@pytest.mark.parametrize("kind", ["sd", "image-variation"])
def test_every_sampler_with_and_without_karras_gives_real_images(kind, sampler, karras):
    model, cond = tiny_model(kind)
    images = sample_sd(model, cond, torch.zeros_like(cond), seeds=[1, 2], height=16, width=16, steps=4,
                       cfg_scale=5.0, sampler=sampler, karras=karras, eta=1.0 if sampler == "ddim" else 0.0)
    assert_real_images(images, 2)


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_karras_sigmas_descend_to_exactly_one_zero(sd, sampler):
    model, _ = sd
    sigmas = sd_sigmas(sd_denoiser(model), model.schedule, 5, sampler, karras=True)
    assert float(sigmas[-1]) == 0 and (sigmas[:-1] > 0).all() and (sigmas[1:] < sigmas[:-1]).all()
    assert len(sigmas) == 6


@pytest.mark.parametrize("karras", [False, True])
@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_embedding_models_with_every_sampler_and_karras(embedding_model, schedule, sampler, karras):
    unet, latents = embedding_model
    prompt_sets = [[(torch.randn(1, 32, generator=torch.Generator().manual_seed(i)), 1.0)] for i in range(2)]
    images = sample_from_embeddings(unet, latents, SCHEDULES[schedule], "v", prompt_sets, cfg_scale=3.0, steps=3,
                                    seed=0, latent_size=8, sampler=sampler, karras=karras)
    assert_real_images(images, 2)


@pytest.mark.parametrize("karras", [False, True])
@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_steps_beyond_the_schedule_or_below_one_are_one_clear_line(sd, embedding_model, sampler, karras):
    model, cond = sd
    for steps in (100000, 1001, 0, -3):
        with pytest.raises(UserError, match=r"--steps .*between 1 and 1000"):
            sample_sd(model, cond, cond, seeds=[0], height=16, width=16, steps=steps, cfg_scale=5.0,
                      sampler=sampler, karras=karras)
    unet, latents = embedding_model
    with pytest.raises(UserError, match=r"--steps .*between 1 and 1000"):
        sample_from_embeddings(unet, latents, SCHEDULES["discrete"], "v", [[(cond[0, :1], 1.0)]], cfg_scale=3.0,
                               steps=100000, seed=0, latent_size=8, sampler=sampler, karras=karras)
    # steps=1 is the smallest request and works everywhere
    images = sample_sd(model, cond, torch.zeros_like(cond), seeds=[0], height=16, width=16, steps=1, cfg_scale=5.0,
                       sampler=sampler, karras=karras)
    assert torch.isfinite(images).all()
    for schedule in SCHEDULES.values():
        images = sample_from_embeddings(unet, latents, schedule, "v", [[(cond[0, :1], 1.0)]], cfg_scale=3.0, steps=1,
                                        seed=0, latent_size=8, sampler=sampler, karras=karras)
        assert torch.isfinite(images).all()


@pytest.mark.parametrize("cfg", [math.nan, math.inf, -math.inf])
def test_a_non_finite_guidance_scale_is_refused_before_sampling(sd, cfg):
    model, cond = sd
    with pytest.raises(UserError, match="cfg"):
        sample_sd(model, cond, cond, seeds=[0], height=16, width=16, steps=2, cfg_scale=cfg, sampler="euler")


def test_an_exploding_guidance_scale_stops_with_the_cause(sd):
    model, cond = sd
    with pytest.raises(NonFiniteError, match=r"step 1 of 4.*1e\+30"):
        sample_sd(model, cond, torch.zeros_like(cond), seeds=[0], height=16, width=16, steps=4, cfg_scale=1e30,
                  sampler="dpm++2m")


def test_non_finite_conditioning_is_refused_with_the_callers_hints(sd):
    model, cond = sd
    bad = cond.clone()
    bad[0, 3, 0] = math.inf
    with pytest.raises(NonFiniteError, match="an embedding file") as caught:
        sample_sd(model, bad, torch.zeros_like(cond), seeds=[0], height=16, width=16, steps=2, cfg_scale=5.0,
                  hints=["an embedding file"])
    assert "conditioning" in str(caught.value)


def test_a_poisoned_unet_stops_sampling_naming_the_hint():
    model, cond = tiny_model("sd")
    with torch.no_grad():
        model.unet.conv_out.weight[0, 0, 0, 0] = 1e38  # what a LoRA scale of 1e30 does to a weight
    for sampler in SAMPLER_NAMES:
        with pytest.raises(NonFiniteError, match="a LoRA scale of 1e30"):
            sample_sd(model, cond, torch.zeros_like(cond), seeds=[0], height=16, width=16, steps=3, cfg_scale=5.0,
                      sampler=sampler, hints=["a LoRA scale of 1e30"])


def test_a_broken_vae_is_caught_before_an_image_is_returned(embedding_model):
    model, cond = tiny_model("sd")
    with torch.no_grad():
        model.vae.decoder.conv_out.bias.fill_(math.nan)
    with pytest.raises(NonFiniteError, match="decod"):
        sample_sd(model, cond, torch.zeros_like(cond), seeds=[0], height=16, width=16, steps=2, cfg_scale=5.0)
    unet, _ = embedding_model
    torch.manual_seed(1)
    vae = build_vae(vae_preset("tiny")).eval()
    with torch.no_grad():
        vae.decoder.conv_out.bias.fill_(math.nan)
    with pytest.raises(NonFiniteError, match="decod"):
        sample_from_embeddings(unet, Latents(vae, scale=1.0), SCHEDULES["cosine"], "v", [[(cond[0, :1], 1.0)]],
                               cfg_scale=3.0, steps=2, seed=0, latent_size=8)


# ---- memory ---------------------------------------------------------------------------------------------

SD15_UNET = {"in_channels": 4, "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
             "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "attention_head_dim": 8,
             "cross_attention_dim": 768}
SD15_VAE = {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4,
            "sample_size": 512}
GB = 2**30


def sd15_need(side: int, batch: int = 1) -> int:
    return memory.generation_peak_bytes(SD15_UNET, SD15_VAE, batch=batch, copies=2, height=side, width=side,
                                        factor=8, dtype_bytes=2)


def test_the_estimate_passes_ordinary_requests_and_grows_with_size_and_batch():
    assert sd15_need(512) < 4 * GB  # a 512 px SD 1.5 image on a 24 GB machine (weights included) must pass
    assert sd15_need(1024, batch=4) < 20 * GB
    assert sd15_need(512) < sd15_need(768) < sd15_need(1024) and sd15_need(512) < sd15_need(512, batch=2)
    assert sd15_need(100000) > 1000 * GB


def test_an_oversized_request_is_refused_with_the_largest_size_that_fits(sd, monkeypatch):
    model, cond = sd
    monkeypatch.setattr(memory, "available_bytes", lambda device: 512 * 2**20)
    with pytest.raises(UserError, match=r"100000x100000.*largest size that fits is (\d+)x\1") as caught:
        sample_sd(model, cond, cond, seeds=[0], height=100000, width=100000, steps=2, cfg_scale=5.0)
    side = int(str(caught.value).split("largest size that fits is ")[1].split("x")[0])
    fits = dict(unet_config=model.unet.config, vae_config=model.vae.config, batch=1, copies=2, factor=2,
                dtype_bytes=4)
    assert memory.generation_peak_bytes(**fits, height=side, width=side) * memory.MARGIN <= 512 * 2**20
    assert memory.generation_peak_bytes(**fits, height=side + 64, width=side + 64) * memory.MARGIN > 512 * 2**20
    # the suggestion is real: sampling at that size gets past the check (stopped by a sentinel before the UNet)
    monkeypatch.setattr("artdiff.generate.sd_sample.per_image_noise", sentinel)
    with pytest.raises(Sentinel):
        sample_sd(model, cond, cond, seeds=[0], height=side, width=side, steps=2, cfg_scale=5.0)


def test_a_batch_too_large_names_the_batch_that_fits(sd, embedding_model, monkeypatch):
    model, cond = sd
    need = lambda batch: memory.generation_peak_bytes(model.unet.config, model.vae.config, batch=batch,  # noqa: E731
                                                      copies=2, height=512, width=512, factor=2, dtype_bytes=4)
    budget = int(need(1) * memory.MARGIN * 2.5)
    monkeypatch.setattr(memory, "available_bytes", lambda device: budget)
    with pytest.raises(UserError, match=r"--batch-size (\d+)") as caught:
        sample_sd(model, cond, cond, seeds=list(range(16)), height=512, width=512, steps=2, cfg_scale=5.0)
    batch = int(str(caught.value).split("--batch-size ")[1].split()[0].strip(",;)"))
    assert 2 <= batch < 16 and need(batch) * memory.MARGIN <= budget < need(batch + 1) * memory.MARGIN
    unet, latents = embedding_model
    monkeypatch.setattr(memory, "available_bytes", lambda device: 512 * 2**20)
    with pytest.raises(UserError, match="largest size that fits"):
        sample_from_embeddings(unet, latents, SCHEDULES["cosine"], "v", [[(cond[0, :1], 1.0)]], cfg_scale=3.0,
                               steps=2, seed=0, latent_size=50000)


def test_available_memory_is_read_from_the_system():
    free = memory.available_bytes(torch.device("cpu"))
    assert free is None or 0 < free < 2**50


class Sentinel(Exception):
    pass


def sentinel(*args, **kwargs):
    raise Sentinel


# ---- through the command line, as the issue ran it ---------------------------------------------------------

@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("karras-cli")
    return tiny_sd(root / "sd"), tiny_iv(root / "iv")


def written_pngs(folder) -> list:
    return [np.asarray(Image.open(path).convert("RGB"), dtype=float) for path in sorted(folder.rglob("*.png"))]


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_generate_and_vary_with_karras_write_real_images(model_dirs, tmp_path, sampler, capsys):
    sd_dir, iv_dir = model_dirs
    common = ["--sampler", sampler, "--karras", "--steps", "3", "--size", "16", "--seed", "1"]
    assert main(["generate", "--model", str(sd_dir), "a lighthouse", *common, "--out", str(tmp_path / "g")]) == 0, \
        capsys.readouterr().err
    reference = save(pattern(32, 32), tmp_path / "ref.png")
    assert main(["vary", str(reference), "--model", str(iv_dir), *common, "--out", str(tmp_path / "v")]) == 0, \
        capsys.readouterr().err
    for folder in ("g", "v"):
        images = written_pngs(tmp_path / folder)
        assert images and all(image.std() > 1.0 for image in images), f"{folder}: a flat image was written"


def test_a_runaway_cfg_is_one_line_from_the_command_line(model_dirs, tmp_path, capsys):
    code = main(["generate", "--model", str(model_dirs[0]), "a lighthouse", "--cfg", "1e30", "--steps", "3",
                 "--size", "16", "--out", str(tmp_path / "g")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "bug" not in err
    assert not written_pngs(tmp_path)
