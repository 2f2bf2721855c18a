"""`artdiff generate` on any model: picks the generator for the model directory's kind."""

from __future__ import annotations

import json
from pathlib import Path

from artdiff.errors import UserError
from artdiff.generate.options import GenerateOptions, GenerateResult
from artdiff.models import factory
from artdiff.models.single_file import is_checkpoint_file
from artdiff.models.stable_diffusion import is_stable_diffusion

ADAPTER_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
SMALL_FILE = 256 * 2**20  # a LoRA or embedding; full checkpoints are gigabytes and not opened to look


def model_kind(reference: str | None) -> str:
    """embedding-ldm or stable-diffusion, from artdiff.json, the diffusers layout or an SD checkpoint file."""
    if reference is None:
        return "embedding-ldm"
    path = Path(reference).expanduser()
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


def generate(options: GenerateOptions) -> GenerateResult:
    """Generate with the generator for the model's kind."""
    kind = model_kind(options.model)
    if kind == "stable-diffusion":
        from artdiff.generate.sd_generate import generate_sd

        return generate_sd(options)
    if kind == "embedding-ldm":
        from artdiff.generate.embedding_generate import generate_embedding

        return generate_embedding(options)
    if kind == "image-variation":
        raise UserError(f"{options.model} is an image-variation model; make variations of an image with "
                        f"`artdiff vary IMAGE --model {options.model}`")
    raise UserError(f"{options.model} is a {kind} model directory; `artdiff generate` needs an embedding-ldm or "
                    "Stable Diffusion model")
