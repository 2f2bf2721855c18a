"""Stable Diffusion 1.x/2.x in diffusers' published folder layout, loaded as parts artdiff samples with.

A folder is SD when its model_index.json names StableDiffusionPipeline (or it has unet/, vae/,
text_encoder/ and tokenizer/). The noise schedule, prediction type and timestep spacing come from
scheduler/scheduler_config.json, so sampling follows what the model was published with. A single
.safetensors/.ckpt file in the original CompVis/Stability layout loads too (models/single_file.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from artdiff.errors import UserError
from artdiff.models import config_limits, factory, single_file
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


def schedule_from_scheduler_config(config: dict[str, Any], *, where: str = "scheduler_config.json"
                                   ) -> tuple[dict[str, Any], str]:
    """artdiff's schedule dict and parameterization from a diffusers scheduler_config.json (bounds checked)."""
    if config.get("trained_betas") is not None:
        raise UserError(f"{where} lists trained_betas; artdiff supports the named beta schedules")
    config_limits.check_scheduler(config, where=where)
    prediction = config.get("prediction_type", "epsilon")
    schedule = {"type": "discrete", "beta_schedule": config.get("beta_schedule", "scaled_linear"),
                "beta_start": float(config.get("beta_start", 0.00085)), "beta_end": float(config.get("beta_end", 0.012)),
                "num_train_timesteps": int(config.get("num_train_timesteps", 1000)),
                "timestep_spacing": config.get("timestep_spacing", "leading"),
                "steps_offset": int(config.get("steps_offset", 0)),
                # DDIM's last step goes to alphas_cumprod[0], not to 1, when set_alpha_to_one is false
                "set_alpha_to_one": bool(config.get("set_alpha_to_one", True))}
    return schedule, PREDICTION_TYPES[prediction]


def load_stable_diffusion(reference: str | Path, *, config: str | None = None, tokenizer: str | None = None,
                          device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> StableDiffusion:
    """Load a diffusers SD folder, a hub id in the local cache, or a single .safetensors/.ckpt file.

    Args:
        reference: the folder, hub id or file.
        config: single files only: a folder of diffusers configs (unet/, vae/, text_encoder/, scheduler/) or a
            shipped name (sd15, sd21, sd21-base); default: chosen from the file's keys (and, for SD 2.x, a test
            of whether its UNet predicts v).
        tokenizer: single files only: a CLIP tokenizer folder or a diffusers SD folder; default: the config
            folder's, else one in the local Hugging Face cache.
    """
    if single_file.is_checkpoint_file(reference):
        return _load_single_file(Path(reference).expanduser(), config=config, tokenizer=tokenizer, device=device,
                                 dtype=dtype)
    if Path(reference).expanduser().is_file():
        raise UserError(f"{reference} is a file but not a single-file checkpoint (.safetensors, .ckpt); pass one of "
                        "those or a diffusers model folder")
    if config is not None or tokenizer is not None:
        raise UserError("--model-config and --tokenizer are for single .safetensors/.ckpt files; a model folder "
                        "brings its own")
    folder = factory.resolve_model_dir(reference)
    if not is_stable_diffusion(folder):
        raise UserError(f"{folder} is not a Stable Diffusion folder (no model_index.json naming "
                        "StableDiffusionPipeline, nor unet/ vae/ text_encoder/ tokenizer/)")
    for part in PARTS:
        if not (folder / part).is_dir():
            raise UserError(f"{folder} has no {part}/ folder; it is not a complete Stable Diffusion model")
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    schedule, parameterization = schedule_from_scheduler_config(factory.read_json(scheduler_file) or {},
                                                                where=str(scheduler_file))
    unet = factory.load_unet(folder / "unet", device=device, dtype=dtype).eval()
    vae, scale = factory.load_vae(folder / "vae", device=device, dtype=dtype)
    text_encoder = factory.load_text_encoder(folder / "text_encoder", device=device, dtype=dtype)
    clip_tokenizer = factory.load_clip_tokenizer(folder / "tokenizer")
    weights = sorted((folder / "unet").glob("*.safetensors")) or sorted((folder / "unet").glob("*.bin"))
    return StableDiffusion(folder, unet, vae, text_encoder, clip_tokenizer, float(scale), schedule, parameterization,
                           weights_hash(weights))


def _load_single_file(path: Path, *, config: str | None, tokenizer: str | None, device: str | torch.device,
                      dtype: torch.dtype) -> StableDiffusion:
    """Build SD from one original-layout file and a folder of diffusers configs.

    1. Read the tensors (no code runs) and tell SD 1.x from 2.x by the text encoder's keys.
    2. Find the tokenizer before the heavy work, so a missing one costs no loading time.
    3. Convert and load the UNet, VAE and text encoder with diffusers' single-file converters.
    4. SD 2.x with the shipped configs: 768-v or 512-epsilon by whether the UNet predicts v (A1111's test).
    """
    state = single_file.read_state_dict(path)
    family = single_file.detect_family(state, path)
    state = single_file.normalize_keys(single_file.sd_parts(state, path))
    configs, chosen = single_file.config_dir(config, family)
    tokenizer_dir = single_file.find_tokenizer(tokenizer, configs, family, path)
    probe = chosen and family == "sd2"
    unet, vae, text_encoder = factory.load_sd_single_file_parts(state, configs, source=path, device=device,
                                                                dtype=torch.float32 if probe else dtype)
    del state
    if probe:
        configs = single_file.CONFIGS / ("sd21" if single_file.predicts_v(unet) else "sd21-base")
        unet.register_to_config(sample_size=factory.read_json(configs / "unet" / "config.json")["sample_size"])
        if dtype != torch.float32:  # the test ran in float32
            unet, vae, text_encoder = unet.to(dtype=dtype), vae.to(dtype=dtype), text_encoder.to(dtype=dtype)
    clip_tokenizer = factory.load_clip_tokenizer(tokenizer_dir)
    for name, value in single_file.special_tokens(configs, family).items():
        setattr(clip_tokenizer, name, value)  # SD 2.x pads with "!" (id 0), as OpenCLIP pads with zeros
    if len(clip_tokenizer) > text_encoder.config.vocab_size:
        raise UserError(f"the tokenizer in {tokenizer_dir} has {len(clip_tokenizer)} tokens but the text encoder of "
                        f"{path.name} {text_encoder.config.vocab_size}; pass --tokenizer for this model")
    scheduler_file = configs / "scheduler" / "scheduler_config.json"
    schedule, parameterization = schedule_from_scheduler_config(factory.read_json(scheduler_file) or {},
                                                                where=str(scheduler_file))
    return StableDiffusion(path, unet, vae, text_encoder, clip_tokenizer, float(vae.config.scaling_factor), schedule,
                           parameterization, weights_hash([path]))
