"""Stable Diffusion 1.x/2.x in diffusers' published folder layout, loaded as parts artdiff samples with.

A folder is SD when its model_index.json names StableDiffusionPipeline (or it has unet/, vae/,
text_encoder/ and tokenizer/). The noise schedule, prediction type and timestep spacing come from
scheduler/scheduler_config.json, so sampling follows what the model was published with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from artdiff.errors import UserError
from artdiff.models import factory
from artdiff.utils.hashing import weights_hash

SD_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
PARTS = ("unet", "vae", "text_encoder", "tokenizer")
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}


@dataclass
class StableDiffusion:
    """A loaded SD model: the networks, the tokenizer, and how it was trained to be sampled."""

    path: Path
    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL
    text_encoder: Any  # transformers CLIPTextModel
    tokenizer: Any  # transformers CLIPTokenizer
    latent_scale: float
    schedule: dict[str, Any]  # artdiff's discrete schedule dict (betas, spacing, offset, final alpha)
    parameterization: str
    hash: str

    @property
    def vae_factor(self) -> int:
        """Pixels per latent along each side."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def is_stable_diffusion(folder: Path) -> bool:
    """True for a diffusers SD folder (model_index.json naming an SD pipeline, or the four part folders)."""
    index = factory.read_json(folder / "model_index.json")
    if index is not None:
        return index.get("_class_name") in SD_PIPELINES
    return all((folder / part).is_dir() for part in PARTS)


def schedule_from_scheduler_config(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """artdiff's schedule dict and parameterization from a diffusers scheduler_config.json."""
    if config.get("trained_betas") is not None:
        raise UserError("scheduler_config.json lists trained_betas; artdiff supports the named beta schedules")
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise UserError(f"scheduler prediction_type {prediction!r} is not one of {', '.join(PREDICTION_TYPES)}")
    schedule = {"type": "discrete", "beta_schedule": config.get("beta_schedule", "scaled_linear"),
                "beta_start": float(config.get("beta_start", 0.00085)), "beta_end": float(config.get("beta_end", 0.012)),
                "num_train_timesteps": int(config.get("num_train_timesteps", 1000)),
                "timestep_spacing": config.get("timestep_spacing", "leading"),
                "steps_offset": int(config.get("steps_offset", 0)),
                # DDIM's last step goes to alphas_cumprod[0], not to 1, when set_alpha_to_one is false
                "set_alpha_to_one": bool(config.get("set_alpha_to_one", True))}
    return schedule, PREDICTION_TYPES[prediction]


def load_stable_diffusion(reference: str | Path, *, device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float32) -> StableDiffusion:
    """Load a diffusers SD folder or a hub id in the local cache; a missing part is a one-line error."""
    folder = factory.resolve_model_dir(reference)
    if not is_stable_diffusion(folder):
        raise UserError(f"{folder} is not a Stable Diffusion folder (no model_index.json naming "
                        "StableDiffusionPipeline, nor unet/ vae/ text_encoder/ tokenizer/)")
    for part in PARTS:
        if not (folder / part).is_dir():
            raise UserError(f"{folder} has no {part}/ folder; it is not a complete Stable Diffusion model")
    scheduler = factory.read_json(folder / "scheduler" / "scheduler_config.json") or {}
    schedule, parameterization = schedule_from_scheduler_config(scheduler)
    unet = factory.load_unet(folder / "unet", device=device, dtype=dtype).eval()
    vae, scale = factory.load_vae(folder / "vae", device=device, dtype=dtype)
    text_encoder = factory.load_text_encoder(folder / "text_encoder", device=device, dtype=dtype)
    tokenizer = factory.load_clip_tokenizer(folder / "tokenizer")
    weights = sorted((folder / "unet").glob("*.safetensors")) or sorted((folder / "unet").glob("*.bin"))
    return StableDiffusion(folder, unet, vae, text_encoder, tokenizer, float(scale), schedule, parameterization,
                           weights_hash(weights))
