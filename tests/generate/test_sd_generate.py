"""Stable Diffusion text-to-image through artdiff's engine against diffusers' StableDiffusionPipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
)
from PIL import Image

from artdiff.errors import UserError
from artdiff.generate.any_model import generate
from artdiff.generate.options import GenerateOptions
from artdiff.generate.prompt_weighting import encode_prompt_pair
from artdiff.generate.sd_sample import decode_latents, encode_image_latents, sample_sd
from artdiff.models.stable_diffusion import load_stable_diffusion
from sd_fixtures import tiny_sd

SCHEDULERS = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpm++2m": DPMSolverMultistepScheduler}


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


def diffusers_images(sd_dir, sampler, prompt, negative, seeds, steps, cfg, rescale=0.0):
    pipe = StableDiffusionPipeline.from_pretrained(sd_dir, local_files_only=True)
    pipe.scheduler = SCHEDULERS[sampler].from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    return pipe(prompt, negative_prompt=negative, num_inference_steps=steps, guidance_scale=cfg, height=16, width=16,
                num_images_per_prompt=len(seeds), generator=generators, output_type="pt",
                guidance_rescale=rescale).images


@pytest.mark.parametrize("sampler", ["ddim", "euler", "dpm++2m"])
def test_text_to_image_matches_the_diffusers_pipeline(sd_dir, sampler):
    prompt, negative, seeds, steps, cfg = "a painting of a lighthouse by the sea", "dark, moody", [3, 4], 6, 7.5
    expected = diffusers_images(sd_dir, sampler, prompt, negative, seeds, steps, cfg)
    model = load_stable_diffusion(sd_dir)
    with torch.inference_mode():
        cond, uncond = encode_prompt_pair(model.text_encoder, model.tokenizer, prompt, negative)
    got = sample_sd(model, cond, uncond, seeds=seeds, height=16, width=16, steps=steps, cfg_scale=cfg,
                    sampler=sampler)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-3


def test_guidance_rescale_matches_the_diffusers_pipeline(sd_dir):
    expected = diffusers_images(sd_dir, "euler", "a cat", "", [0], 5, 6.0, rescale=0.7)
    model = load_stable_diffusion(sd_dir)
    with torch.inference_mode():
        cond, uncond = encode_prompt_pair(model.text_encoder, model.tokenizer, "a cat", "")
    got = sample_sd(model, cond, uncond, seeds=[0], height=16, width=16, steps=5, cfg_scale=6.0, sampler="euler",
                    rescale=0.7)
    assert (got - expected).abs().max() < 1e-3


def test_generate_writes_pngs_equal_to_the_pipeline_and_seeds_are_batch_independent(sd_dir, tmp_path):
    options = dict(prompts=["a (painting:1.2) of a cat"], model=str(sd_dir), steps=4, sampler="ddim", size=16,
                   negative="sketch")
    generate(GenerateOptions(**options, n=3, seed=10, batch_size=3, out=tmp_path / "three"))
    generate(GenerateOptions(**options, n=1, seed=11, out=tmp_path / "one"))
    alone = np.array(Image.open(tmp_path / "one" / "00000-11.png"))
    in_batch = np.array(Image.open(tmp_path / "three" / "00001-11.png"))
    # batched kernels may round a value differently; anything beyond one 8-bit level would be a seeding bug
    assert np.abs(alone.astype(int) - in_batch.astype(int)).max() <= 1
    sidecar = json.loads((tmp_path / "one" / "00000-11.json").read_text())
    assert sidecar["kind"] == "stable-diffusion" and sidecar["seed"] == 11
    parameters = Image.open(tmp_path / "one" / "00000-11.png").text["parameters"]
    assert parameters.startswith("a (painting:1.2) of a cat\nNegative prompt: sketch\nSteps: 4, Sampler: DDIM")


def test_init_image_strength_zero_keeps_the_image_and_more_strength_repaints(sd_dir, tmp_path):
    source = np.zeros((16, 16, 3), np.uint8)
    source[:, :8] = 255
    Image.fromarray(source).save(tmp_path / "init.png")
    common = dict(prompts=["a cat"], model=str(sd_dir), steps=10, sampler="euler", size=16, n=1,
                  init_image=str(tmp_path / "init.png"), seed=0)
    generate(GenerateOptions(**common, strength=0.0, out=tmp_path / "none"))
    generate(GenerateOptions(**common, strength=0.5, out=tmp_path / "half"))
    kept = np.array(Image.open(tmp_path / "none" / "00000-0.png")).astype(float)
    half = np.array(Image.open(tmp_path / "half" / "00000-0.png")).astype(float)
    # the tiny VAE is random, so compare with its own reconstruction of the init image
    model = load_stable_diffusion(sd_dir)
    pixels = torch.from_numpy(source).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        recon = decode_latents(model, encode_image_latents(model, pixels))[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(kept - recon).max() <= 1.0  # only PNG rounding
    assert np.abs(half - recon).mean() > 1.0


@pytest.mark.parametrize("options, message", [
    ({"size": 13}, "multiple of"),
    ({"width": 16, "height": 0}, "--height 0 must be a whole number from 1"),
    ({"prompts": ["a", "b"]}, "one prompt"),
    ({"images": ["x.png"]}, "--init-image"),
    ({"init_image": "missing.png"}, "does not exist"),
])
def test_bad_requests_are_one_line_errors(sd_dir, tmp_path, options, message):
    request = {"prompts": ["a cat"], "model": str(sd_dir), "steps": 2, "n": 1, "out": tmp_path / "out", **options}
    with pytest.raises((UserError, ValueError), match=message):  # ValueError: refused as the options are built
        generate(GenerateOptions(**request))
    assert not (tmp_path / "out").exists()


def test_embeddings_new_token_and_override_applied_only_when_asked(sd_dir, tmp_path, capsys):
    from artdiff.models.textual_inversion_files import (
        TextualInversion,
        save_a1111_safetensors,
        save_diffusers_embeds,
    )

    torch.manual_seed(0)
    save_diffusers_embeds(tmp_path / "wild.safetensors",
                          TextualInversion("<wild>", torch.randn(3, 32), "diffusers"))
    save_a1111_safetensors(tmp_path / "sea.safetensors",
                           TextualInversion("dusk", torch.randn(1, 32), "a1111-safetensors", override_word="dusk"))
    common = dict(model=str(sd_dir), steps=2, sampler="euler", size=16, n=1, seed=0)
    generate(GenerateOptions(prompts=["a painting by <wild>"], embeddings=[str(tmp_path / "wild.safetensors")],
                             out=tmp_path / "wild", **common))
    sidecar = json.loads((tmp_path / "wild" / "00000-0.json").read_text())
    assert sidecar["prompt_used"] == "a painting by <wild> <wild>_1 <wild>_2"
    with pytest.raises(UserError, match="--apply-overrides"):
        generate(GenerateOptions(prompts=["the sea"], embeddings=[str(tmp_path / "sea.safetensors")],
                                 out=tmp_path / "refused", **common))
    generate(GenerateOptions(prompts=["the sea at dusk"], negative="a cat", embeddings=[str(tmp_path / "sea.safetensors")],
                             apply_overrides=True, out=tmp_path / "sea", **common))
    assert "override 'dusk'" in capsys.readouterr().err
    sidecar = json.loads((tmp_path / "sea" / "00000-0.json").read_text())
    assert sidecar["embeddings"][0]["prompts_changed"] == ["the sea at dusk"]
    generate(GenerateOptions(prompts=["the sea at dusk"], negative="a cat", out=tmp_path / "base", **common))
    base = np.array(Image.open(tmp_path / "base" / "00000-0.png")).astype(int)
    overridden = np.array(Image.open(tmp_path / "sea" / "00000-0.png")).astype(int)
    assert np.abs(base - overridden).max() > 0  # the word's rows really changed the result
