"""Image outputs that carry their parameters: A1111-style infotext in a PNG text chunk, and a JSON sidecar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from artdiff.utils.io import atomic_path, atomic_write_json


def infotext(prompt: str, *, steps: int, sampler: str, cfg_scale: float, seed: int, size: tuple[int, int],
             model_name: str, model_hash: str, negative: str = "", extra: dict[str, Any] | None = None) -> str:
    """The "parameters" text A1111 writes: prompt, negative prompt, then "Key: value" pairs on one line."""
    pairs = {"Steps": steps, "Sampler": sampler, "CFG scale": f"{cfg_scale:g}", "Seed": seed,
             "Size": f"{size[0]}x{size[1]}", "Model hash": model_hash, "Model": model_name, **(extra or {})}
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{k}: {v}" for k, v in pairs.items()))
    return "\n".join(lines)


def save_png_with_metadata(image: Image.Image, path: Path, *, parameters: str, sidecar: dict[str, Any]) -> Path:
    """Write the PNG (with a "parameters" text chunk) and PATH.json, both atomically."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    with atomic_path(Path(path)) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    atomic_write_json(Path(path).with_suffix(".json"), sidecar)
    return Path(path)


def read_parameters(path: Path) -> str | None:
    """The "parameters" text of a PNG written by artdiff (or A1111)."""
    with Image.open(path) as image:
        return image.text.get("parameters") if hasattr(image, "text") else None


def read_sidecar(path: Path) -> dict[str, Any]:
    """The JSON sidecar of an output image."""
    return json.loads(Path(path).with_suffix(".json").read_text())
