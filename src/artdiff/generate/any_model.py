"""`artdiff generate` on any model: picks the generator for the model directory's kind."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from artdiff.errors import UserError
from artdiff.generate.options import (
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    DEFAULT_STRENGTH,
    PIXEL_OPTIONS,
    GenerateOptions,
    GenerateResult,
)
from artdiff.models import factory
from artdiff.models.pixel.openai_checkpoint import SUFFIXES as PIXEL_FILE_SUFFIXES
from artdiff.models.pixel.openai_checkpoint import WRAPPERS
from artdiff.models.single_file import is_checkpoint_file
from artdiff.models.stable_diffusion import is_stable_diffusion

ADAPTER_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
SMALL_FILE = 256 * 2**20  # a LoRA or embedding; full checkpoints are gigabytes and not opened to look
# Keys only improved/guided-diffusion's UNet has at the top level (SD checkpoints nest theirs under
# model.diffusion_model.), spec: checkpoint-formats.md §3.2
OPENAI_UNET_KEYS = ("time_embed.0.weight", "input_blocks.0.0.weight")


def model_kind(reference: str | None, *, flags: str | None = None) -> str:
    """embedding-ldm, stable-diffusion or unconditional, from artdiff.json, the diffusers layout or a checkpoint file.

    An original improved/guided-diffusion file is unconditional when --flags describes it, or when its keys are
    that UNet's (its loader then asks for the flags).
    """
    if reference is None:
        return "embedding-ldm"
    path = Path(reference).expanduser()
    if path.is_file() and path.suffix.lower() in PIXEL_FILE_SUFFIXES and (flags is not None or is_openai_unet(path)):
        return "unconditional"
    if path.is_file():
        hint = adapter_hint(path)
        if hint:
            raise UserError(hint)
    if is_checkpoint_file(reference):
        return "stable-diffusion"  # the file's layout is checked when it loads
    if path.is_file():
        raise UserError(f"{reference} is a file but not a .safetensors/.ckpt checkpoint; pass one of those or a "
                        "model folder")
    folder = factory.resolve_model_dir(reference)
    info = factory.read_json(folder / "artdiff.json")
    if info is not None and info.get("kind") not in (None, "stable-diffusion"):
        return str(info["kind"])
    if is_stable_diffusion(folder):
        return "stable-diffusion"
    from artdiff.models.image_variation import is_image_variation  # torch-heavy; only for this message

    if is_image_variation(folder):
        return "image-variation"
    raise UserError(f"{folder} is neither an artdiff model directory (artdiff.json) nor a Stable Diffusion folder "
                    "(model_index.json)")


def adapter_hint(path: Path) -> str | None:
    """For a LoRA or textual-inversion file given as --model: which flag takes it, with a base model."""
    if path.suffix.lower() not in ADAPTER_SUFFIXES or path.stat().st_size > SMALL_FILE:
        return None
    keys, metadata = _tensor_names(path)
    base = metadata.get("ss_sd_model_name") or metadata.get("base_model") or ""
    with_base = f" --model BASE (the Stable Diffusion model it was trained on{f', {base}' if base else ''})"
    if any("lora" in key.lower() for key in keys):
        return f"{path} is a LoRA, not a model; pass it as --lora {path}[:SCALE] with{with_base}"
    if {"emb_params", "string_to_param"} & set(keys) or (0 < len(keys) <= 2 and path.stat().st_size < 2**20):
        return (f"{path} is a textual-inversion embedding, not a model; pass it as --embedding {path}[:TOKEN] "
                f"with{with_base}")
    return None


def _tensor_names(path: Path) -> tuple[list[str], dict[str, str]]:
    """Top-level key names and metadata of a small weights file, read without running code (or nothing)."""
    if path.suffix.lower() == ".safetensors":
        try:
            with open(path, "rb") as handle:
                length = int.from_bytes(handle.read(8), "little")
                header = json.loads(handle.read(length)) if 0 < length < 2**26 else {}
        except (OSError, ValueError):
            return [], {}
        if not isinstance(header, dict):
            return [], {}
        metadata = header.pop("__metadata__", None)
        return list(header), metadata if isinstance(metadata, dict) else {}
    try:
        import torch

        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable or needing code: the checkpoint loader gives the one-line reason
        return [], {}
    if not isinstance(data, dict):
        return [], {}
    keys = [str(k) for k in data]
    if "state_dict" in data or any(k.startswith("model.diffusion_model.") for k in keys):
        return [], {}
    return keys, {}


def is_openai_unet(path: Path) -> bool:
    """True for a state dict in improved/guided-diffusion's UNet layout, told from its key names alone.

    A safetensors header is read without the data; a pickle is opened memory-mapped (its tensors are not read)
    with weights_only=True, so no code runs and a multi-GB file costs nothing; an old-format pickle that cannot be
    mapped is read only when small.
    """
    if path.suffix.lower() == ".safetensors":
        keys, _ = _tensor_names(path)
        return all(key in keys for key in OPENAI_UNET_KEYS)
    try:
        import torch

        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not the zip format torch.save has written since 1.6
            if path.stat().st_size > SMALL_FILE:
                return False
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable or needing code: the loader that takes the file gives the one-line reason
        return False
    for wrapper in WRAPPERS:  # training scripts' wrappers, unwrapped as the loader unwraps them
        if isinstance(data, dict) and not any(torch.is_tensor(v) for v in data.values()) \
                and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    if not isinstance(data, dict):
        return False
    keys = [str(key) for key in data]
    if keys and all(key.startswith("module.") for key in keys):  # saved from DistributedDataParallel
        keys = [key[len("module."):] for key in keys]
    return all(key in keys for key in OPENAI_UNET_KEYS)


# What each pixel-only option is, and what embedding and Stable Diffusion models offer instead.
PIXEL_ONLY = {"respacing": ("--respacing", "--steps sets their step count"),
              "flags": ("--flags", "it describes an original improved/guided-diffusion .pt/.pth file given as --model"),
              "clip_denoised": ("--no-clip-denoised", "it clamps a pixel model's predicted image to its [-1, 1] range"),
              "skip_steps": ("--skip-steps", "--strength sets how much of --init-image is repainted"),
              "class_label": ("--class-label", "they are steered by prompts")}


def check_no_pixel_options(options: GenerateOptions, kind: str) -> None:
    """Refuse the options only unconditional pixel models have, each with what this kind offers instead."""
    defaults = GenerateOptions()
    for name in PIXEL_OPTIONS:
        if getattr(options, name) != getattr(defaults, name):
            flag, instead = PIXEL_ONLY[name]
            raise UserError(f"{flag} is for unconditional pixel models (improved/guided-diffusion); for {kind} "
                            f"models {instead}")


def check_no_clip_guidance(options: GenerateOptions, kind: str) -> None:
    """CLIP guidance runs on pixel and embedding models, --save-progress on pixel models; others refuse them."""
    given = options.clip_options_given()
    if given and not options.clip_guidance:
        raise UserError(f"{given[0]} sets up CLIP guidance; add --clip-guidance")
    if options.clip_guidance and kind != "embedding-ldm":
        raise UserError(f"--clip-guidance runs on unconditional pixel and embedding models for now; {kind} models "
                        "steer by their prompts with --cfg")
    if options.save_progress and kind != "embedding-ldm":
        raise UserError(f"--save-progress runs on unconditional pixel and embedding models for now; {kind} models "
                        "write the finished images")


def with_defaults(options: GenerateOptions, **defaults: object) -> GenerateOptions:
    """The options with each unset (None) field given its default; the result is checked again."""
    unset = {name: value for name, value in defaults.items() if getattr(options, name) is None}
    try:
        return dataclasses.replace(options, **unset) if unset else options
    except ValueError as error:  # e.g. --eta given for the sampler this kind defaults to
        raise UserError(str(error)) from None


def generate(options: GenerateOptions) -> GenerateResult:
    """Generate with the generator for the model's kind."""
    kind = model_kind(options.model, flags=options.flags)
    if kind == "unconditional":
        from artdiff.generate.pixel_generate import generate_unconditional

        return generate_unconditional(options)
    if kind in ("stable-diffusion", "embedding-ldm"):
        check_no_pixel_options(options, kind)
        check_no_clip_guidance(options, kind)
        options = with_defaults(options, sampler=DEFAULT_SAMPLER, steps=DEFAULT_STEPS, strength=DEFAULT_STRENGTH)
    if kind == "stable-diffusion":
        from artdiff.generate.sd_generate import generate_sd

        return dataclasses.replace(generate_sd(options), sampler=options.sampler, steps=options.steps)
    if kind == "embedding-ldm":
        from artdiff.generate.embedding_generate import generate_embedding

        return dataclasses.replace(generate_embedding(options), sampler=options.sampler, steps=options.steps)
    if kind == "image-variation":
        raise UserError(f"{options.model} is an image-variation model; make variations of an image with "
                        f"`artdiff vary IMAGE --model {options.model}`")
    raise UserError(f"{options.model} is a {kind} model directory; `artdiff generate` needs an embedding-ldm, "
                    "Stable Diffusion or unconditional model")
