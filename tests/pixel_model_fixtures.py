"""Tiny unconditional pixel model directories (a diffusers UNet2DModel + artdiff.json), built in the tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import UNet2DModel

# 8 groups of 4 channels: with 32 groups of one channel, GroupNorm would erase the time and class embeddings
TINY_UNET = {"sample_size": 16, "in_channels": 3, "layers_per_block": 1, "block_out_channels": [32, 32],
             "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
             "attention_head_dim": 16, "norm_num_groups": 8, "attn_norm_num_groups": 8}


def tiny_pixel_model(folder: Path, *, num_classes: int | None = None, variance: str = "learned_range",
                     train_steps: int = 100, seed: int = 0) -> Path:
    """A model directory of kind unconditional, as the converter and training write it (DESIGN §3)."""
    torch.manual_seed(seed)
    config = {**TINY_UNET, "out_channels": 6 if variance == "learned_range" else 3}
    if num_classes:
        config["num_class_embeds"] = num_classes
    UNet2DModel(**config).save_pretrained(folder / "unet", safe_serialization=True)
    # improved-diffusion's betas unscaled: over T=100 steps the last abar stays near 0.37, so a random network's
    # x0 = (x - sqrt(1 - abar) eps) / sqrt(abar) keeps most pixels inside [-1, 1] and images keep their differences
    info = {"kind": "unconditional", "parameterization": "eps",
            "schedule": {"type": "discrete", "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02,
                         "num_train_timesteps": train_steps},
            "conditioning": {"type": "class-label", "num_classes": num_classes} if num_classes else {"type": "none"},
            "image_size": 16, "variance": variance, "rescale_timesteps": False, "pixel_range": [-1, 1]}
    (folder / "artdiff.json").write_text(json.dumps(info))
    return folder
