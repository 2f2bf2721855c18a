"""`artdiff synth OUT`: a procedural art set with known labels (adapter over data.synthetic.generate_dataset)."""

from __future__ import annotations

import argparse
import json

from artdiff.cli._args import add_dataclass_args, args_to_config
from artdiff.data.synthetic import SynthConfig


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the command and its flags (derived from SynthConfig)."""
    parser = subparsers.add_parser(
        "synth", help="write a procedural art set with known labels (styles, palettes, grounds)",
        description="Paint N images in eight styles (mondrian, kandinsky, rothko, pollock, pointillist, "
                    "op-art, stained-glass, ukiyo-e), six palettes and a light or dark ground, each with a "
                    "caption and its labels, into OUT/images + OUT/manifest.jsonl. Image i depends only on "
                    "(--seed, i, --size); re-running resumes, and a larger --n extends the set.")
    parser.add_argument("out", metavar="OUT", help="dataset folder to write")
    add_dataclass_args(parser, SynthConfig)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the config, paint the set, print the summary."""
    from artdiff.data.synthetic import generate_dataset

    cfg = args_to_config(SynthConfig, args, out=args.out)
    if args.json:
        cfg.progress = False
    result = generate_dataset(cfg)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print(f"painted {result.written} images ({result.reused} reused) of {result.count} at "
          f"{result.size}x{result.size} in {result.elapsed_s:.1f}s")
    print("styles: " + ", ".join(f"{name} {n}" for name, n in result.styles.items()))
    print(f"dataset: {result.out}\nmanifest: {result.manifest}")
    return 0
