"""`artdiff quickstart --train OUT`: run the whole artdiff-mini and artdiff-pixel-mini recipe (one library call)."""

from __future__ import annotations

import argparse
import json

from artdiff.cli._args import add_dataclass_args, args_to_config


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the command; flags come from QuickstartConfig (a light module: --help imports no torch)."""
    from artdiff.studio.quickstart_config import QuickstartConfig

    parser = subparsers.add_parser(
        "quickstart", help="train artdiff-mini and artdiff-pixel-mini from nothing: art set, judge, CLOOB encoder, "
                           "VAE, embedding-LDM, unconditional pixel model",
        description="Every stage is skipped when its folder is complete, so an interrupted run continues.")
    parser.add_argument("--train", required=True, metavar="OUT", help="folder for every stage's outputs")
    add_dataclass_args(parser, QuickstartConfig)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the recipe and print where the model and its evaluation are."""
    from artdiff.studio.quickstart import run_quickstart
    from artdiff.studio.quickstart_config import QuickstartConfig

    cfg = args_to_config(QuickstartConfig, args, out=args.train)
    if args.json:
        cfg.progress = False
    result = run_quickstart(cfg)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    bars = ", ".join(f"{name} {'holds' if held else 'FAILS'}"
                     for name, held in result.pixel_evaluation.get("bars", {}).items())
    pixel = f"{result.pixel_model} (bars: {bars})" if result.pixel_model else "skipped (--pixel-steps 0)"
    print(f"model: {result.model}\npixel model: {pixel}\n"
          f"stage seconds: {result.seconds}\nevaluation: {result.out / 'quickstart.json'}")
    return 0
