"""`artdiff demo`: run the main job on what ships and print where the results are."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the command."""
    parser = subparsers.add_parser("demo", help="run the main job on the shipped model and print where results are",
                                   description="Prepare the real paintings (or a generated procedural set) into a "
                                               "dataset with a contact sheet, then generate a labelled gallery from "
                                               "the shipped artdiff-mini (text prompts, the paintings as image "
                                               "prompts, and a mix) and a sheet of samples of the shipped "
                                               "artdiff-pixel-mini.")
    parser.add_argument("--out", default="outputs/demo", help="folder for the demo's outputs")
    parser.add_argument("--artworks", default=None, help="folder of paintings to start from (optional)")
    parser.add_argument("--size", type=int, default=256, help="image size of the dataset")
    parser.add_argument("--model", default=None, help="embedding-ldm for the gallery (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps of the gallery")
    parser.add_argument("--pixel-model", default=None, metavar="DIR",
                        help="unconditional pixel model for the sample sheet (default: the shipped artdiff-pixel-mini "
                             "when this install has it)")
    parser.add_argument("--pixel-steps", type=int, default=25, help="DDIM steps of the pixel sample sheet")
    parser.add_argument("--no-gallery", dest="gallery", action="store_false",
                        help="only prepare the dataset and its contact sheet (no gallery, no pixel sheet)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the demo and print where its files are."""
    from artdiff.studio.demo import DemoConfig, run_demo

    artworks = Path(args.artworks) if args.artworks else None
    result = run_demo(DemoConfig(out=Path(args.out), artworks=artworks, size=args.size,
                                 progress=not args.json, model=args.model, steps=args.steps, gallery=args.gallery,
                                 pixel_model=args.pixel_model, pixel_steps=args.pixel_steps))
    if args.json:
        print(json.dumps({"source": str(result.source), "dataset": result.dataset.to_json(),
                          "contact_sheet": str(result.sheet),
                          "gallery": str(result.gallery) if result.gallery else None,
                          "pixel_samples": str(result.pixel_sheet) if result.pixel_sheet else None,
                          "pixel_skipped": result.pixel_skipped}, indent=2))
        return 0
    summary = result.dataset
    print(f"prepared {summary.outputs} images from {result.source} "
          f"({sum(summary.skipped.values())} skipped, {sum(summary.duplicates.values())} duplicates)")
    print(f"dataset: {summary.dst}\nfocal crops shown in: {summary.dst / 'focal-debug'}\n"
          f"contact sheet: {result.sheet}")
    if result.gallery:
        print(f"gallery (text prompts, image prompts, a mix): {result.gallery}")
    if result.pixel_sheet:
        print(f"pixel model samples (16 seeds, labelled with the judge's style): {result.pixel_sheet}")
    elif result.pixel_skipped != "--no-gallery":
        print(f"pixel model samples: skipped, {result.pixel_skipped}")
    return 0
