"""Stable Diffusion 1.x/2.x single checkpoint files (.safetensors, .ckpt) in the original CompVis/Stability layout.

A file holds `model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE) and either
`cond_stage_model.transformer.*` (SD 1.x, CLIP ViT-L/14) or `cond_stage_model.model.*` (SD 2.x, OpenCLIP ViT-H/14),
and no configs or tokenizer. This module reads such a file without running code from it, tells the two families
apart as diffusers' loaders/single_file_utils does, and finds the configs (shipped in assets/sd-configs) and a
CLIP tokenizer that make it loadable offline. The diffusers loading calls themselves live in models/factory.py.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from artdiff.errors import UserError, first_line
from artdiff.models import config_limits, factory
from artdiff.models.weights_files import INT_BUFFERS

Family = Literal["sd1", "sd2"]
SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
CONFIGS = Path(__file__).resolve().parents[1] / "assets" / "sd-configs"
SHIPPED = {"sd15": "SD 1.5", "sd21": "SD 2.1 (768 px, v-prediction)", "sd21-base": "SD 2.1-base (512 px, epsilon)"}
PARTS = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")
UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
SD1_TEXT = "cond_stage_model.transformer."
SD2_TEXT = "cond_stage_model.model.token_embedding.weight"
# Where a CLIP BPE vocabulary may already sit in the Hugging Face cache; all share OpenAI CLIP's 49,408 tokens.
TOKENIZER_HUB_IDS = {
    "sd1": ("openai/clip-vit-large-patch14", "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "runwayml/stable-diffusion-v1-5", "CompVis/stable-diffusion-v1-4"),
    "sd2": ("stabilityai/stable-diffusion-2-1", "stabilityai/stable-diffusion-2-1-base",
            "stabilityai/stable-diffusion-2", "stabilityai/stable-diffusion-2-base",
            "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
}
# No ready-made command: loading such a file runs its code, which only its owner can decide to allow.
CONVERT_HINT = ("convert it to .safetensors only if you trust its source (load it once in PyTorch allowing "
                "its code, then write its tensors with safetensors.torch.save_file), or ask its author for a "
                ".safetensors copy")


def is_checkpoint_file(reference: str | Path | None) -> bool:
    """True for an existing file named like a single-file checkpoint (.safetensors, .ckpt, .pt, .pth)."""
    if reference is None:
        return False
    path = Path(reference).expanduser()
    return path.is_file() and path.suffix.lower() in SUFFIXES


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Every named tensor of a checkpoint file; pickles load with weights_only=True, so no code in them runs."""
    if path.suffix.lower() == ".safetensors":
        try:
            data: Any = load_file(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise UserError(f"{path} is not a readable safetensors file ({first_line(error)}); it may be truncated "
                            "or corrupt: download it again") from None
    else:
        data = torch_load_weights(path)
    while isinstance(data, dict) and isinstance(data.get("state_dict"), dict):  # Lightning checkpoints nest it
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise UserError(f"{path} holds a {type(data).__name__}, not a state dict of named tensors")
    return {key: value for key, value in data.items() if isinstance(key, str) and torch.is_tensor(value)}


def sd_parts(state: dict[str, torch.Tensor], path: Path | None = None) -> dict[str, torch.Tensor]:
    """Only the UNet, VAE and text-encoder tensors: EMA copies (model_ema.*) and schedule buffers are not used.

    A part's weight stored as integers would be cast silently into a wrong model, so it is refused.
    """
    parts = {key: value for key, value in state.items() if key.startswith(PARTS)}
    for key, value in parts.items():
        if not value.is_floating_point() and not key.endswith(INT_BUFFERS):
            raise UserError(f"{path or 'the checkpoint'} stores {key} as {value.dtype}, but model weights are "
                            "floating point; the file is damaged or not a Stable Diffusion checkpoint")
    return parts


def torch_load_weights(path: Path) -> Any:
    """Load a pickled weights file with torch.load(weights_only=True), memory-mapped when zip-format."""
    mmap = zipfile.is_zipfile(path)  # only zip-format files can be memory-mapped
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the safe unpickler decides
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        needs = re.search(r"GLOBAL ([\w.]+)", str(error))  # a class or function the pickle would import and call
        if needs is None:
            raise UserError(f"{path} is not a readable PyTorch checkpoint (its pickle is damaged); it may be "
                            "truncated or corrupt: download it again") from None
        raise UserError(f"{path} needs code to load (it calls {needs.group(1)}), and artdiff loads only plain "
                        f"tensors; {CONVERT_HINT}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise UserError(f"{path} is not a readable PyTorch checkpoint ({first_line(error)}); it may be truncated "
                        "or corrupt: download it again") from None


def detect_family(state: dict[str, torch.Tensor], path: Path) -> Family:
    """SD 1.x or 2.x from the text encoder's keys; other layouts (SDXL, inpainting, random files) are refused."""
    if any(key.startswith("conditioner.") for key in state):
        raise UserError(f"{path} is an SDXL checkpoint; artdiff loads Stable Diffusion 1.x and 2.x single files")
    if UNET_IN not in state or any(key.startswith("model.diffusion_model.label_emb.") for key in state):
        example = next(iter(state), "none")
        raise UserError(f"{path} is not a Stable Diffusion 1.x/2.x checkpoint in the original layout (no "
                        f"model.diffusion_model.* text-to-image UNet; first key: {example})")
    if state[UNET_IN].ndim != 4:
        raise UserError(f"{path}: {UNET_IN} has shape {list(state[UNET_IN].shape)}, not that of a convolution "
                        "(out, in, 3, 3); the file is damaged or not a Stable Diffusion checkpoint")
    channels = state[UNET_IN].shape[1]
    if channels != 4:
        kind = {9: "an inpainting", 8: "an instruct-pix2pix"}.get(channels, f"a {channels}-channel")
        raise UserError(f"{path} is {kind} checkpoint; artdiff generates with text-to-image SD models (4 latent "
                        "channels)")
    if SD2_TEXT in state:
        return "sd2"
    if any(key.startswith(SD1_TEXT) for key in state):
        return "sd1"
    raise UserError(f"{path} has no text encoder weights (cond_stage_model.*); it is not a complete Stable "
                    "Diffusion checkpoint")


def normalize_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Put the text_model. level into SD 1.x text-encoder keys saved by transformers < 4.22, as A1111 does."""
    old = SD1_TEXT + "embeddings."
    if not any(key.startswith(old) for key in state):
        return state
    return {(SD1_TEXT + "text_model." + key[len(SD1_TEXT):] if key.startswith(SD1_TEXT)
             and not key.startswith(SD1_TEXT + "text_model.") else key): value for key, value in state.items()}


def config_dir(config: str | None, family: Family) -> tuple[Path, bool]:
    """The folder of diffusers configs to build with, and whether it was chosen here (not given by the user).

    `config` is a shipped name (sd15, sd21, sd21-base), a diffusers model folder, or a hub id in the local cache.
    """
    if config is None:
        return CONFIGS / ("sd15" if family == "sd1" else "sd21"), True
    if config in SHIPPED:
        return CONFIGS / config, False
    path = Path(config).expanduser()
    folder = path if path.is_dir() else factory.cached_hub_dir(config) if factory.HUB_ID.fullmatch(config) else None
    if folder is None:
        raise UserError(f"--model-config {config} is neither one of {', '.join(SHIPPED)}, a folder, nor a hub id in "
                        "the local Hugging Face cache")
    for part in ("unet", "vae", "text_encoder"):
        if not (folder / part / "config.json").is_file():
            raise UserError(f"--model-config {folder} has no {part}/config.json; pass a diffusers Stable Diffusion "
                            f"folder or one of {', '.join(SHIPPED)}")
        file = folder / part / "config.json"
        config_limits.check_config(factory.read_json(file) or {}, where=str(file))
    return folder, False


@torch.no_grad()
def predicts_v(unet: Any) -> bool:
    """Whether an SD 2.x UNet predicts v, by A1111's test: at t=999 on a constant input, mean(out - x) < -1."""
    parameter = next(unet.parameters())
    x = torch.full((1, unet.config.in_channels, 8, 8), 0.5, device=parameter.device, dtype=parameter.dtype)
    cond = torch.full((1, 2, unet.config.cross_attention_dim), 0.5, device=parameter.device, dtype=parameter.dtype)
    t = torch.tensor([999], device=parameter.device)
    return (unet(x, t, encoder_hidden_states=cond).sample - x).float().mean().item() < -1


def special_tokens(folder: Path, family: Family | None = None) -> dict[str, str]:
    """The pad token a config folder's tokenizer/ declares (else the shipped one of `family`): SD 2.x pads with "!"."""
    tokens: dict[str, str] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):  # the map wins, as in transformers
        value = (factory.read_json(folder / "tokenizer" / name) or {}).get("pad_token")
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            tokens["pad_token"] = value
    if not tokens and family is not None:
        return special_tokens(CONFIGS / ("sd15" if family == "sd1" else "sd21"))
    return tokens


