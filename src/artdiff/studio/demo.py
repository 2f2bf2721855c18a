"""`artdiff demo`: the main job on what ships, ending with files a person can open.

It prepares the real paintings (when present) or a generated procedural art set into a dataset with
focal crops and writes a contact sheet; when a model is there (the shipped artdiff-mini or --model),
it also generates a labelled gallery from text prompts, image prompts (the paintings) and a mix; and when
a pixel model is there (the shipped artdiff-pixel-mini or --pixel-model), a sheet of its samples at fixed
seeds, each labelled with the style the judge sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from artdiff.data.manifest import read_manifest
from artdiff.data.prepare import PrepareResult, prepare_folder
from artdiff.data.prepare_config import PrepareConfig
from artdiff.errors import UserError
from artdiff.studio.contact_sheet import contact_sheet
from artdiff.studio.gallery import make_gallery, painting_files
from artdiff.utils.assets import SHIPPED_MODEL, SHIPPED_PIXEL_MODEL

PIXEL_SEEDS = range(16)  # the same 16 samples on every run


@dataclass
class DemoConfig:
    """Where the demo writes, and which paintings it starts from."""

    out: Path = Path("outputs/demo")
    artworks: Path | None = None  # a folder of paintings; without one, a procedural set is generated
    size: int = 256
    progress: bool = True
    model: str | None = None  # an embedding-ldm for the gallery; default: the shipped artdiff-mini if present
    steps: int = 50
    gallery: bool = True  # False: only the dataset and its contact sheet
    pixel_model: str | None = None  # an unconditional pixel model; default: the shipped artdiff-pixel-mini if present
    pixel_steps: int = 25  # DDIM steps of the pixel sheet: 16 samples at 64 px stay quick on 2 CPU cores


@dataclass
class DemoResult:
    """Files the demo made."""

    source: Path
    dataset: PrepareResult
    sheet: Path
    gallery: Path | None = None
    pixel_sheet: Path | None = None
    pixel_skipped: str | None = None  # why there is no pixel sheet, when there is none


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Prepare the paintings (or a generated set) and write a contact sheet of the dataset."""
    out = Path(cfg.out)
    metadata = None
    if cfg.artworks and not Path(cfg.artworks).is_dir():
        what = "is a file, not a folder" if Path(cfg.artworks).exists() else "does not exist"
        raise UserError(f"--artworks {cfg.artworks} {what}; pass a folder of paintings, or leave --artworks out "
                        "for a generated procedural set")
    if cfg.artworks and Path(cfg.artworks).is_dir():
        source = Path(cfg.artworks)
    else:
        source = _generated_folder(out, cfg.size)
        metadata = source.parent / "manifest.jsonl"  # the synthetic captions, matched by file name
    prepared = prepare_folder(PrepareConfig(src=source, dst=out / "dataset", size=cfg.size, crop="focal",
                                            focal_debug=True, flip=False, progress=cfg.progress,
                                            metadata=metadata, metadata_key="image"))
    records = read_manifest(prepared.dst)
    sheet = contact_sheet([prepared.dst / r["image"] for r in records], [r["caption"] for r in records],
                          out / "dataset-contact-sheet.png", title=f"artdiff prepare: {source}")
    gallery = None
    if cfg.gallery and (cfg.model or SHIPPED_MODEL.is_dir()):
        prompts = painting_files(cfg.artworks) or [prepared.dst / r["image"] for r in records[:4]]
        gallery = make_gallery(cfg.model, out / "gallery", image_prompts=prompts, steps=cfg.steps).sheet
    pixel, skipped = _pixel_samples(cfg, out)
    return DemoResult(source=source, dataset=prepared, sheet=sheet, gallery=gallery, pixel_sheet=pixel,
                      pixel_skipped=skipped)


def _pixel_samples(cfg: DemoConfig, out: Path) -> tuple[Path | None, str | None]:
    """The pixel model's sheet of 16 fixed-seed samples, or why there is none (no model here is not an error)."""
    if not cfg.gallery:
        return None, "--no-gallery"
    if cfg.pixel_model is None and not SHIPPED_PIXEL_MODEL.is_dir():
        return None, (f"this install has no {SHIPPED_PIXEL_MODEL.name} ({SHIPPED_PIXEL_MODEL}); pass --pixel-model "
                      "DIR for a model of your own")
    from artdiff.studio.pixel_sheet import pixel_sheet

    model = cfg.pixel_model or SHIPPED_PIXEL_MODEL
    return pixel_sheet(model, out / "pixel-samples", seeds=list(PIXEL_SEEDS), steps=cfg.pixel_steps).sheet, None


def _generated_folder(out: Path, size: int) -> Path:
    """A procedural art set to stand in for the paintings when they are not present."""
    from artdiff.data.synthetic import SynthConfig, generate_dataset

    synth = generate_dataset(SynthConfig(out=out / "procedural", n=24, size=size, seed=0, progress=False))
    return Path(synth.out) / "images"
