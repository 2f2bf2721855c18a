"""Our CLIP-guided sampling equals a re-implementation of clip-diffusion-art's loop in fixed-cutout mode."""

import sys
from pathlib import Path

import pytest
import torch

from artdiff.generate.clip_guidance import ClipGuidanceConfig, EncoderPrompts
from artdiff.generate.clip_setup import ClipGuidance
from artdiff.generate.cutouts import CdaCutouts
from artdiff.generate.pixel_sample import sample_pixels
from artdiff.models.encoders import load_encoder
from artdiff.models.pixel.pixel_model import load_pixel_model
from model_fixtures import tiny_encoder
from pixel_model_fixtures import tiny_pixel_model

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from clip_guided_reference import reference_sample  # noqa: E402


@pytest.mark.parametrize("skip,tv_scale", [(0, 100.0), (2, 0.0)])
def test_fixed_cutout_guidance_equals_the_reference_loop(tmp_path, skip, tv_scale):
    model = load_pixel_model(tiny_pixel_model(tmp_path / "pixel"))
    encoder = load_encoder(tiny_encoder(tmp_path / "encoder", ["a red square", "a blue circle"]))
    targets = encoder.embed_text(["a red square", "a blue circle"])
    cut = CdaCutouts(cutn=4, size=32, fixed=True)
    config = ClipGuidanceConfig(clip_guidance_scale=20000, tv_scale=tv_scale, range_scale=0, cutn=4,
                                cutn_batches=2, fixed_cutouts=True, guide="blend", clamp_max=0.05)
    guidance = ClipGuidance([EncoderPrompts(encoder, targets, torch.tensor([1.0, -0.5]))], config, record={})
    ours = sample_pixels(model.unet, model.info, seeds=[7], respacing="ddim10", sampler="ddim", eta=0.0,
                         clip_denoised=False, skip_steps=skip, guidance=guidance)
    plain = sample_pixels(model.unet, model.info, seeds=[7], respacing="ddim10", sampler="ddim", eta=0.0,
                          clip_denoised=False, skip_steps=skip)
    noise = torch.randn((1, 3, 16, 16), generator=torch.Generator().manual_seed(7))
    theirs = reference_sample(model.unet, model.info.schedule, encoder, targets, [1.0, -0.5], noise=noise,
                              respacing="ddim10", cutouts=lambda x01, g: (cut(x01 * 2 - 1) + 1) / 2,
                              cutn_batches=2, clip_scale=20000, tv_scale=tv_scale, range_scale=0, skip=skip)
    assert (ours - plain).abs().max() > 1e-2  # the guidance moved the image
    assert (ours - theirs).abs().max() < 2e-4