def find_tokenizer(tokenizer: str | None, config: Path, family: Family, source: Path) -> Path:
    """The folder of a CLIP tokenizer: --tokenizer, else the config folder's, else the local Hugging Face cache."""
    if tokenizer is not None:
        path = Path(tokenizer).expanduser()
        folder = path if path.is_dir() else factory.cached_hub_dir(tokenizer) if factory.HUB_ID.fullmatch(
            tokenizer) else None
        found = factory.find_tokenizer_dir(folder) if folder is not None else None
        if found is None:
            raise UserError(f"--tokenizer {tokenizer} is not a folder (or cached hub id) holding a CLIP tokenizer "
                            "(vocab.json + merges.txt, in it or in tokenizer/)")
        return found
    found = factory.find_tokenizer_dir(config)
    if found is not None:
        return found
    hub_ids = TOKENIZER_HUB_IDS[family] + TOKENIZER_HUB_IDS["sd1" if family == "sd2" else "sd2"]
    for hub_id in hub_ids:
        folder = factory.cached_hub_dir(hub_id)
        found = factory.find_tokenizer_dir(folder) if folder is not None else None
        if found is not None:
            return found
    raise UserError(f"{source.name} holds no tokenizer and no CLIP tokenizer is available offline (none in the "
                    f"Hugging Face cache under {TOKENIZER_HUB_IDS[family][0]} or similar); pass --tokenizer DIR (a "
                    "diffusers SD folder or a CLIP tokenizer folder), or where there is network run `hf download "
                    "openai/clip-vit-large-patch14 vocab.json merges.txt` once")
