"""Tiny Stable Diffusion folders in the published layouts, built offline for tests (nothing downloads).

`tiny_sd` writes what StableDiffusionPipeline.save_pretrained writes for runwayml/stable-diffusion-v1-5
(model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/), at toy sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from artdiff.models.tokenizer import build_tokenizer

# SD 1.x's scheduler config (scheduler/scheduler_config.json of the v1-5 repository).
SD_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "num_train_timesteps": 1000, "skip_prk_steps": True, "steps_offset": 1, "set_alpha_to_one": False}
WORDS = ("a painting of a lighthouse by the sea in oil colourful portrait of a woman with red hair, "
         "landscape with mountains at dusk watercolor cat sitting on a chair sketch in charcoal by monet van gogh "
         "hokusai wave impressionist abstract geometric pastel dark bright moody").split()


def tiny_tokenizer(out: Path) -> CLIPTokenizer:
    """A CLIP-format tokenizer with a small vocabulary learned from a few art captions."""
    captions = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    build_tokenizer(captions, out, vocab_size=600, min_frequency=1)
    return CLIPTokenizer.from_pretrained(out)


def tiny_text_encoder(tokenizer: CLIPTokenizer, width: int = 32) -> CLIPTextModel:
    """A random CLIPTextModel (SD 1.x's text encoder class) sized for the tokenizer."""
    torch.manual_seed(1)
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)).eval()


def tiny_unet(cross_attention_dim: int = 32, sample_size: int = 8) -> UNet2DConditionModel:
    """A random two-level UNet2DConditionModel with SD's block types."""
    torch.manual_seed(2)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=4, norm_num_groups=8).eval()


def tiny_sd_vae() -> AutoencoderKL:
    """A random AutoencoderKL with factor 2 and SD's scaling factor."""
    torch.manual_seed(3)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                         latent_channels=4, norm_num_groups=8, scaling_factor=0.18215).eval()


def tiny_sd_pipeline(root: Path) -> StableDiffusionPipeline:
    """The tiny SD as a diffusers pipeline object (not saved)."""
    tokenizer = tiny_tokenizer(root / "tokenizer-src")
    return StableDiffusionPipeline(
        vae=tiny_sd_vae(), text_encoder=tiny_text_encoder(tokenizer), tokenizer=tokenizer, unet=tiny_unet(),
        scheduler=PNDMScheduler(**SD_SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def tiny_sd(out: Path) -> Path:
    """A tiny SD 1.x model folder in diffusers' layout."""
    tiny_sd_pipeline(out.parent / f"{out.name}-parts").save_pretrained(out, safe_serialization=True)
    # v1-5's published scheduler_config.json also carries "clip_sample": false (PNDM ignores it; DDIM reads it).
    config_file = out / "scheduler" / "scheduler_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "clip_sample": False}, indent=2))
    return out
