"""Image outputs that carry their parameters: A1111 infotext in a PNG text chunk, and a JSON sidecar.

The infotext follows AUTOMATIC1111's processing.create_infotext, so its "PNG Info" reads every value back
(modules/infotext_utils.parse_generation_parameters): the prompt, `Negative prompt:`, then `Key: value`
pairs joined by ", ", a value holding `,`, `:` or a newline written as a JSON string (A1111's quote()).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from artdiff.utils.io import atomic_path, atomic_write_json

# artdiff's sampler names -> A1111's labels (sd_samplers_kdiffusion / sd_samplers_timesteps). A1111 has no
# DDPM sampler; the label says what ran.
A1111_SAMPLERS = {"dpm++2m": "DPM++ 2M", "euler": "Euler", "euler_a": "Euler a", "heun": "Heun", "ddim": "DDIM",
                  "ddpm": "DDPM", "plms": "PLMS"}


def quote(value: Any) -> str:
    """A value as A1111's quote() writes it: JSON-quoted when it holds a comma, colon or newline."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def a1111_sampler(sampler: str) -> str:
    """A1111's label for an artdiff sampler name."""
    return A1111_SAMPLERS.get(sampler, sampler)


def model_display_name(path: Path) -> str:
    """The `Model:` name A1111 would show: a file's stem, a folder's name (a run's model/ is named by its run)."""
    path = Path(path)
    if path.is_file() or path.suffix.lower() in (".safetensors", ".ckpt", ".pt", ".pth", ".bin"):
        return path.stem
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        return path.parent.parent.name.split("--")[-1]  # a Hugging Face cache snapshot: the repository's name
    if path.name == "model" and path.parent.name:
        return path.parent.name
    return path.name


def infotext(prompt: str, *, steps: int, sampler: str, cfg_scale: float | None, seed: int, size: tuple[int, int],
             model_name: str, model_hash: str, negative: str = "", extra: dict[str, Any] | None = None) -> str:
    """The "parameters" text A1111 writes: prompt, negative prompt, then "Key: value" pairs on one line.

    `sampler` is artdiff's name (written as A1111's label); `extra` values of None are left out, and so is
    `CFG scale` for a model without guidance (None).
    """
    cfg = None if cfg_scale is None else f"{cfg_scale:g}"
    pairs = {"Steps": steps, "Sampler": a1111_sampler(sampler), "CFG scale": cfg, "Seed": seed,
             "Size": f"{size[0]}x{size[1]}", "Model hash": model_hash, "Model": model_name, **(extra or {})}
    lines = [prompt] if prompt else []  # A1111 strips the text, so an empty prompt leaves no line
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{k}: {quote(_plain(v))}" for k, v in pairs.items() if v is not None))
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    return f"{value:g}" if isinstance(value, float) else value


def sampling_fields(sampler: str, *, karras: bool, eta: float) -> dict[str, Any]:
    """A1111's infotext fields for the sampler's options: `Schedule type` and its eta field when not the default."""
    fields: dict[str, Any] = {"Schedule type": "Karras" if karras else None}
    if sampler == "ddim" and eta != 0:
        fields["Eta DDIM"] = eta  # A1111's timestep samplers record eta under this name (default 0)
    elif sampler == "euler_a" and eta != 1:
        fields["Eta"] = eta  # and the k-diffusion ancestral samplers under this one (default 1)
    return fields


def save_png_with_metadata(image: Image.Image, path: Path, *, parameters: str, sidecar: dict[str, Any],
                           replace: bool = True) -> Path:
    """Write the PNG (with a "parameters" text chunk) and PATH.json, both atomically.

    With replace=False an existing PNG is never replaced: FileExistsError, and nothing is written.
    """
    path = Path(path)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    if replace:
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG", pnginfo=info)
    else:
        _save_new(image, path, info)
    atomic_write_json(path.with_suffix(".json"), sidecar)
    return path


def _save_new(image: Image.Image, path: Path, info: PngImagePlugin.PngInfo) -> None:
    """Write a complete temporary file, then give it the name only if no file has it (a hard link never replaces)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        image.save(tmp, format="PNG", pnginfo=info)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give the image ordinary permissions
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: check, then rename (not atomic against a race)
            if path.exists():
                raise FileExistsError(path) from None
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_parameters(path: Path) -> str | None:
    """The "parameters" text of a PNG written by artdiff (or A1111)."""
    with Image.open(path) as image:
        return image.text.get("parameters") if hasattr(image, "text") else None


def read_sidecar(path: Path) -> dict[str, Any]:
    """The JSON sidecar of an output image."""
    return json.loads(Path(path).with_suffix(".json").read_text())
