"""Tiny image-variation folders in the lambdalabs/sd-image-variations-diffusers layout, built offline for tests.

`tiny_iv` writes what StableDiffusionImageVariationPipeline.save_pretrained writes for the published model
(model_index.json, unet/, vae/, image_encoder/, scheduler/, feature_extractor/), at toy sizes: the image
encoder takes 32 px images (the real one 224) and gives dim-wide embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import PNDMScheduler, StableDiffusionImageVariationPipeline
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from sd_fixtures import SD_SCHEDULER, tiny_sd_vae, tiny_unet

IMAGE_SIZE = 32


def tiny_image_encoder(dim: int = 32) -> CLIPVisionModelWithProjection:
    """A random CLIPVisionModelWithProjection (the published image_encoder's class) of 32 px and dim outputs."""
    torch.manual_seed(4)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(
        image_size=IMAGE_SIZE, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, projection_dim=dim, hidden_act="quick_gelu")).eval()


def tiny_iv_pipeline(dim: int = 32) -> StableDiffusionImageVariationPipeline:
    """The tiny image-variation model as a diffusers pipeline object (not saved)."""
    processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                   crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return StableDiffusionImageVariationPipeline(
        vae=tiny_sd_vae(), image_encoder=tiny_image_encoder(dim), unet=tiny_unet(cross_attention_dim=dim),
        scheduler=PNDMScheduler(**SD_SCHEDULER), safety_checker=None, feature_extractor=processor,
        requires_safety_checker=False)


def tiny_iv(out: Path, dim: int = 32) -> Path:
    """A tiny image-variation model folder in diffusers' layout."""
    tiny_iv_pipeline(dim).save_pretrained(out, safe_serialization=True)
    # The published scheduler_config.json carries "clip_sample": false (lambdalabs PR #7; DDIM reads it).
    _update_json(out / "scheduler" / "scheduler_config.json", clip_sample=False)
    # transformers without torchvision saves the processor as CLIPImageProcessorPil; name it as published.
    _update_json(out / "model_index.json", feature_extractor=["transformers", "CLIPImageProcessor"])
    _update_json(out / "feature_extractor" / "preprocessor_config.json", image_processor_type="CLIPImageProcessor")
    return out


def _update_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2))


def tiny_image_encoder_dir(out: Path, dim: int) -> Path:
    """A lone CLIPVisionModelWithProjection folder (config.json + model.safetensors)."""
    tiny_image_encoder(dim).save_pretrained(out)
    return out
