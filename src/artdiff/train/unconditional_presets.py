"""UNet2DModel architectures for training a pixel model from scratch (`--preset`), as plain config data.

The published OpenAI architectures (lsun-uncond-256, openai-256-uncond, clip-diffusion-art-256) come from
`artdiff.models.pixel.openai_flags.PRESETS` and are named here only for --help.
"""

from __future__ import annotations

from typing import Any

# 16 px, two levels, attention at 8 px: a model the tests train in a fraction of a second.
PIXEL_TINY: dict[str, Any] = {
    "sample_size": 16, "in_channels": 3, "out_channels": 6, "layers_per_block": 1, "block_out_channels": [16, 32],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8, "attention_head_dim": 8, "flip_sin_to_cos": True, "freq_shift": 0,
}

# The shipped artdiff-pixel-mini: 64 px, 3.1M parameters, attention at 8 px only. Chosen for CPU cost: about
# 0.19 CPU-seconds per training image (fp32, forward, backward and AdamW) and 2.2 GFLOP per sampling step, so
# `make demo` samples 16 images in about half a minute on two cores; a 64-channel variant with two blocks per
# level and attention at 16 px too (9.3M) cost 1.25 CPU-seconds per training image.
PIXEL_MINI: dict[str, Any] = {
    "sample_size": 64, "in_channels": 3, "out_channels": 6, "layers_per_block": 1,
    "block_out_channels": [32, 64, 64, 128],
    "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"],
    "norm_num_groups": 32, "attention_head_dim": 32, "flip_sin_to_cos": True, "freq_shift": 0,
}

OWN_PRESETS: dict[str, dict[str, Any]] = {"pixel-tiny": PIXEL_TINY, "pixel-mini": PIXEL_MINI}
PUBLISHED_PRESETS = ("lsun-uncond-256", "openai-256-uncond", "clip-diffusion-art-256")  # openai_flags.PRESETS
PRESET_NAMES = (*OWN_PRESETS, *PUBLISHED_PRESETS)
