"""`artdiff prepare SRC DST`: a folder of artwork to a dataset (adapter over data.prepare.prepare_folder)."""

from __future__ import annotations

import argparse
import json

from artdiff.cli._args import add_dataclass_args, args_to_config
from artdiff.data.prepare_config import PrepareConfig


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the command and its flags (derived from PrepareConfig)."""
    parser = subparsers.add_parser(
        "prepare", help="turn a folder of artwork into a clean training set",
        description="Read every image under SRC (never modifying it), skip bad files, drop duplicates, "
                    "crop and resize, caption, and write DST/images + DST/manifest.jsonl. Re-running "
                    "resumes; changed options rebuild.")
    parser.add_argument("src", metavar="SRC", help="folder of images")
    parser.add_argument("dst", metavar="DST", help="dataset folder to write")
    add_dataclass_args(parser, PrepareConfig)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the config, prepare the folder, print the summary."""
    from artdiff.data.prepare import prepare_folder

    cfg = args_to_config(PrepareConfig, args, src=args.src, dst=args.dst)
    if args.json:
        cfg.progress = False
    result = prepare_folder(cfg)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    skipped = sum(result.skipped.values())
    dups = sum(result.duplicates.values())
    print(f"prepared {result.outputs} images from {result.kept_sources} of {result.found} files "
          f"({skipped} skipped, {dups} duplicates dropped, {result.reused} reused) in {result.elapsed_s:.1f}s")
    if result.skipped:
        print("skipped: " + ", ".join(f"{n} {reason}" for reason, n in result.skipped.items()))
    if cfg.captions == "auto" and result.captions.get("filename"):
        sources = {"sidecar": "from sidecar files", "metadata": "from the metadata table"}
        found = [f"{result.captions[k]} {words}" for k, words in sources.items() if result.captions.get(k)]
        print(f"captions: {', '.join(found + [''])}{result.captions['filename']} fell back to file names "
              "(no sidecar .txt/.caption or metadata row)")
    print(f"dataset: {result.dst}\nmanifest: {result.manifest}\nreport: {result.report}")
    return 0
