"""`artdiff generate` on any model: picks the generator for the model directory's kind."""

from __future__ import annotations

from pathlib import Path

from artdiff.errors import UserError
from artdiff.generate.options import GenerateOptions, GenerateResult
from artdiff.models import factory
from artdiff.models.single_file import is_checkpoint_file
from artdiff.models.stable_diffusion import is_stable_diffusion


def model_kind(reference: str | None) -> str:
    """embedding-ldm or stable-diffusion, from artdiff.json, the diffusers layout or an SD checkpoint file."""
    if reference is None:
        return "embedding-ldm"
    if is_checkpoint_file(reference):
        return "stable-diffusion"  # the file's layout is checked when it loads
    if Path(reference).is_file():
        raise UserError(f"{reference} is a file but not a .safetensors/.ckpt checkpoint; pass one of those or a "
                        "model folder")
    folder = factory.resolve_model_dir(reference)
    info = factory.read_json(folder / "artdiff.json")
    if info is not None and info.get("kind") not in (None, "stable-diffusion"):
        return str(info["kind"])
    if is_stable_diffusion(folder):
        return "stable-diffusion"
    raise UserError(f"{folder} is neither an artdiff model directory (artdiff.json) nor a Stable Diffusion folder "
                    "(model_index.json)")


def generate(options: GenerateOptions) -> GenerateResult:
    """Generate with the generator for the model's kind."""
    kind = model_kind(options.model)
    if kind != "stable-diffusion" and (options.model_config or options.tokenizer):
        raise UserError("--model-config and --tokenizer are for Stable Diffusion .safetensors/.ckpt files")
    if kind == "stable-diffusion":
        from artdiff.generate.sd_generate import generate_sd

        return generate_sd(options)
    if kind == "embedding-ldm":
        from artdiff.generate.embedding_generate import generate_embedding

        return generate_embedding(options)
    raise UserError(f"{options.model} is a {kind} model directory; `artdiff generate` needs an embedding-ldm or "
                    "Stable Diffusion model")
