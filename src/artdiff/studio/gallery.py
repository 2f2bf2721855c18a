"""A labelled gallery of what an embedding-ldm makes: text prompts, image prompts, and a text + image mix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from artdiff.data.synthetic_labels import canonical_prompt
from artdiff.generate.embedding_generate import build_prompt_set, load_embedding_model
from artdiff.generate.prompts import Prompt
from artdiff.generate.sample import sample_from_embeddings
from artdiff.studio.contact_sheet import contact_sheet
from artdiff.utils.images import is_image_path
from artdiff.utils.io import atomic_path

GALLERY_LABELS = [{"style": "rothko", "palette": "pastel", "ground": "light"},
                  {"style": "mondrian", "palette": "primary", "ground": "light"},
                  {"style": "pollock", "palette": "earth", "ground": "dark"},
                  {"style": "ukiyo-e", "palette": "cool", "ground": "light"},
                  {"style": "stained-glass", "palette": "warm", "ground": "dark"},
                  {"style": "pointillist", "palette": "monochrome", "ground": "dark"}]


@dataclass
class GalleryResult:
    """The gallery image and the individual images behind it."""

    sheet: Path
    images: list[Path]


def make_gallery(model_ref: str | None, out: Path, *, image_prompts: list[Path], steps: int = 50, cfg: float = 3.0,
                 seed: int = 0, per_prompt: int = 2) -> GalleryResult:
    """Generate `per_prompt` images for each row of prompts and lay them out with their prompts as labels."""
    model = load_embedding_model(model_ref)
    rows: list[tuple[str, list[Prompt]]] = [(canonical_prompt(labels), [Prompt("text", canonical_prompt(labels))])
                                            for labels in GALLERY_LABELS]
    for path in image_prompts[:4]:
        rows.append((f"image: {path.name}", [Prompt("image", str(path))]))
    if image_prompts:
        mix = [Prompt("image", str(image_prompts[0]), 2.0), Prompt("text", "on a dark ground")]
        rows.append((f"image: {image_prompts[0].name}:2 + on a dark ground", mix))
    sets = [build_prompt_set(model, prompts) for _, prompts in rows for _ in range(per_prompt)]
    images = sample_from_embeddings(model.unet, model.latents, model.info.schedule, model.info.parameterization,
                                    sets, cfg_scale=cfg, steps=steps, seed=seed,
                                    latent_size=model.image_size // model.latents.factor)
    paths, labels = [], []
    for index, image in enumerate(images):
        label = rows[index // per_prompt][0]
        path = Path(out) / "images" / f"{index:03d}.png"
        with atomic_path(path) as tmp:
            Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(tmp, format="PNG")
        paths.append(path)
        labels.append(label)
    sheet = contact_sheet(paths, labels, Path(out) / "gallery.png", cell=max(128, model.image_size * 2),
                          columns=per_prompt * 3, title=f"artdiff generate: {model.path.name}, cfg {cfg:g}, "
                                                        f"{steps} steps, seeds {seed}+")
    return GalleryResult(sheet, paths)


def painting_files(folder: Path | None) -> list[Path]:
    """Image files of a folder of paintings, sorted, or none."""
    if folder is None or not Path(folder).is_dir():
        return []
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and is_image_path(p))
